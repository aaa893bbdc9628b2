# -*- coding: utf-8 -*-
# vim: ft=sls
# Removes the configuration and the secrets' environment file.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

tailgate-config-clean-dir-absent:
  file.absent:
    - name: {{ tailgate.config_dir }}
