"""The gateway: serves the console, the HTTP API and `/ws`, fanning Redis out to viewers.

Packages: `fanout` (Redis to sessions), `access` (who may do what), `tails` (file
streams' remote agents), `http` (the transport). `app` wires them; docs/ARCHITECTURE.md.
"""
