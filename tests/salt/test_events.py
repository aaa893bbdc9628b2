"""The Salt master's events as streams, without a master: `salt:` names in the contract
and in access globs, what the engine makes of each event, how it holds lines while
Redis is away, and the tailgate formula's shape (IDs, includes)."""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any

import pytest
import redis

import wire
from gateway.access.grants import compile_grants
from tests.support import ROOT
from wire.names import StreamNameError, parse_stream, salt_stream

pytestmark = pytest.mark.unit  # nothing here starts a process

FORMULA = ROOT / "salt_states" / "tailgate"


def load_engine() -> Any:
    path = ROOT / "salt_states" / "_engines" / "tailgate_events.py"
    spec = importlib.util.spec_from_file_location("tailgate_events", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


engine = load_engine()


def test_salt_stream_names_are_part_of_the_contract() -> None:
    name = parse_stream("salt:jobs")
    assert (name.kind, name.what, name.name) == ("salt", "jobs", "salt:jobs")
    assert salt_stream("orch").name == "salt:orch"
    for bad in ("salt:", "salt:Jobs", "salt:jobs/x", "salt:1jobs", "salt:" + "a" * 65, "salt:jobs\n"):
        with pytest.raises(StreamNameError, match="salt:<what>"):
            parse_stream(bad)
    with pytest.raises(StreamNameError, match="'kafka:', 'file:' or 'salt:'"):
        parse_stream("events:jobs")


def test_salt_globs_grant_salt_streams_and_nothing_else() -> None:
    grants = compile_grants(("salt:*", "kafka:pay*"))
    assert grants.allows_name("salt:jobs") and grants.allows_name("salt:orch")
    assert grants.allows_name("kafka:payments") and not grants.allows_name("kafka:orders")
    assert not grants.allows_name("file:web1:/var/log/syslog")
    only_jobs = compile_grants(("salt:jobs",))
    assert only_jobs.allows_name("salt:jobs") and not only_jobs.allows_name("salt:orch")
    assert not compile_grants(("kafka:*",)).allows_name("salt:jobs")  # kinds never cross
    assert not compile_grants(("*",)).allows_name("salt:jobs")


def texts(entries: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(what, text) for what, text, _ in entries]


def test_jobs_and_their_failures_become_lines_with_failures_at_error_level() -> None:
    d = engine.Describer()
    new = d.describe(
        "salt/job/1/new", {"fun": "state.apply", "arg": ["web"], "minions": ["a", "b"], "user": "ops", "_stamp": "x"}
    )
    assert texts(new) == [
        ("events", "salt/job/1/new job 1 state.apply web → 2 minion(s) a,b by ops"),
        ("jobs", "job 1 state.apply web → 2 minion(s) a,b by ops"),
    ]
    state = {"file_|-conf_|-/etc/x_|-managed": {"__id__": "conf", "result": False, "comment": "no source"}}
    ret = d.describe("salt/job/1/ret/b", {"fun": "state.apply", "retcode": 2, "success": True, "return": state})
    assert texts(ret)[1:] == [
        ("jobs", "job 1 state.apply on b: FAILED (retcode 2)"),
        ("jobs", "job 1 on b: state failed: conf: no source"),
    ]
    assert {m.get("level") for _, _, m in ret} == {"error"}
    ok = d.describe("salt/job/2/ret/a", {"fun": "test.ping", "retcode": 0, "success": True, "return": True})
    assert "level" not in ok[1][2] and ok[1][1] == "job 2 test.ping on a: ok"


def test_an_orchestration_is_followed_step_by_step_in_salt_orch() -> None:
    d = engine.Describer()
    lines = d.describe("salt/run/9/new", {"fun": "runner.state.orch", "fun_args": ["tailgate.orch.deploy"]})
    assert texts(lines)[1] == ("orch", "orchestration 9 started: tailgate.orch.deploy")
    args = {"type": "function", "tgt": "web1", "name": "tailgate.start", "args": {"arg": ["tailgate-gateway-8081"]}}
    assert [what for what, _, _ in d.describe("salt/run/9/args", args)] == ["events"]  # said with its job
    job = d.describe("salt/job/5/new", {"fun": "tailgate.start", "tgt": "web1", "minions": ["web1"], "arg": []})
    assert texts(job)[2] == ("orch", "step tailgate.start tailgate-gateway-8081: job 5 → web1")
    failed = d.describe(
        "salt/job/5/ret/web1",
        {"fun": "tailgate.start", "retcode": 1, "success": False, "return": "ERROR: not ready within 30s"},
    )
    step = [(t, m) for what, t, m in failed if what == "orch"]
    assert step == [
        (
            "✗ step tailgate.start tailgate-gateway-8081 on web1: FAILED (retcode 1): ERROR: not ready within 30s",
            {"jid": "9", "job": "5", "level": "error"},
        )
    ]
    end = d.describe("salt/run/9/ret", {"fun": "runner.state.orch", "success": False, "return": {"retcode": 1}})
    assert texts(end)[1][1].startswith("orchestration 9 FAILED") and end[1][2]["level"] == "error"
    assert d.orchestrations == set() and d.steps == {}


def test_noise_and_secrets_stay_out() -> None:
    d = engine.Describer()
    assert d.describe("20261130115612640470", {"minions": ["a"]}) == []
    assert d.describe("salt/job/1/publish", {"fun": "test.ping"}) == []
    assert d.describe("salt/auth", {"act": "accept", "id": "a", "pub": "KEY"}) == []
    rejected = d.describe("salt/auth", {"act": "reject", "id": "evil", "pub": "-----BEGIN PUBLIC KEY-----"})
    assert texts(rejected)[1] == ("minions", "minion evil authentication: reject")
    assert rejected[1][2]["level"] == "error"
    assert all("BEGIN PUBLIC KEY" not in t for _, t, _ in rejected)


class FlakyPublisher:
    """Fails while `down`; records what it published."""

    def __init__(self) -> None:
        self.down = True
        self.published: list[list[wire.StreamBatch]] = []

    def publish(self, batches: list[wire.StreamBatch]) -> tuple[int, int]:
        if self.down:
            raise redis.ConnectionError("Redis is away")
        self.published.append(batches)
        return sum(len(b.lines) for b in batches), 0


class Wire:
    Line, StreamBatch, encode_line, RedisError = wire.Line, wire.StreamBatch, wire.encode_line, redis.RedisError


def test_while_redis_is_away_the_oldest_lines_go_and_a_line_says_how_many() -> None:
    publisher = FlakyPublisher()
    feed = engine.Feed(publisher, Wire, buffer_max_lines=3)
    feed.add([("jobs", f"job {n}", {}) for n in range(5)], ts=1.0)
    feed.flush(now=0.0)
    assert publisher.published == [] and feed.dropped == 2
    feed.flush(now=0.05)  # backing off: not even tried
    publisher.down = False
    feed.flush(now=10.0)
    (batches,) = publisher.published
    got = {b.stream: [frag.decode() for _, frag in b.lines] for b in batches}
    assert [re.search(r'"text":"([^"]*)"', f)[1] for f in got["salt:jobs"]] == ["job 2", "job 3", "job 4"]
    assert '"text":"[tailgate] 2 Salt events were dropped while Redis was unreachable"' in got["salt:events"][0]
    assert not feed.pending and feed.dropped == 0


SLS = sorted(p.relative_to(FORMULA).with_suffix("").as_posix() for p in FORMULA.rglob("*.sls"))


@pytest.mark.parametrize("sls", SLS)
def test_tailgate_state_ids_are_formula_sls_what_function(sls: str) -> None:
    text = (FORMULA / f"{sls}.sls").read_text()
    ids = [i for i in re.findall(r"^((?:\{\{[^}]*\}\}|[\w.-])+):\s*$", text, re.MULTILINE) if i != "include"]
    if sls in ("init", "clean") or (sls.endswith("/init") and "include:" in text):
        assert ids == [], f"{sls}.sls only includes"
        return
    prefix = f"tailgate-{sls.removesuffix('/init').replace('/', '-')}-"
    assert ids and all(i.startswith(prefix) for i in ids), ids
