# -*- coding: utf-8 -*-
# vim: ft=sls
# The agent's config (JSON): the whole map from map.jinja (defaults.yaml, the OS
# family's values, then pillar), handed over as it is. The agent keeps no defaults of
# its own: a key missing here is an error there. The execution module reads this file
# too (paths, interpreter), and checks paths against pillar.

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
    - dataset: {{ logtail | json }}
    - require:
      - sls: {{ sls_install }}
