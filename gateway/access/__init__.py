"""Access: who is asking (tokens, the trusted proxy header), what they may open (grants),
how much they may ask (limits), and the audit trail of every decision; `guard` is the
front door the handlers share, and the one place a refusal is counted and audited.
"""
