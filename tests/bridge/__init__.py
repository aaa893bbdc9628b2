"""Tests of the bridge (bridge/): decoding, routing and batching on their own, and the
bridge process against a real broker and Redis."""
