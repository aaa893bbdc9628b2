# -*- coding: utf-8 -*-
# vim: ft=sls
# The agent file, the shared wire package it publishes through (the very code the
# bridge uses, served from salt://logtail/files/wire: its .py modules and the .lua
# scripts under wire/lua/ it loads from there), its directories and redis-py.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import logtail with context %}

{%- if logtail.pkgs %}
logtail-install-pkgs-installed:
  pkg.installed:
    - pkgs: {{ logtail.pkgs | json }}
    - require_in:
      - file: logtail-install-agent-file-managed
{%- endif %}

logtail-install-agent-dir-managed:
  file.directory:
    - name: {{ logtail.install_dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

logtail-install-run-dir-managed:
  file.directory:
    - name: {{ logtail.run_dir }}
    - user: root
    - group: root
    - mode: '0750'
    - makedirs: True

logtail-install-log-dir-managed:
  file.directory:
    - name: {{ logtail.log_dir }}
    - user: root
    - group: root
    - mode: '0750'
    - makedirs: True

logtail-install-wire-recurse:
  file.recurse:
    - name: {{ logtail.install_dir }}/wire
    - source: salt://{{ tplroot }}/files/wire
    - user: root
    - group: root
    - dir_mode: '0755'
    - file_mode: '0644'
    - include_pat:
      - '*.py'
      - '*.lua'
    - exclude_pat: 'E@__pycache__'
    - clean: True
    - require:
      - file: logtail-install-agent-dir-managed

logtail-install-agent-file-managed:
  file.managed:
    - name: {{ logtail.install_dir }}/logtail_agent.py
    - source: salt://{{ tplroot }}/files/logtail_agent.py
    - user: root
    - group: root
    - mode: '0644'
    - require:
      - file: logtail-install-agent-dir-managed
      - file: logtail-install-wire-recurse
