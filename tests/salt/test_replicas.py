"""One tail agent per file across gateway replicas, through the real salt-master and minion.

Three replicas each with a viewer of the same file share exactly one agent (one
`logtail.start` job); it runs on while any replica has a viewer, and when the last
viewer anywhere goes with its replica (SIGKILL: no lease is dropped), the replica's
lease lapses by itself and the agent ends within wanted_ttl + grace.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.conftest import SaltSession
from tests.salt.test_tail import MINION, agent_record, new_log, starts_for, states, wait_agent_gone
from tests.support import GatewayProc, Service, WsClient


async def test_three_replicas_share_one_agent_until_the_last_viewer_anywhere_is_gone(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=2)
    stream = f"file:{MINION}:{path}"
    replicas = [GatewayProc(salt_session.gateway_env(), log_dir=tmp_path) for _ in range(3)]
    for gw in replicas:
        services.append(gw)
        gw.start(wait=False)
    for gw in replicas:
        gw.wait_ready()
    clients = [await WsClient.connect(gw.ws_url) for gw in replicas]
    await asyncio.gather(*(c.subscribe(stream, wait=False) for c in clients))
    for c in clients:
        await c.wait_for(lambda c=c: "live" in states(c, stream), timeout=20, what="live on every replica")
    with path.open("a") as fh:
        fh.write("seen on all three\n")
    for c in clients:
        await c.wait_for(lambda c=c: c.texts(stream)[-1:] == ["seen on all three"], what="the line on every replica")
    running = salt_session.pair.call("logtail.status")["agents"]
    assert [a["path"] for a in running].count(str(path)) == 1
    assert await asyncio.to_thread(starts_for, salt_session, str(path)) == 1

    # Two replicas' viewers leave; the third replica still has one: the agent runs on past
    # the grace period (nothing happening is the point, so this waits for time itself).
    await clients[0].close()
    await clients[2].close()
    await asyncio.sleep(salt_session.grace + 1.5)
    assert agent_record(salt_session, str(path)) is not None
    with path.open("a") as fh:
        fh.write("still followed\n")
    await clients[1].wait_for(lambda: clients[1].texts(stream)[-1:] == ["still followed"], what="a later line")

    # The last viewer anywhere goes with its replica, which drops nothing: its lease
    # lapses after wanted_ttl, and the agent ends after its grace.
    killed = time.monotonic()
    replicas[1].kill()
    limit = salt_session.wanted_ttl + salt_session.grace
    await wait_agent_gone(salt_session, str(path), timeout=limit + 4)
    gone_after = time.monotonic() - killed
    # The lease had between 2/3 and all of wanted_ttl left (renewed every third of it);
    # the agent checks it with each heartbeat (every second).
    lapsed = salt_session.wanted_ttl * 2 / 3 + salt_session.grace - 1.2
    assert lapsed <= gone_after <= limit + 3, gone_after
    await clients[1].close()
