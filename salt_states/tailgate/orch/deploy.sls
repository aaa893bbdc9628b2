# -*- coding: utf-8 -*-
# vim: ft=sls
# Rolling deploy of a Tailgate fleet, run on the master:
#   salt-run state.orch tailgate.orch.deploy
# In order, each step only once the one before succeeded (failhard: the first failure
# stops the rollout, and the failing step's ID names the minion and replica):
#   1. Redis (orch.redis), 2. the bridges (orch.bridges: the whole formula; bridges
#   restart on change, effectively-once), 3. every gateway replica of every minion in
#   orch.gateways, one at a time: drain (SIGTERM: /readyz answers 503, clients are
#   closed with 1001 and resume on another replica), update code and config, start,
#   wait until /readyz answers 200; 4. the balancer (orch.balancer).
# Targets and replica ports come from the master's view of pillar `tailgate`.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set orch = tailgate.orch %}
{%- set svc = tailgate.service %}

{%- if orch.redis %}
tailgate-orch-deploy-redis-state:
  salt.state:
    - tgt: {{ orch.redis | json }}
    - tgt_type: {{ orch.tgt_type }}
    - sls:
      - {{ tplroot }}.redis
    - failhard: True
{%- endif %}

{%- if orch.bridges %}
tailgate-orch-deploy-bridges-state:
  salt.state:
    - tgt: {{ orch.bridges | json }}
    - tgt_type: {{ orch.tgt_type }}
    - sls:
      - {{ tplroot }}
    - failhard: True
{%- endif %}

{%- for minion in orch.gateways %}
{%-   for port in tailgate.gateway.replicas %}
{%-     set unit = 'tailgate-gateway-' ~ port %}
{%-     set ready_url = 'http://' ~ tailgate.gateway.ready_host ~ ':' ~ port ~ '/readyz' %}
tailgate-orch-deploy-{{ minion }}-{{ port }}-drain-function:
  salt.function:
    - name: tailgate.drain
    - tgt: {{ minion | json }}
    - tgt_type: list
    - arg:
      - {{ unit }}
      - {{ ready_url }}
    - kwarg:
        manager: {{ svc.manager }}
        timeout: {{ svc.stop_timeout }}
        run_dir: {{ tailgate.run_dir }}
    - failhard: True

tailgate-orch-deploy-{{ minion }}-{{ port }}-update-state:
  salt.state:
    - tgt: {{ minion | json }}
    - tgt_type: list
    - sls:
      - {{ tplroot }}.package
      - {{ tplroot }}.config
      - {{ tplroot }}.service.units
    - failhard: True

tailgate-orch-deploy-{{ minion }}-{{ port }}-start-function:
  salt.function:
    - name: tailgate.start
    - tgt: {{ minion | json }}
    - tgt_type: list
    - arg:
      - {{ unit }}
    - kwarg:
        manager: {{ svc.manager }}
        ready_url: {{ ready_url }}
        timeout: {{ svc.ready_timeout }}
        unit_dir: {{ svc.unit_dir }}
        run_dir: {{ tailgate.run_dir }}
        log_dir: {{ tailgate.log_dir }}
    - failhard: True
{%-   endfor %}
{%- endfor %}

{%- if orch.balancer %}
tailgate-orch-deploy-balancer-state:
  salt.state:
    - tgt: {{ orch.balancer | json }}
    - tgt_type: {{ orch.tgt_type }}
    - sls:
      - {{ tplroot }}.haproxy
    - failhard: True
{%- endif %}
