"""File tails: the lifecycle of the remote agents behind `file:` streams (leases, the
start lock, status), the only door to Salt (fixed functions, validated arguments), and
the cache of known minions. Reports status through a callback the app wires in.
"""
