"""The transport: the `/ws` handler and its command protocol, the JSON API, the probes
and the console's files. Everything a client touches enters here; the work is done by
fanout, access and tails.
"""
