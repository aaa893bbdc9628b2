# -*- coding: utf-8 -*-
# vim: ft=sls
# Installs the Tailgate tail agent and its config. No service: the logtail execution
# module starts one agent per file on demand and each exits on its own when unwanted.

include:
  - .install
  - .config
