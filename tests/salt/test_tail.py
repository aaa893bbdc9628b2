"""Remote files tailed on demand through a real salt-master and salt-minion (issue 5).

The session fixture starts the master and minion once and applies the `logtail` formula
with state.apply, so the agent exercised here is the one the formula deploys. Each test
uses files of its own under the directory both allowlists permit.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from embedded import RedisServer, wait_until
from tests.conftest import SaltSession
from tests.support import ROOT, GatewayProc, Service, WsClient, http_get
from wire import Keys
from wire.lifecycle import WANT_LUA
from wire.lua import NAMES

MINION = "tailgate-test-minion"


def agent_record(session: SaltSession, path: str) -> dict[str, Any] | None:
    """The running agent's lock record for `path` (pid, path), or None when none runs."""
    name = hashlib.sha256(path.encode()).hexdigest()[:32]
    try:
        fd = os.open(session.run_dir / f"{name}.lock", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return json.loads(os.pread(fd, 4096, 0))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def new_log(session: SaltSession, lines: int = 0) -> Path:
    path = session.logs / f"app-{uuid.uuid4().hex[:8]}.log"
    path.write_text("".join(f"old {i}\n" for i in range(lines)))
    return path


def start_gateway(session: SaltSession, services: list[Service], tmp_path: Path, **env: str) -> GatewayProc:
    gw = GatewayProc(session.gateway_env(**env), log_dir=tmp_path)
    services.append(gw)
    return gw.start()


def states(client: WsClient, stream: str) -> list[str]:
    return [f["state"] for f in client.frames if f.get("type") == "status" and f.get("stream") == stream]


def failed(client: WsClient, stream: str) -> dict[str, Any] | None:
    """The last `status failed` frame the client got for `stream`, if any."""
    return next((f for f in reversed(client.frames) if f.get("stream") == stream and f.get("state") == "failed"), None)


async def wait_agent_gone(session: SaltSession, path: str, timeout: float) -> float:
    started = time.monotonic()
    while agent_record(session, path) is not None:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the agent for {path} still runs after {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def starts_for(session: SaltSession, path: str) -> int:
    """logtail.start jobs the master issued for `path` (its job cache)."""
    return sum(1 for job in session.pair.jobs("logtail.start") if path in json.dumps(job.get("Arguments")))


def test_formula_deploys_the_agent_and_the_shared_wire_package(salt_session: SaltSession) -> None:
    deployed = salt_session.install_dir
    assert (deployed / "logtail_agent.py").read_bytes() == (
        ROOT / "salt_states" / "logtail" / "files" / "logtail_agent.py"
    ).read_bytes()
    # one shared piece of code: the very wire/ the bridge imports, not a copy in the repo
    for module in ("publish.py", "envelope.py", "keys.py", "names.py", "filepolicy.py", "lifecycle.py"):
        assert (deployed / "wire" / module).read_bytes() == (ROOT / "wire" / module).read_bytes()
    # the Lua scripts the wire package loads from its own directory go with it
    scripts = sorted(p.relative_to(ROOT / "wire") for p in (ROOT / "wire" / "lua").glob("*.lua"))
    assert [s.stem for s in scripts] == sorted(NAMES)  # every script the package names, and no other
    for script in [Path("lua/__init__.py"), *scripts]:
        assert (deployed / "wire" / script).read_bytes() == (ROOT / "wire" / script).read_bytes()
    conf = json.loads((salt_session.run_dir.parent / "etc" / "logtail.json").read_text())
    assert conf["allowlist"] == [f"{salt_session.logs}/**"]
    assert conf["key_prefix"] == salt_session.prefix
    assert conf["grace_period"] == salt_session.grace
    # the whole merged map, defaults.yaml's keys included, not a list picked in config.sls
    defaults = yaml.safe_load((ROOT / "salt_states" / "logtail" / "defaults.yaml").read_text())["logtail"]
    assert set(conf) >= set(defaults)
    assert conf["max_line_bytes"] == defaults["max_line_bytes"]
    status = salt_session.pair.call("logtail.status")
    assert status["ok"] is True


async def test_lines_reach_a_viewer_within_two_seconds_of_subscribe(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=150)
    with path.open("ab") as fh:
        fh.write(b"bad \xff\xfe utf8\n" + b"x" * 70_000 + b"\n")
    gw = start_gateway(salt_session, services, tmp_path)
    stream = f"file:{MINION}:{path}"
    client = await WsClient.connect(gw.ws_url)
    started = time.monotonic()
    await client.subscribe(stream)
    with path.open("a") as fh:
        fh.write("fresh line\n")
    await client.wait_for(lambda: "fresh line" in client.texts(stream), timeout=10, what="the appended line")
    elapsed = time.monotonic() - started
    texts = client.texts(stream)
    # the agent starts with the file's last 100 lines (the appended one may be among
    # them, depending on when the agent started), then follows it
    long_line = "x" * 65536 + " …[truncated 4464 bytes]"
    whole = [f"old {i}" for i in range(150)] + ["bad \ufffd\ufffd utf8", long_line, "fresh line"]
    assert len(texts) in (100, 101)
    assert texts == whole[-len(texts) :]
    await client.wait_for(lambda: "live" in states(client, stream), what="live status")
    assert states(client, stream)[:2] == ["starting", "live"]
    print(f"\nsalt tail: subscribe to first appended line {elapsed:.3f}s")
    assert elapsed < 2.0, f"first line after {elapsed:.2f}s"
    await client.close()


async def test_rotation_and_truncation_lose_no_line(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session)
    gw = start_gateway(salt_session, services, tmp_path)
    stream = f"file:{MINION}:{path}"
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="agent live")

    def got(n: int) -> Any:
        return lambda: len(client.texts(stream)) >= n

    writer = path.open("a", buffering=1)
    for i in range(10):
        writer.write(f"line {i}\n")
    await client.wait_for(got(10), what="first lines")
    # rotation by rename: the writer keeps writing to the renamed file for a while
    os.rename(path, path.with_suffix(".log.1"))
    for i in range(10, 15):
        writer.write(f"line {i}\n")
    writer.close()
    writer = path.open("a", buffering=1)
    for i in range(15, 25):
        writer.write(f"line {i} {'padding ' * 8}\n")
    await client.wait_for(got(25), what="lines around the rename")
    # copy-truncate: the file is emptied in place and written again, from offset 0
    writer.truncate(0)
    writer.seek(0)
    for i in range(25, 35):
        writer.write(f"line {i}\n")
    await client.wait_for(got(35), what="lines after the truncation")
    writer.close()
    # a file that does not exist yet is waited for
    os.rename(path, path.with_suffix(".log.2"))
    path.write_text("line 35\n")
    await client.wait_for(got(36), what="the line of the recreated file")
    assert client.texts(stream) == [f"line {i} {'padding ' * 8}" if 15 <= i < 25 else f"line {i}" for i in range(36)]
    ids = [line["id"] for line in client.lines[stream]]
    assert len(set(ids)) == len(ids)
    await client.close()


async def test_two_gateways_viewing_one_file_make_one_agent(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=3)
    stream = f"file:{MINION}:{path}"
    gateways = [start_gateway(salt_session, services, tmp_path) for _ in range(2)]
    clients = [await WsClient.connect(gw.ws_url) for gw in gateways]
    await asyncio.gather(*(c.subscribe(stream, wait=False) for c in clients))
    for c in clients:
        await c.wait_for(lambda c=c: "live" in states(c, stream), what="live on both gateways")
    with path.open("a") as fh:
        fh.write("seen by both\n")
    for c in clients:
        await c.wait_for(lambda c=c: "seen by both" in c.texts(stream), what="line on both gateways")
        assert c.texts(stream) == ["old 0", "old 1", "old 2", "seen by both"]
    running = salt_session.pair.call("logtail.status")["agents"]
    assert [a["path"] for a in running].count(str(path)) == 1
    assert await asyncio.to_thread(starts_for, salt_session, str(path)) == 1
    for c in clients:
        await c.close()


async def test_agent_exits_within_the_grace_period_after_the_last_viewer(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=1)
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_session, services, tmp_path)
    first, second = await WsClient.connect(gw.ws_url), await WsClient.connect(gw.ws_url)
    await first.subscribe(stream)
    await first.wait_for(lambda: "live" in states(first, stream), what="agent live")
    await second.subscribe(stream)
    await second.wait_for(lambda: "live" in states(second, stream), what="live sent to a later viewer")
    await first.close()
    # one viewer left: the agent keeps going well past the grace period (nothing happening
    # is the point, so this waits for time itself)
    await asyncio.sleep(salt_session.grace + 1.5)
    assert agent_record(salt_session, str(path)) is not None
    await second.close()
    gone_after = await wait_agent_gone(salt_session, str(path), timeout=salt_session.grace + 5)
    assert salt_session.grace - 1.5 <= gone_after <= salt_session.grace + 2.5, gone_after
    alive = redis.Redis.from_url(salt_session.redis_url).exists(Keys(salt_session.prefix).tail_alive(stream))
    assert not alive


async def test_a_killed_gateways_tail_still_ends(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=1)
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_session, services, tmp_path)
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="agent live")
    assert agent_record(salt_session, str(path)) is not None
    gw.kill()  # SIGKILL: no lease is dropped, no goodbye
    await wait_agent_gone(salt_session, str(path), timeout=salt_session.wanted_ttl + salt_session.grace + 4)
    await client.close()


async def test_refusals_get_an_error_and_issue_no_salt_job(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    logs = salt_session.logs
    gw = start_gateway(salt_session, services, tmp_path)
    client = await WsClient.connect(gw.ws_url)
    cases = {
        f"file:{MINION}:/etc/passwd": "forbidden",
        f"file:{MINION}:{logs}/../../etc/shadow": "bad_request",
        f"file:{MINION}:{logs}//app.log": "bad_request",
        f"file:{MINION}:{logs}/a\x00b.log": "bad_request",
        f"file:{MINION}:{logs}/a\x1bb.log": "bad_request",
        f"file:{MINION}:var/log/syslog": "bad_request",
        f"file:{MINION}:{logs}/a.log;rm -rf /": "bad_request",
        f"file:{MINION}:{logs}/$(reboot).log": "bad_request",
        f"file:{MINION}:{logs}/`id`.log": "bad_request",
        f"file:{MINION}:{logs}/a|b.log": "bad_request",
        f"file:{MINION}:{logs}/a&b.log": "bad_request",
        f"file:bad minion!:{logs}/app.log": "bad_request",
        f"file:{MINION};id:{logs}/app.log": "bad_request",
        f"file:no-such-minion:{logs}/app.log": "not_found",
    }
    for stream, code in cases.items():
        before = len(client.frames)
        await client.send({"op": "subscribe", "stream": stream})
        frame = await client.wait_for(
            lambda before=before: next((f for f in client.frames[before:] if f.get("type") == "error"), None),
            what=f"error for {stream!r}",
        )
        assert frame["code"] == code, (stream, frame)
        assert not any(f.get("type") == "subscribed" for f in client.frames[before:])

    # refused on the minion, not by the gateway: a link out of the allowlist, a directory
    (logs / "evil.log").symlink_to("/etc/passwd")
    (logs / "adir.log").mkdir()
    for name, reason in (("evil.log", "not_allowed"), ("adir.log", "unreadable")):
        stream = f"file:{MINION}:{logs}/{name}"
        await client.subscribe(stream)
        frame = await client.wait_for(lambda stream=stream: failed(client, stream), what=f"failed status for {name}")
        assert frame["message"].startswith(reason), frame
    assert agent_record(salt_session, f"{logs}/evil.log") is None

    jobs = await asyncio.to_thread(salt_session.pair.jobs, "logtail.start")
    issued = [json.dumps(job.get("Arguments")) for job in jobs]
    assert any("evil.log" in args for args in issued)  # the job cache is what we think it is
    for stream in cases:
        path = json.dumps(stream.split(":", 2)[2])[1:-1]
        assert not any(path in args for args in issued), stream
    await client.close()


def test_minion_and_file_listing_api(salt_session: SaltSession, services: list[Service], tmp_path: Path) -> None:
    path = new_log(salt_session, lines=1)
    (salt_session.logs / "with space.log").write_text("x\n")
    gw = start_gateway(salt_session, services, tmp_path)
    status, body = http_get(gw.base + "/api/minions", timeout=20)
    assert status == 200 and MINION in json.loads(body)["minions"]
    status, body = http_get(f"{gw.base}/api/minions/{MINION}/files", timeout=20)
    assert status == 200, body
    files = {f["path"]: f for f in json.loads(body)["files"]}
    assert files[str(path)]["stream"] == f"file:{MINION}:{path}"
    assert str(salt_session.logs / "with space.log") not in files
    assert http_get(f"{gw.base}/api/minions/no-such-minion/files", timeout=20)[0] == 404
    assert http_get(f"{gw.base}/api/minions/bad%20id/files", timeout=20)[0] == 400


@pytest.fixture
def private_redis(tmp_path: Path):
    server = RedisServer(workdir=str(tmp_path)).start()
    yield server
    server.stop()


def test_agent_buffers_through_a_redis_outage_and_reports_drops(
    salt_session: SaltSession, private_redis: RedisServer, tmp_path: Path
) -> None:
    """The deployed agent against a Redis of its own, stopped and restarted under it."""
    path = new_log(salt_session)
    prefix = "outage:"
    stream = f"file:{MINION}:{path}"
    keys = Keys(prefix)
    conf = json.loads((salt_session.run_dir.parent / "etc" / "logtail.json").read_text())
    conf.update(
        redis_url=private_redis.url, key_prefix=prefix, buffer_max_lines=5, grace_period=60, run_dir=str(tmp_path)
    )
    (tmp_path / "agent.json").write_text(json.dumps(conf))
    client = redis.Redis.from_url(private_redis.url)
    client.eval(WANT_LUA, 1, keys.tail_wanted(stream), "test", 120_000)
    agent_log = tmp_path / "agent.log"
    argv = [
        conf["python"],
        str(salt_session.install_dir / "logtail_agent.py"),
        "--config",
        str(tmp_path / "agent.json"),
    ]
    with agent_log.open("wb") as out:
        agent = subprocess.Popen([*argv, "--minion-id", MINION, "--path", str(path)], stdout=out, stderr=out)
    try:
        wait_until(lambda: client.exists(keys.tail_alive(stream)), 10, what="the agent's heartbeat")
        private_redis.stop()
        with path.open("a") as fh:
            fh.writelines(f"during {i}\n" for i in range(20))
        # one write, read in one poll: once the agent drops a line it has read all 20
        wait_until(lambda: "dropping the oldest" in agent_log.read_text(), 10, what="the agent's buffer to fill")
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        wait_until(lambda: client.xlen(keys.hist(stream)) >= 6, 15, 0.1, what="the buffered lines after the outage")
        texts = [json.loads(b"{" + f[b"d"] + b"}")["text"] for _, f in client.xrange(keys.hist(stream))]
        assert texts[0] == f"[tailgate] 15 lines of {path} were dropped while Redis was unreachable"
        assert texts[1:] == [f"during {i}" for i in range(15, 20)]
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
    assert "15 lines of" in agent_log.read_text()


@pytest.fixture(scope="module")
def salt_api(salt_session: SaltSession) -> SaltSession:
    """salt-api (rest_cherrypy, eauth against a users file) next to the session's master."""
    if salt_session.pair.api is None:
        salt_session.pair.start_api()
    return salt_session


async def test_api_mode_starts_tails_through_salt_api(
    salt_api: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    pair = salt_api.pair
    api_env = {
        "TAILGATE_SALT_MODE": "api",
        "TAILGATE_SALT_API_URL": pair.api_url,
        "TAILGATE_SALT_API_USERNAME": pair.api_user,
        "TAILGATE_SALT_API_EAUTH": "file",
    }
    path = new_log(salt_api, lines=2)
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_api, services, tmp_path, **api_env, TAILGATE_SALT_API_PASSWORD=pair.api_password)
    status, body = http_get(gw.base + "/api/minions", timeout=20)
    assert status == 200 and json.loads(body)["minions"] == [MINION]
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="live through salt-api")
    with path.open("a") as fh:
        fh.write("via salt-api\n")
    await client.wait_for(lambda: client.texts(stream) == ["old 0", "old 1", "via salt-api"], what="lines")
    await client.close()

    # wrong credentials: the viewer is told Salt is unavailable, and nothing starts
    other = new_log(salt_api, lines=1)
    bad = start_gateway(salt_api, services, tmp_path, **api_env, TAILGATE_SALT_API_PASSWORD="wrong")
    client = await WsClient.connect(bad.ws_url)
    await client.subscribe(f"file:{MINION}:{other}")
    assert client.of_type("error")[-1]["code"] == "unavailable"
    assert agent_record(salt_api, str(other)) is None
    await client.close()


async def test_a_stopped_agent_is_reported_and_started_again(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = new_log(salt_session, lines=1)
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_session, services, tmp_path)
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="agent live")
    first_pid = agent_record(salt_session, str(path))["pid"]
    # an operator stops the agent while someone is watching
    stopped = await asyncio.to_thread(salt_session.pair.call, "logtail.stop", str(path))
    assert stopped == {"ok": True, "state": "stopped", "pid": first_pid, "path": str(path)}
    await client.wait_for(lambda: states(client, stream)[-3:] == ["stopped", "starting", "live"], what="restart")
    assert agent_record(salt_session, str(path))["pid"] != first_pid
    with path.open("a") as fh:
        fh.write("after the restart\n")
    await client.wait_for(lambda: "after the restart" in client.texts(stream), what="line after the restart")
    await client.close()


async def test_a_minion_that_does_not_answer_fails_with_the_reason(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    ghost = "ghost-minion"
    key = salt_session.pair.accepted_keys / ghost
    key.write_bytes((salt_session.pair.accepted_keys / MINION).read_bytes())  # accepted, but never connects
    try:
        gw = start_gateway(salt_session, services, tmp_path, TAILGATE_SALT_TIMEOUT="2")
        client = await WsClient.connect(gw.ws_url)
        stream = f"file:{ghost}:{salt_session.logs}/app.log"
        await client.subscribe(stream)
        failed = await client.wait_for(
            lambda: next((f for f in client.frames if f.get("state") == "failed"), None), what="failed status"
        )
        assert failed == {
            "type": "status",
            "stream": stream,
            "state": "failed",
            "message": f"minion {ghost} did not answer within 2s",
        }
        await client.close()
    finally:
        key.unlink()


@pytest.mark.parametrize(
    ("salt_env", "message"),
    [
        ({"TAILGATE_SALT_MODE": "off"}, "file streams are off on this gateway (salt.mode: off)"),
        (
            {"TAILGATE_SALT_MODE": "local", "TAILGATE_SALT_MASTER_CONFIG": "/nonexistent/master"},
            "/nonexistent/master not found",
        ),
    ],
)
async def test_without_salt_file_streams_are_unavailable_and_the_rest_works(
    start_gateway, salt_env: dict[str, str], message: str
) -> None:
    gw = start_gateway(**salt_env)
    client = await WsClient.connect(gw.ws_url)
    stream = "file:web-01:/var/log/syslog"
    await client.subscribe(stream)
    error = client.of_type("error")[-1]
    assert error["code"] == "unavailable" and message in error["message"], error
    await client.subscribe("kafka:anything")
    assert client.of_type("subscribed")[-1]["stream"] == "kafka:anything"
    status, body = http_get(gw.base + "/api/minions", timeout=10)
    assert status == (200 if salt_env["TAILGATE_SALT_MODE"] == "off" else 503), body
    await client.close()


# --- what an agent refuses to read, and how many run (issue 12, defects 8 and 9) ---

SECRET = "SECRET root:$6$hash:19000:0:99999:7:::"


def link_out(path: Path, outside: Path) -> str:
    """Rotation by rename, with a link to a file outside the allowlist as the new file."""
    os.rename(path, path.with_suffix(".log.1"))
    path.symlink_to(outside / "app.log")
    return f"not_allowed: {path} resolves to {outside / 'app.log'}, outside this minion's allowlist"


def directory_link_out(path: Path, outside: Path) -> str:
    """The file's directory renamed, and a link to a directory outside put in its place."""
    os.rename(path.parent, path.parent.with_name(path.parent.name + ".old"))
    path.parent.symlink_to(outside)
    return f"not_allowed: {path} resolves to {outside / 'app.log'}, outside this minion's allowlist"


def fifo(path: Path, outside: Path) -> str:
    """Rotation by rename, with a FIFO as the new file (opening it would block the agent)."""
    os.rename(path, path.with_suffix(".log.1"))
    os.mkfifo(path)
    return f"unreadable: {path} is not a regular file"


@pytest.mark.parametrize("swap", [link_out, directory_link_out, fifo])
async def test_a_file_swapped_after_the_check_is_refused_and_the_viewer_told(
    salt_session: SaltSession, services: list[Service], tmp_path: Path, swap: Any
) -> None:
    outside = Path(os.path.realpath(tmp_path / "outside"))  # not under the minion's allowlist
    outside.mkdir()
    (outside / "app.log").write_text(f"{SECRET}\n")
    path = salt_session.logs / f"d-{uuid.uuid4().hex[:8]}" / "app.log"
    path.parent.mkdir()
    path.write_text("")
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_session, services, tmp_path)
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="agent live")
    with path.open("a") as fh:
        fh.write("before the swap\n")
    await client.wait_for(lambda: client.texts(stream) == ["before the swap"], what="the line before the swap")
    reason = swap(path, outside)
    frame = await client.wait_for(lambda: failed(client, stream), timeout=15, what="failed status")
    # the agent stopped on the new file (stopped), the module refused to start another (failed)
    assert states(client, stream) == ["starting", "live", "stopped", "starting", "failed"]
    assert frame["message"] == reason
    assert client.texts(stream) == ["before the swap"]
    history = redis.Redis.from_url(salt_session.redis_url).xrange(Keys(salt_session.prefix).hist(stream))
    assert not any(b"SECRET" in fields[b"d"] for _, fields in history)
    assert agent_record(salt_session, str(path)) is None
    await client.close()


async def test_an_agent_waits_for_a_missing_file_a_bounded_time_and_says_so(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    path = salt_session.logs / f"late-{uuid.uuid4().hex[:8]}.log"
    stream = f"file:{MINION}:{path}"
    gw = start_gateway(salt_session, services, tmp_path)
    client = await WsClient.connect(gw.ws_url)
    await client.subscribe(stream)
    await client.wait_for(lambda: "live" in states(client, stream), what="agent waiting for the file")
    # it is counted like any agent: max_agents caps what logtail.status lists
    running = await asyncio.to_thread(salt_session.pair.call, "logtail.status")
    assert str(path) in [a["path"] for a in running["agents"]]
    frame = await client.wait_for(
        lambda: failed(client, stream), timeout=salt_session.late_file_wait + 10, what="failed status"
    )
    assert frame["message"] == f"unreadable: {path} did not appear within {salt_session.late_file_wait:g}s"
    assert agent_record(salt_session, str(path)) is None
    await client.close()


async def test_a_minion_runs_at_most_max_agents_and_refuses_one_more_with_the_reason(
    salt_session: SaltSession, services: list[Service], tmp_path: Path
) -> None:
    pair = salt_session.pair
    pillar = dict(pair.pillar)
    await asyncio.to_thread(pair.call, "logtail.stop_all")  # agents earlier tests left for their grace period
    pair.write_pillar({**pillar, "max_agents": 2})
    await asyncio.to_thread(pair.call, "saltutil.refresh_pillar", "wait=True")
    try:
        streams = [f"file:{MINION}:{new_log(salt_session, lines=1)}" for _ in range(3)]
        gw = start_gateway(salt_session, services, tmp_path)
        client = await WsClient.connect(gw.ws_url)
        for stream in streams[:2]:
            await client.subscribe(stream)
            await client.wait_for(lambda stream=stream: "live" in states(client, stream), what="agent live")
        await client.subscribe(streams[2])
        frame = await client.wait_for(lambda: failed(client, streams[2]), timeout=15, what="failed status")
        assert frame["message"] == (
            "limit: this minion already runs 2 tail agents, its limit (pillar logtail:max_agents is 2); "
            "try again once one of them has ended"
        )
        assert agent_record(salt_session, streams[2].split(":", 2)[2]) is None
        assert client.texts(streams[2]) == []
        await client.close()
    finally:
        pair.write_pillar(pillar)
        await asyncio.to_thread(pair.call, "saltutil.refresh_pillar", "wait=True")
