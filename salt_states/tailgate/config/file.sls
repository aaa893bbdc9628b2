# -*- coding: utf-8 -*-
# vim: ft=sls
# conf/tailgate.yaml from pillar `tailgate:settings` (as it is: the services check their
# settings and keep their own defaults for what is not given), and the secrets'
# environment file. Neither is world-readable: root-owned, readable by the service
# group only, so the services can read them and cannot change them.

{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_package_install = tplroot ~ '.package.install' %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

include:
  - {{ sls_package_install }}

tailgate-config-file-dir-directory:
  file.directory:
    - name: {{ tailgate.config_dir }}
    - user: root
    - group: {{ tailgate.group }}
    - mode: '0750'
    - makedirs: True
    - require:
      - sls: {{ sls_package_install }}

tailgate-config-file-settings-serialize:
  file.serialize:
    - name: {{ tailgate.config_dir }}/tailgate.yaml
    - serializer: yaml
    - dataset: {{ tailgate.settings | json }}
    - user: root
    - group: {{ tailgate.group }}
    - mode: '0640'
    - require:
      - file: tailgate-config-file-dir-directory

tailgate-config-file-secrets-managed:
  file.managed:
    - name: {{ tailgate.config_dir }}/secrets.env
    - source: salt://{{ tplroot }}/files/secrets.env.jinja
    - template: jinja
    - context:
        tailgate: {{ tailgate | json }}
    - user: root
    - group: {{ tailgate.group }}
    - mode: '0640'
    - show_changes: False
    - require:
      - file: tailgate-config-file-dir-directory
