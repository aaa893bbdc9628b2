# -*- coding: utf-8 -*-
# vim: ft=sls
# Undoes init.sls in reverse: services stopped and their units removed, then the
# configuration, then the code, the virtualenv and the account. Only includes.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

include:
{%- if tailgate.haproxy.manage %}
  - .haproxy.clean
{%- endif %}
  - .service.clean
  - .config.clean
  - .package.clean
