# -*- coding: utf-8 -*-
# vim: ft=sls
# Removes the master's engine and runner configuration and its copy of wire/.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

tailgate-master-clean-config-absent:
  file.absent:
    - name: {{ tailgate.master.config_file }}

tailgate-master-clean-wire-absent:
  file.absent:
    - name: {{ tailgate.master.wire_dir }}
