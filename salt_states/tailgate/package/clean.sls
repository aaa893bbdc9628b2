# -*- coding: utf-8 -*-
# vim: ft=sls
# Removes the code, the virtualenv, the run and log directories and the account
# (after the services are stopped: include service.clean first, as clean.sls does).

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

tailgate-package-clean-install-dir-absent:
  file.absent:
    - name: {{ tailgate.install_dir }}

tailgate-package-clean-run-dir-absent:
  file.absent:
    - name: {{ tailgate.run_dir }}

tailgate-package-clean-log-dir-absent:
  file.absent:
    - name: {{ tailgate.log_dir }}

{%- if tailgate.create_user %}
tailgate-package-clean-user-absent:
  user.absent:
    - name: {{ tailgate.user }}

tailgate-package-clean-group-absent:
  group.absent:
    - name: {{ tailgate.group }}
    - require:
      - user: tailgate-package-clean-user-absent
{%- endif %}
