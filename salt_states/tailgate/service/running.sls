# -*- coding: utf-8 -*-
# vim: ft=sls
# The units running: with systemd, enabled and started; with the fallback (service.manager: process), started by
# the tailgate_service state from the same unit files. Bridges restart when their unit,
# code or settings change (they resume effectively-once). A running gateway replica is never
# restarted here: tailgate.orch.deploy restarts replicas one at a time, draining each.

{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_units = tplroot ~ '.service.units' %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set svc = tailgate.service %}
{%- set units = [] %}
{%- for instance in range(tailgate.bridge.instances) %}
{%-   do units.append(('bridge-' ~ instance, '')) %}
{%- endfor %}
{%- for port in tailgate.gateway.replicas %}
{%-   do units.append(('gateway-' ~ port, 'http://' ~ tailgate.gateway.ready_host ~ ':' ~ port ~ '/readyz')) %}
{%- endfor %}

include:
  - {{ sls_units }}

{%- if svc.manager == 'systemd' %}
tailgate-service-running-daemon-reload:
  module.run:
    - service.systemctl_reload: []
    - onchanges:
      - sls: {{ sls_units }}
{%- endif %}

{%- for name, ready_url in units %}
{%-   set unit = 'tailgate-' ~ name %}
{%-   if svc.manager == 'systemd' %}
tailgate-service-running-{{ name }}-running:
  service.running:
    - name: {{ unit }}
    - enable: True
    - require:
      - module: tailgate-service-running-daemon-reload
{%-   else %}
tailgate-service-running-{{ name }}-running:
  tailgate_service.running:
    - name: {{ unit }}
    - unit_dir: {{ svc.unit_dir }}
    - run_dir: {{ tailgate.run_dir }}
    - log_dir: {{ tailgate.log_dir }}
    - ready_url: {{ ready_url }}
    - timeout: {{ svc.ready_timeout }}
    - require:
      - sls: {{ sls_units }}
{%-   endif %}
{%-   if name.startswith('bridge-') %}
    - watch:
      - file: tailgate-service-units-{{ name }}-managed
      - file: {{ tailgate.config_dir }}/tailgate.yaml
      - file: {{ tailgate.config_dir }}/secrets.env
      - file: {{ tailgate.install_dir }}/app
{%-   endif %}
{%- endfor %}
