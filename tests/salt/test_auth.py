"""File streams under access control, through the session's real salt-master and minion:
the picker's listings show only what the token allows, and a refused file is never started."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import redis

from tests.conftest import SaltSession
from tests.support import SECRET, GatewayProc, Service, WsClient, http, token
from wire import Keys

MINION = "tailgate-test-minion"


async def test_minion_and_file_listings_and_subscribes_follow_the_tokens_file_globs(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    allowed, other = salt_session.logs / f"auth-{tag}-a.log", salt_session.logs / f"auth-{tag}-b.log"
    for path in (allowed, other):
        path.write_text("a line\n")
    env = salt_session.gateway_env(TAILGATE_AUTH_SECRET=SECRET, TAILGATE_AUTH_LEEWAY="0")
    gw = GatewayProc(env, log_dir=tmp_path)
    services.append(gw)
    gw.start()

    def get(path: str, tok: str) -> tuple[int, dict]:
        status, _, body = http(gw.base + path, {"Authorization": f"Bearer {tok}"})
        return status, json.loads(body)

    mine = token((f"file:{MINION}:{salt_session.logs}/auth-{tag}-a*",), sub="erin")
    assert get("/api/minions", mine) == (200, {"minions": [MINION], "enabled": True})
    status, listing = get(f"/api/minions/{MINION}/files", mine)
    assert status == 200 and [f["path"] for f in listing["files"]] == [str(allowed)]
    assert listing["files"][0]["stream"] == f"file:{MINION}:{allowed}"
    # Other minions' globs, or no file glob at all: no minion listed, no file listing.
    for tok in (token(("file:web-*:/var/log/*",)), token(("kafka:*",))):
        assert get("/api/minions", tok) == (200, {"minions": [], "enabled": True})
        status, body = get(f"/api/minions/{MINION}/files", tok)
        assert (status, body["error"]) == (403, "forbidden")

    client = await WsClient.connect(f"{gw.ws_url}?token={mine}")
    refused = f"file:{MINION}:{other}"
    await client.subscribe(refused)
    assert [(f["type"], f.get("code")) for f in client.frames] == [("error", "forbidden")]
    await client.close()
    # Nothing was asked of Redis or Salt for it: no viewer lease, no agent heartbeat.
    keys = Keys(salt_session.prefix)
    rclient = redis.Redis.from_url(salt_session.redis_url)
    try:
        assert rclient.exists(keys.tail_wanted(refused), keys.tail_alive(refused), keys.tail_lock(refused)) == 0
    finally:
        rclient.close()
