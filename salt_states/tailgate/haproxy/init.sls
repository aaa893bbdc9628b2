# -*- coding: utf-8 -*-
# vim: ft=sls
# HAProxy from the system packages in front of the gateway replicas: it sends clients
# only to replicas whose /readyz answers 200, so a draining replica (503) gets no new
# client, and keeps WebSockets open as long as they live.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set haproxy = tailgate.haproxy %}

tailgate-haproxy-pkg-installed:
  pkg.installed:
    - name: {{ haproxy.pkg }}

tailgate-haproxy-config-managed:
  file.managed:
    - name: {{ haproxy.config_file }}
    - source: salt://{{ tplroot }}/files/haproxy.cfg.jinja
    - template: jinja
    - context:
        tailgate: {{ tailgate | json }}
    - user: root
    - group: root
    - mode: '0644'
    - check_cmd: haproxy -c -f
    - require:
      - pkg: tailgate-haproxy-pkg-installed

tailgate-haproxy-service-running:
  service.running:
    - name: {{ haproxy.service }}
    - enable: True
    - reload: True
    - watch:
      - file: tailgate-haproxy-config-managed
