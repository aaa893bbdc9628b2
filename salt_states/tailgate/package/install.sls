# -*- coding: utf-8 -*-
# vim: ft=sls
# The service account, the code (the repository's gateway/, bridge/, wire/ and settings/
# packages, served from salt://tailgate/files/app: links into the checkout the master
# serves, never copies), its Python environment, and the run and log directories.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}

{%- if tailgate.create_user %}
tailgate-package-install-group-present:
  group.present:
    - name: {{ tailgate.group }}
    - system: True

tailgate-package-install-user-present:
  user.present:
    - name: {{ tailgate.user }}
    - gid: {{ tailgate.group }}
    - system: True
    - home: {{ tailgate.install_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin
    - require:
      - group: tailgate-package-install-group-present
    - require_in:
      - file: tailgate-package-install-log-dir-directory
{%- endif %}

tailgate-package-install-dir-directory:
  file.directory:
    - name: {{ tailgate.install_dir }}
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True

tailgate-package-install-app-recurse:
  file.recurse:
    - name: {{ tailgate.install_dir }}/app
    - source: salt://{{ tplroot }}/files/app
    - user: root
    - group: root
    - dir_mode: '0755'
    - file_mode: '0644'
    - include_pat: 'E@\.(py|lua|js|css|html|txt)$'
    - exclude_pat: 'E@__pycache__'
    - clean: True
    - require:
      - file: tailgate-package-install-dir-directory

{%- if tailgate.venv.create %}
tailgate-package-install-venv-virtualenv-managed:
  virtualenv.managed:
    - name: {{ tailgate.install_dir }}/venv
    - venv_bin: {{ tailgate.venv.bin }}
    - requirements: {{ tailgate.install_dir }}/app/requirements.txt
    - user: root
    - require:
      - file: tailgate-package-install-app-recurse
{%- endif %}

tailgate-package-install-run-dir-directory:
  file.directory:
    - name: {{ tailgate.run_dir }}
    - user: root
    - group: {{ tailgate.group }}
    - mode: '0750'
    - makedirs: True

tailgate-package-install-log-dir-directory:
  file.directory:
    - name: {{ tailgate.log_dir }}
    - user: {{ tailgate.user }}
    - group: {{ tailgate.group }}
    - mode: '0750'
    - makedirs: True
