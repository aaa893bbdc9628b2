# -*- coding: utf-8 -*-
# vim: ft=sls
# Stops every running agent, then removes what the formula installed (packages stay:
# other software may use them).

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import logtail with context %}

logtail-clean-agents-stopped:
  module.run:
    - logtail.stop_all: []

logtail-clean-config-file-absent:
  file.absent:
    - name: {{ logtail.config_file }}
    - require:
      - module: logtail-clean-agents-stopped

logtail-clean-agent-dir-absent:
  file.absent:
    - name: {{ logtail.install_dir }}
    - require:
      - module: logtail-clean-agents-stopped

logtail-clean-run-dir-absent:
  file.absent:
    - name: {{ logtail.run_dir }}
    - require:
      - module: logtail-clean-agents-stopped
