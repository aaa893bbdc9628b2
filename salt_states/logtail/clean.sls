# -*- coding: utf-8 -*-
# vim: ft=sls
# Stops every running agent, then removes what the formula installed (packages stay:
# other software may use them).

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import logtail with context %}

logtail-agents-stopped:
  module.run:
    - logtail.stop_all: []

logtail-config-file-absent:
  file.absent:
    - name: {{ logtail.config_file }}
    - require:
      - module: logtail-agents-stopped

logtail-agent-install-dir-absent:
  file.absent:
    - name: {{ logtail.install_dir }}
    - require:
      - module: logtail-agents-stopped

logtail-agent-run-dir-absent:
  file.absent:
    - name: {{ logtail.run_dir }}
    - require:
      - module: logtail-agents-stopped
