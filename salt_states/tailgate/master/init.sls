# -*- coding: utf-8 -*-
# vim: ft=sls
# On the Salt master's own minion: the shared wire package for the tailgate_events
# engine (the very code the bridge uses, served from salt://tailgate/files/app/wire),
# redis-py for the master's Python, and the master's config for the engine and the
# tailgate runner. That file holds the Redis URL (and so its password): root only, 0600.
# Then: salt-run saltutil.sync_engines; salt-run saltutil.sync_runners; restart the master.

{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import tailgate with context %}
{%- set master = tailgate.master %}

{%- if master.pkgs %}
tailgate-master-pkgs-installed:
  pkg.installed:
    - pkgs: {{ master.pkgs | json }}
{%- endif %}

tailgate-master-wire-recurse:
  file.recurse:
    - name: {{ master.wire_dir }}/wire
    - source: salt://{{ tplroot }}/files/app/wire
    - user: root
    - group: root
    - dir_mode: '0755'
    - file_mode: '0644'
    - include_pat: 'E@\.(py|lua)$'
    - exclude_pat: 'E@__pycache__'
    - clean: True
    - makedirs: True

tailgate-master-config-managed:
  file.managed:
    - name: {{ master.config_file }}
    - source: salt://{{ tplroot }}/files/master.conf.jinja
    - template: jinja
    - context:
        tailgate: {{ tailgate | json }}
    - user: root
    - group: root
    - mode: '0600'
    - makedirs: True
    - show_changes: False
    - require:
      - file: tailgate-master-wire-recurse
