# -*- coding: utf-8 -*-
# vim: ft=sls
# Redis from the system packages, configured for Tailgate: its own redis.conf (bind,
# port, password, memory cap evicting nothing Tailgate needs), readable by the redis
# account only since it holds the password.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set redis = tailgate.redis %}

tailgate-redis-pkg-installed:
  pkg.installed:
    - name: {{ redis.pkg }}

tailgate-redis-config-managed:
  file.managed:
    - name: {{ redis.config_file }}
    - source: salt://{{ tplroot }}/files/redis.conf.jinja
    - template: jinja
    - context:
        tailgate: {{ tailgate | json }}
    - user: redis
    - group: redis
    - mode: '0640'
    - show_changes: False
    - require:
      - pkg: tailgate-redis-pkg-installed

tailgate-redis-service-running:
  service.running:
    - name: {{ redis.service }}
    - enable: True
    - watch:
      - file: tailgate-redis-config-managed
