"""Redis Sentinel: every component follows a failover (issue 13)."""
