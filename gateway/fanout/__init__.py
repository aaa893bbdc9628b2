"""Fan-out: live lines from one Redis pub/sub connection to every session watching them,
filtered and encoded once per distinct filter, with history for backlog and resume and
an exact switch from history to live. Pure cores (hub, session, filters, frames) in thin
I/O shells (live reader, history). Imports nothing of access, tails or http.
"""
