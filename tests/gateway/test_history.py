"""History reads of a real gateway: bounded in bytes, sent as they are read.

A `backlog` or `since` asking for more than `gateway.max_history_bytes` gets what fits and
a `gap` (reason `history_bytes`) where the rest is missing; a client that reads gets a
history larger than its queue without losing any of it to `dropped`.
"""

from __future__ import annotations

import time

import redis

from tests.support import WsClient
from wire import Keys, Line, Publisher, StreamBatch, encode_line

LINE = "x" * 10_000


def publish(rclient: redis.Redis, prefix: str, stream: str, texts: list[str]) -> None:
    lines = [(0, encode_line(Line(time.time(), t))) for t in texts]
    Publisher(rclient, Keys(prefix)).publish([StreamBatch(stream, lines)])


def kinds(client: WsClient, stream: str) -> list[str]:
    """The frame types a client got for `stream`, runs of `lines` counted once."""
    out: list[str] = []
    for frame in client.frames:
        if frame.get("stream") == stream and not (frame["type"] == "lines" and out[-1:] == ["lines"]):
            out.append(frame["type"])
    return out


async def test_history_over_the_byte_bound_is_cut_and_the_client_told(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_MAX_HISTORY_BYTES="100000")
    s = "kafka:big"
    publish(rclient, prefix, s, [f"{i} {LINE}" for i in range(50)])  # about 500 kB of history
    first_id = rclient.xrange(Keys(prefix).hist(s), count=1)[0][0].decode()

    backlog = await WsClient.connect(gw.ws_url)
    await backlog.subscribe(s, backlog=50)
    await backlog.wait_for(lambda: backlog.texts(s), what="backlog lines")
    numbers = [int(t.split()[0]) for t in backlog.texts(s)]
    assert 5 <= len(numbers) < 10 and numbers == list(range(50 - len(numbers), 50)), "the newest lines that fit"
    assert kinds(backlog, s) == ["subscribed", "gap", "lines"]
    assert backlog.of_type("gap")[0]["reason"] == "history_bytes"

    resume = await WsClient.connect(gw.ws_url)
    await resume.subscribe(s, since=first_id)
    await resume.wait_for(lambda: resume.of_type("gap"), what="the cut announced")
    numbers = [int(t.split()[0]) for t in resume.texts(s)]
    assert 5 <= len(numbers) < 10 and numbers == list(range(1, 1 + len(numbers))), "the oldest lines after since"
    publish(rclient, prefix, s, ["live"])
    await resume.wait_for(lambda: resume.texts(s)[-1:] == ["live"], what="live after the gap")
    assert kinds(resume, s) == ["subscribed", "lines", "gap", "lines"]
    assert resume.of_type("gap")[0]["reason"] == "history_bytes"
    await backlog.close()
    await resume.close()


async def test_a_reading_client_gets_a_backlog_larger_than_its_queue_whole(
    rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_GATEWAY_MAX_QUEUE_BYTES="262144")
    s = "kafka:long"
    texts = [f"{i} " + "y" * 1000 for i in range(2000)]  # 2 MB: eight times the queue
    for i in range(0, 2000, 500):
        publish(rclient, prefix, s, texts[i : i + 500])
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(s, backlog=2000)
    await client.wait_for(lambda: len(client.texts(s)) == 2000 or client.of_type("dropped"), what="the backlog")
    assert not client.of_type("dropped")
    assert client.texts(s) == texts
    await client.close()
