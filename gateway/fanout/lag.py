"""Publish-to-send lag: how long after Redis published a batch's newest line it was
handed to a client's socket, as a histogram bucket and seconds (gateway metrics)."""

from __future__ import annotations

import time
from bisect import bisect_left

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def lag_of(published_ms: int) -> tuple[int, float]:
    """(histogram bucket, seconds) of the lag of a batch whose newest line Redis published
    at `published_ms` (a line id's first part: the XADD time in ms, on Redis's clock)."""
    seconds = max(0.0, time.time() - published_ms / 1000.0)
    return bisect_left(LAG_BUCKETS, seconds), seconds
