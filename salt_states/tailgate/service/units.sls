# -*- coding: utf-8 -*-
# vim: ft=sls
# One unit file per bridge instance (tailgate-bridge-<i>) and per gateway replica
# (tailgate-gateway-<port>), rendered from files/*.service.jinja with the whole map.
# Units are files, not templates (name@.service), so each carries its own port and the
# fallback service manager reads exactly what systemd would run.

{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_config_file = tplroot ~ '.config.file' %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

include:
  - {{ sls_config_file }}

{%- for instance in range(tailgate.bridge.instances) %}
tailgate-service-units-bridge-{{ instance }}-managed:
  file.managed:
    - name: {{ tailgate.service.unit_dir }}/tailgate-bridge-{{ instance }}.service
    - source: salt://{{ tplroot }}/files/tailgate-bridge.service.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
        tailgate: {{ tailgate | json }}
        instance: {{ instance }}
    - user: root
    - group: root
    - mode: '0644'
    - makedirs: True
    - require:
      - sls: {{ sls_config_file }}
{%- endfor %}

{%- for port in tailgate.gateway.replicas %}
tailgate-service-units-gateway-{{ port }}-managed:
  file.managed:
    - name: {{ tailgate.service.unit_dir }}/tailgate-gateway-{{ port }}.service
    - source: salt://{{ tplroot }}/files/tailgate-gateway.service.jinja
    - template: jinja
    - context:
        tplroot: {{ tplroot }}
        tailgate: {{ tailgate | json }}
        port: {{ port }}
    - user: root
    - group: root
    - mode: '0644'
    - makedirs: True
    - require:
      - sls: {{ sls_config_file }}
{%- endfor %}
