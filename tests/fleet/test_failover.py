"""Replicas lost and restarted behind HAProxy while lines flow: what the viewers get.

Three replicas behind conf/haproxy.cfg as shipped, viewers resuming through it with
`since` (as the console does), lines published at a steady rate through the real
publish step the whole time.
"""

from __future__ import annotations

import asyncio

from tests.browser import PacedPublisher
from tests.fleet.conftest import Fleet, assert_every_line_once_in_order, start_viewers, until
from wire import Publisher

STREAM = "kafka:fleet"


async def test_a_killed_and_a_drained_replica_cost_no_viewer_a_line(start_fleet, pub: Publisher) -> None:
    fleet: Fleet = start_fleet(3)
    viewers = await start_viewers(fleet.ws_url, STREAM, 30)
    feeder = PacedPublisher(pub, STREAM, rate=300)
    feeder.start()
    try:
        await until(lambda: all(len(v.lines) >= 150 for v in viewers), 15, "lines before the faults")
        fleet.replicas[0].kill()  # SIGKILL: its viewers' connections just drop
        assert await asyncio.to_thread(fleet.drain, 1) == 0  # SIGTERM: /readyz 503, grace, 1001, exit 0
        await asyncio.to_thread(fleet.restart, 1)
        mark = feeder.sent
        await until(lambda: all(len(v.lines) >= mark + 150 for v in viewers), 20, "lines after the faults")
    finally:
        total = await asyncio.to_thread(feeder.stop)
    await until(lambda: all(len(v.lines) >= total for v in viewers), 15, "every line to every viewer")
    for v in viewers:
        await v.stop()
    assert_every_line_once_in_order(viewers, total)
    moved = [v for v in viewers if v.closes]
    assert len(moved) >= 10, "the faults moved the viewers of two replicas out of three"
    assert any(1001 in v.closes for v in viewers), "the drained replica closed its viewers with 1001"
    # a handshake sent to the killed replica before HAProxy saw it down was retried elsewhere
    assert not [v.refused for v in viewers if v.refused]


async def test_a_rolling_restart_refuses_no_handshake_and_loses_no_line(start_fleet, pub: Publisher) -> None:
    fleet: Fleet = start_fleet(2)  # two replicas: while one restarts, the other takes everyone
    viewers = await start_viewers(fleet.ws_url, STREAM, 12)
    feeder = PacedPublisher(pub, STREAM, rate=300)
    feeder.start()
    try:
        for i in range(2):  # one replica after the other, each back and UP before the next
            mark = feeder.sent
            assert await asyncio.to_thread(fleet.drain, i) == 0
            await asyncio.to_thread(fleet.restart, i)
            await until(lambda m=mark: all(len(v.lines) >= m for v in viewers), 10, f"lines after restart {i}")
    finally:
        total = await asyncio.to_thread(feeder.stop)
    await until(lambda: all(len(v.lines) >= total for v in viewers), 15, "every line to every viewer")
    for v in viewers:
        await v.stop()
    assert not [v.refused for v in viewers if v.refused], "no handshake refused"
    # ... and none even had to be retried: each replica was out of HAProxy before it
    # stopped accepting (gateway.drain_grace above the health checks' fall x inter)
    backend = fleet.balancer.stats()["BACKEND"]
    errors = {k: backend[k] for k in ("econ", "wretr", "wredis")}
    assert errors == {"econ": "0", "wretr": "0", "wredis": "0"}, errors
    assert_every_line_once_in_order(viewers, total)
    assert all(v.closes and set(v.closes) == {1001} for v in viewers), [v.closes for v in viewers]
