"""TLS as for one node: with a `rediss://` URL every connection (the gateway's pub/sub,
command and history connections, a writer through wire.connect) speaks TLS to the
sentinels and to the master, trusting the URL's `ssl_ca_certs`."""

from __future__ import annotations

import pytest
import redis

from embedded.sentinel import SentinelGroup
from tests.sentinel.conftest import SentinelPublisher, Watched


@pytest.mark.parametrize("sentinel_group", [{"tls": True}], indirect=True)
async def test_sentinels_and_master_over_tls_only(
    sentinel_group: SentinelGroup, sentinel_env: dict[str, str], watched: Watched, prefix: str
) -> None:
    group, stream = sentinel_group, "kafka:tls"
    assert sentinel_env["TAILGATE_REDIS_URL"].startswith("rediss://")
    master = group.master()
    with pytest.raises(redis.ConnectionError):  # nothing speaks plain RESP
        redis.Redis(port=master.port, socket_timeout=1).ping()
    _, viewer = await watched(stream)
    publisher = SentinelPublisher(group, prefix, stream)
    publisher.start()
    await viewer.wait_for(lambda: len(viewer.lines.get(stream, [])) >= 50, 10, "lines over TLS")
    names = {c["name"] for c in group.client(master).client_list()}
    assert {"tailgate-gateway-pubsub", "tailgate-gateway-history", "test-publisher"} <= names
    published = publisher.stop()
    await viewer.wait_for(lambda: len(viewer.lines.get(stream, [])) >= published, 10, "every line")
    assert viewer.texts(stream) == [f"n {i:05d}" for i in range(published)]
    await viewer.close()
