# -*- coding: utf-8 -*-
# vim: ft=sls
# The agent's config (JSON), from pillar merged over the formula's defaults. The
# execution module reads it too (paths, interpreter), and checks paths against pillar.

{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_install = tplroot ~ '.install' %}
{%- from tplroot ~ "/map.jinja" import logtail with context %}

include:
  - {{ sls_install }}

logtail-config-file-serialize:
  file.serialize:
    - name: {{ logtail.config_file }}
    - serializer: json
    - user: root
    - group: root
    - mode: '0640'
    - makedirs: True
    - dataset:
        python: {{ logtail.python | json }}
        install_dir: {{ logtail.install_dir | json }}
        run_dir: {{ logtail.run_dir | json }}
        log_dir: {{ logtail.log_dir | json }}
        redis_url: {{ logtail.redis_url | json }}
        key_prefix: {{ logtail.key_prefix | json }}
        allowlist: {{ logtail.allowlist | json }}
        grace_period: {{ logtail.grace_period | float }}
        max_line_bytes: {{ logtail.max_line_bytes | int }}
        initial_lines: {{ logtail.initial_lines | int }}
        batch_max_lines: {{ logtail.batch_max_lines | int }}
        poll_interval: {{ logtail.poll_interval | float }}
        heartbeat_interval: {{ logtail.heartbeat_interval | float }}
        alive_ttl: {{ logtail.alive_ttl | float }}
        buffer_max_lines: {{ logtail.buffer_max_lines | int }}
        history_maxlen: {{ logtail.history_maxlen | int }}
        max_outage: {{ logtail.max_outage | float }}
    - require:
      - sls: {{ sls_install }}
