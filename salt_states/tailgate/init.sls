# -*- coding: utf-8 -*-
# vim: ft=sls
# The Tailgate service on this host: the code and its Python environment, the
# configuration, the bridge and gateway units (running), and Redis and HAProxy where
# the pillar asks for them, and the logtail formula (the tail agent) with tail_agent.
# Only includes; each concern is its own state file.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

include:
  - .package
  - .config
  - .service
{%- if tailgate.redis.manage %}
  - .redis
{%- endif %}
{%- if tailgate.haproxy.manage %}
  - .haproxy
{%- endif %}
{%- if tailgate.tail_agent %}
  - logtail
{%- endif %}
