"""The tailgate formula deployed by its orchestration on the session's real master and
minion: a rolling deploy loses no viewer's line, the master's events arrive as `salt:`
streams, the runner tails streams from the master's command line, and a replica that
cannot start stops the rollout. The failing deploy runs last: it leaves a replica down.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from datetime import datetime
from typing import Any

import jwt
import redis
import websockets

from embedded.salt import BIN
from tests.salt.conftest import MINION, Deployment, unique
from tests.support import SECRET, WsClient, http_get, token
from wire import Keys, Line, Publisher, StreamBatch, encode_line

VIEWER = token(("kafka:*", "salt:*", "file:*"), sub="operator")


class Publishing:
    """Lines `<name> <n>` published to `stream` through wire.Publisher every 10 ms."""

    def __init__(self, deployment: Deployment, stream: str) -> None:
        session = deployment.session
        self.client = redis.Redis.from_url(session.redis_url)
        self.publisher = Publisher(self.client, Keys(session.prefix), maxlen=100_000)
        self.stream = stream
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.01):
            line = encode_line(Line(ts=time.time(), text=f"line {self.sent}"))
            self.publisher.publish([StreamBatch(self.stream, [(0, line)])])
            self.sent += 1

    def __enter__(self) -> Publishing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


class Follower:
    """A viewer that follows the replicas: when its replica closes the connection it
    connects to the next one and resumes with `since` (what the console does)."""

    def __init__(self, urls: list[str], stream: str) -> None:
        self.urls = urls
        self.stream = stream
        self.texts: list[str] = []
        self.notices: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.last_id: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        turn = 0
        while True:
            url = self.urls[turn % len(self.urls)]
            turn += 1
            request: dict[str, Any] = {"op": "subscribe", "stream": self.stream}
            request.update({"since": self.last_id} if self.last_id else {"backlog": 10_000})
            try:
                async with websockets.connect(f"{url}?token={VIEWER}", max_size=None) as ws:
                    await ws.send(json.dumps(request))
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["type"] == "lines":
                            self.texts += [line["text"] for line in frame["lines"]]
                            self.last_id = frame["lines"][-1]["id"]
                        elif frame["type"] in ("gap", "dropped", "error"):
                            self.notices.append(frame)
                    self.closes.append(ws.close_code)
            except (OSError, websockets.InvalidStatus, websockets.InvalidHandshake):
                await asyncio.sleep(0.05)  # that replica is down or draining: try the next

    async def __aenter__(self) -> Follower:
        self.task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def history(deployment: Deployment, stream: str) -> list[dict[str, Any]]:
    session = deployment.session
    client = redis.Redis.from_url(session.redis_url)
    try:
        entries = client.xrange(Keys(session.prefix).hist(stream))
    finally:
        client.close()
    return [json.loads(b"{" + fields[b"d"] + b"}") for _, fields in entries]


async def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def test_rolling_deploy_keeps_a_following_viewer_receiving_every_line_once(deployed: Deployment) -> None:
    stream = f"kafka:{unique('roll')}"
    pids = [deployed.pid(port) for port in deployed.ports]
    with Publishing(deployed, stream) as publishing:
        async with Follower([deployed.ws_url(p) for p in deployed.ports], stream) as viewer:
            await wait_for(lambda: viewer.texts, 10, "the first lines")
            started = time.monotonic()
            ok, steps, out = await asyncio.to_thread(deployed.orch)
            rollout = time.monotonic() - started
            assert ok, out[-3000:]
            await asyncio.sleep(0.3)  # lines published after the rollout, through the restarted replica
    sent = publishing.sent
    async with Follower([deployed.ws_url(deployed.ports[0])], stream) as check:
        check.last_id = viewer.last_id
        await wait_for(lambda: len(viewer.texts) + len(check.texts) >= sent, 10, f"all {sent} lines")
    received = viewer.texts + check.texts
    print(f"\nrolling deploy of 2 replicas: {rollout:.1f}s, {sent} lines, closes {viewer.closes}")
    assert received == [f"line {n}" for n in range(sent)]  # every line, once, in order
    assert viewer.notices == []
    assert viewer.closes[:2] == [1001, 1001]  # drained by each replica in turn, never cut
    new_pids = [deployed.pid(port) for port in deployed.ports]
    assert all(new != old for new, old in zip(new_pids, pids, strict=True)), (pids, new_pids)
    # One replica at a time: each step ran, in this order.
    order = sorted(steps, key=lambda k: steps[k]["__run_num__"])
    expected = [f"{MINION}-{p}-{step}" for p in deployed.ports for step in ("drain", "update", "start")]
    assert [re.sub(r"^.*tailgate-orch-deploy-(.*)-(function|state)$", r"\1", k.split("_|-")[1]) for k in order] == (
        expected
    )
    # The orchestration as the console shows it: salt:orch, step by step.
    orch = [line["text"] for line in history(deployed, "salt:orch")]
    assert any(t.startswith("orchestration ") and t.endswith(" succeeded") for t in orch), orch[-5:]
    last = f"✓ step tailgate.start tailgate-gateway-{deployed.ports[1]} on {MINION}: ok"
    assert last in orch, orch[-10:]


async def run_async(deployed: Deployment, fun: str, *args: str) -> str:
    """Publish a job with the `salt` command (--async): its jid."""
    pair = deployed.pair
    argv = [str(BIN / "salt"), "-c", str(pair.conf_dir), "--async", "-L", MINION, fun, *args]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, cwd=str(pair.dir))
    out, _ = await proc.communicate()
    return out.decode().rsplit(" ", 1)[-1].strip()


async def test_a_job_on_the_minion_reaches_a_salt_jobs_viewer_within_two_seconds(deployed: Deployment) -> None:
    client = await WsClient.connect(f"{deployed.ws_url(deployed.ports[0])}?token={VIEWER}")
    await client.subscribe("salt:jobs")

    def of_job(job: str) -> list[dict[str, Any]]:
        return [line for line in client.lines.get("salt:jobs", []) if line.get("meta", {}).get("jid") == job]

    mark = unique("echo")
    jid = await run_async(deployed, "test.echo", mark)
    await client.wait_for(lambda: len(of_job(jid)) >= 2, timeout=10, what="the job's lines")
    # From the job's start (its jid is the master's clock when it was published) to the
    # viewer holding both its lines.
    elapsed = time.time() - datetime.strptime(jid, "%Y%m%d%H%M%S%f").timestamp()
    new, ret = of_job(jid)[:2]
    assert new["text"] == f"job {jid} test.echo {mark} → 1 minion(s) {MINION} by root"
    assert ret["text"] == f"job {jid} test.echo on {MINION}: ok" and "level" not in ret["meta"]
    print(f"\nsalt job to salt:jobs viewer: {elapsed:.3f}s")
    assert elapsed < 2.0, f"{elapsed:.2f}s"
    # A failing state is a line at error level (the console edges it in red).
    bad = f"/nonexistent/{mark}"
    jid = await run_async(deployed, "state.single", "file.exists", bad)
    await client.wait_for(lambda: len(of_job(jid)) >= 3, timeout=30, what="the failed state's lines")
    failed = of_job(jid)[1:]
    assert failed[0]["text"] == f"job {jid} state.single on {MINION}: FAILED (retcode 2)"
    assert failed[1]["text"].startswith(f"job {jid} on {MINION}: state failed: {bad}: Specified path {bad}")
    assert {line["meta"]["level"] for line in failed} == {"error"}
    await client.close()


def tail(deployed: Deployment, *args: str) -> tuple[list[str], str]:
    done = deployed.pair.run("tailgate.tail", *args, timeout=60)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-1000:]
    return [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line[:4].isdigit()], done.stderr


def test_the_runner_prints_a_kafka_stream_and_a_file_on_a_minion(deployed: Deployment) -> None:
    stream = f"kafka:{unique('runner')}"
    client = redis.Redis.from_url(deployed.session.redis_url)
    try:
        lines = [(0, encode_line(Line(ts=time.time(), text=f"kafka line {n}"))) for n in range(5)]
        Publisher(client, Keys(deployed.session.prefix)).publish([StreamBatch(stream, lines)])
    finally:
        client.close()
    printed, _ = tail(deployed, stream, "count=2", "backlog=3", "grep=line")
    assert printed == ["kafka line 2", "kafka line 3"]

    path = deployed.session.logs / f"{unique('runner')}.log"
    path.write_text("first\nsecond\n")
    printed, notes = tail(deployed, f"{MINION}:{path}", "count=2", "timeout=30")
    assert printed == ["first", "second"]
    assert f"# file:{MINION}:{path}: starting" in notes


def test_the_runner_mints_a_viewer_token_and_lists_streams(deployed: Deployment) -> None:
    done = deployed.pair.run("tailgate.token", "alice", "allow=kafka:pay*,salt:*", "ttl=1h", "--out=json")
    minted = json.loads(done.stdout)
    claims = jwt.decode(minted["token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["streams"] == ["kafka:pay*", "salt:*"]
    assert 3500 < claims["exp"] - time.time() <= 3600
    refused = deployed.pair.run("tailgate.token", "mallory", "allow=*", "--out=json")
    assert "grants nothing" in refused.stdout + refused.stderr
    listed = json.loads(deployed.pair.run("tailgate.streams", "--out=json").stdout)
    assert "salt:jobs" in {s["stream"] for s in listed}


def test_a_replica_that_cannot_start_stops_the_rollout_with_a_clear_message(deployed: Deployment) -> None:
    first, second = deployed.ports
    untouched = deployed.pid(second)
    deployed.pair.set_pillar("tailgate", deployed.pillar(max_backlog=0))  # a setting the gateway refuses
    ok, steps, out = deployed.orch()
    assert not ok
    failed = {k.split("_|-")[1]: s for k, s in steps.items() if s.get("result") is False}
    step = f"tailgate-orch-deploy-{MINION}-{first}-start-function"
    assert list(failed) == [step], list(failed)
    assert f"tailgate-gateway-{first} exited before it was ready" in out
    assert "gateway.max_backlog must be greater than 0" in out
    # Nothing after the failed replica ran: the other one still serves, as it was.
    assert deployed.pid(second) == untouched
    assert http_get(f"http://127.0.0.1:{second}/readyz")[0] == 200
    orch = history(deployed, "salt:orch")
    step, end = orch[-2:]
    assert step["text"].startswith(f"✗ step tailgate.start tailgate-gateway-{first} on {MINION}: FAILED")
    assert "exited before it was ready" in step["text"] and step["meta"]["level"] == "error"
    assert end["text"].startswith("orchestration ") and "FAILED" in end["text"] and end["meta"]["level"] == "error"
