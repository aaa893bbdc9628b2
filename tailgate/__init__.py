"""The `tailgate` command: tail a gateway's streams from a terminal, list what it offers.

A client of the gateway's public contract only (docs/PROTOCOL.md: `/ws` and `/api/...`),
like the web console: it imports nothing of gateway/ or bridge/, only `wire.codes` for
the contract's names. `tailgate --help` and docs/CLI.md say what it does; `cli` reads the
command line, `config` finds the gateway and the token, `follow` keeps the WebSocket
(subscribe, reconnect, resume), `merge` orders several streams by time, `output` prints.
"""
