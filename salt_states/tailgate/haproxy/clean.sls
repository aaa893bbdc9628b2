# -*- coding: utf-8 -*-
# vim: ft=sls
# Stops HAProxy and removes its Tailgate configuration (the package stays).

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

tailgate-haproxy-clean-service-dead:
  service.dead:
    - name: {{ tailgate.haproxy.service }}
    - enable: False

tailgate-haproxy-clean-config-absent:
  file.absent:
    - name: {{ tailgate.haproxy.config_file }}
    - require:
      - service: tailgate-haproxy-clean-service-dead
