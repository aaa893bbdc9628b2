# -*- coding: utf-8 -*-
# vim: ft=sls
# Stops every unit (gateways drain on SIGTERM) and removes the unit files.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set svc = tailgate.service %}
{%- set names = [] %}
{%- for instance in range(tailgate.bridge.instances) %}
{%-   do names.append('bridge-' ~ instance) %}
{%- endfor %}
{%- for port in tailgate.gateway.replicas %}
{%-   do names.append('gateway-' ~ port) %}
{%- endfor %}

{%- for name in names %}
tailgate-service-clean-{{ name }}-dead:
{%-   if svc.manager == 'systemd' %}
  service.dead:
    - name: tailgate-{{ name }}
    - enable: False
{%-   else %}
  tailgate_service.dead:
    - name: tailgate-{{ name }}
    - run_dir: {{ tailgate.run_dir }}
    - timeout: {{ svc.stop_timeout }}
{%-   endif %}

tailgate-service-clean-{{ name }}-absent:
  file.absent:
    - name: {{ svc.unit_dir }}/tailgate-{{ name }}.service
    - require:
      - {{ 'service' if svc.manager == 'systemd' else 'tailgate_service' }}: tailgate-service-clean-{{ name }}-dead
{%- endfor %}
