"""Salt master engine ``tailgate_events``: the master's event bus as Tailgate streams.

Every event on the master's bus but the noise (jid announcements, publish echoes,
accepted re-authentications) becomes one line of ``salt:events``; the ones an operator
watches also become lines of the stream they belong to:

* ``salt:jobs``: a job published (``salt/job/<jid>/new``) and each minion's return,
  with the states that failed when the job ran states;
* ``salt:orch``: orchestration runs (``state.orch``): start, each step's job and its
  outcome on each minion (failures with the minion's message), and the run's outcome;
* ``salt:minions``: minions starting, and authentication refused or pending.

A failure carries ``meta.level: "error"`` (the console edges such lines in red). Lines
are published through ``wire.Publisher``, the atomic history-and-live step the bridge and
the tail agent use, one call per burst of events. While Redis is unreachable the engine
keeps at most ``buffer_max_lines`` lines, dropping the oldest, and on reconnect first
publishes a line saying how many were dropped: never silent. Its Redis is one node or,
with ``redis_mode: sentinel``, the master the sentinels name (``wire.connect``, asked
again every second), so it follows a failover like every other component; with
``redis_mode: cluster``, a Redis Cluster (one publish step per slot).

Master config (the ``tailgate`` formula's ``master`` state writes it)::

    engines:
      - tailgate_events:
          redis_url: redis://127.0.0.1:6379/0
          key_prefix: "tailgate:"
          wire_dir: /opt/tailgate-master     # holds the shared wire/ package
          # with Sentinel (redis_url then gives only TLS, credentials and the database):
          # redis_mode: sentinel
          # redis_sentinels: [10.0.0.4:26379, 10.0.0.5:26379, 10.0.0.6:26379]
          # redis_master_name: tailgate
          # redis_sentinel_password: ...
          # or on Redis Cluster (docs/CLUSTER.md; redis_url gives credentials and TLS):
          # redis_mode: cluster
          # redis_cluster_nodes: [10.0.0.1:6379, 10.0.0.2:6379]

Salt finds it after ``salt-run saltutil.sync_engines`` (from ``salt://_engines``) and a
master restart, or through the master's ``engines_dirs``.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

__virtualname__ = "tailgate_events"

MAX_TEXT_CHARS = 2000
RETRY_MAX = 5.0
ORCH_FUNS = ("runner.state.orch", "runner.state.orchestrate", "runner.state.sls")
# Events that say nothing an operator watches for (a job's jid announcement and its
# publish echo, accepted re-authentications, pings, refreshes): in no stream at all.
QUIET_RE = re.compile(r"[0-9]{20}|salt/job/[0-9]+/publish|minion_ping|minion_start|minion/refresh.*|__schedule_return")
# Event fields too long or too sensitive to print (a minion's public key).
HIDDEN_FIELDS = ("pub", "return", "_stamp")

Entry = tuple[str, str, dict[str, Any]]  # (what, text, meta): one line of salt:<what>


def __virtual__() -> str:
    return __virtualname__


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failed_states(ret: Any) -> list[str]:
    """The `<id>: <comment>` of each failed state in a state run's return."""
    if not isinstance(ret, dict):
        return []
    failed = []
    for key, chunk in ret.items():
        if isinstance(chunk, dict) and chunk.get("result") is False:
            name = chunk.get("__id__") or str(key).split("_|-")[1 if "_|-" in str(key) else 0]
            failed.append(f"{name}: {_short(chunk.get('comment', ''), 300)}")
    return failed


def _job_new(jid: str, data: dict[str, Any]) -> Entry:
    minions = data.get("minions") or []
    fun = data.get("fun", "?")
    args = " ".join(_short(a, 80) for a in data.get("arg") or [])
    text = f"job {jid} {fun}{' ' + args if args else ''} → {len(minions)} minion(s) {_short(','.join(minions))}"
    if data.get("user"):
        text += f" by {data['user']}"
    return ("jobs", text, {"jid": jid, "fun": fun, "minions": minions[:50], "event": "new"})


def _job_ret(jid: str, minion: str, data: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """(succeeded, what to say after the job's name, the failed states' `<id>: <comment>`)."""
    fun = data.get("fun", "?")
    retcode = data.get("retcode", 0)
    failed = _failed_states(data.get("return")) if str(fun).startswith("state.") else []
    ok = data.get("success", True) is not False and not retcode and not failed
    outcome = "ok" if ok else f"FAILED (retcode {retcode})"
    if not ok and not failed and isinstance(data.get("return"), str):
        outcome += f": {_short(data['return'], 300)}"
    return ok, outcome, failed


def _level(ok: bool, meta: dict[str, Any]) -> dict[str, Any]:
    return meta if ok else {**meta, "level": "error"}


class Describer:
    """Turns events into lines; remembers what ties a job to an orchestration.

    An orchestration announces each step (``salt/run/<orch jid>/args``: type, target,
    function) just before it publishes the step's job; the next job published with that
    function and target is the step's, and its returns are the step's outcome on each
    minion, written to ``salt:orch`` as well as ``salt:jobs``.
    """

    def __init__(self) -> None:
        self.orchestrations: set[str] = set()
        self.announced: dict[tuple[str, str], tuple[str, str]] = {}  # (fun, target) -> (orch jid, step)
        self.steps: dict[str, tuple[str, str]] = {}  # job jid -> (orch jid, step)

    def describe(self, tag: str, data: Any) -> list[Entry]:
        """The lines one event makes: always one of `salt:events`, plus those of the
        streams it belongs to; none for the events no one watches."""
        data = data if isinstance(data, dict) else {"data": data}
        if QUIET_RE.fullmatch(tag) or (tag == "salt/auth" and data.get("act") == "accept"):
            return []
        parts = tag.split("/")
        entries: list[Entry] = []
        if tag.startswith("salt/job/") and len(parts) >= 4:
            if parts[3] == "new":
                entries = self._new(parts[2], data)
            elif parts[3] == "ret" and len(parts) >= 5:
                entries = self._ret(parts[2], parts[4], data)
        elif tag.startswith("salt/run/") and len(parts) >= 4:
            entries = self._run(parts[2], parts[3], data)
        else:
            entries = _minion(tag, data)
        level = next((m["level"] for _, _, m in entries if "level" in m), None)
        summary = entries[0][1] if entries else _short({k: v for k, v in data.items() if k not in HIDDEN_FIELDS}, 300)
        meta = {"tag": tag, **({"level": level} if level else {})}
        return [("events", f"{tag} {summary}", meta), *entries]

    def _new(self, jid: str, data: dict[str, Any]) -> list[Entry]:
        entries = [_job_new(jid, data)]
        step = self.announced.pop((str(data.get("fun")), _target(data.get("tgt"))), None)
        if step is not None:
            self.steps[jid] = step
            text = f"step {step[1]}: job {jid} → {_short(','.join(data.get('minions') or []))}"
            entries.append(("orch", text, {"jid": step[0], "job": jid}))
        return entries

    def _ret(self, jid: str, minion: str, data: dict[str, Any]) -> list[Entry]:
        ok, outcome, failed = _job_ret(jid, minion, data)
        fun = data.get("fun", "?")
        meta = _level(ok, {"jid": jid, "fun": fun, "minion": minion, "event": "ret", "success": ok})
        entries = [("jobs", f"job {jid} {fun} on {minion}: {outcome}", meta)]
        entries += [("jobs", f"job {jid} on {minion}: state failed: {f}", {**meta, "state": f}) for f in failed]
        if jid in self.steps:
            orch_jid, step = self.steps[jid]
            text = f"{'✓' if ok else '✗'} step {step} on {minion}: {outcome}"
            detail = f" ({'; '.join(failed)})" if failed else ""
            entries.append(("orch", _short(text + detail, MAX_TEXT_CHARS), _level(ok, {"jid": orch_jid, "job": jid})))
        return entries

    def _run(self, jid: str, event: str, data: dict[str, Any]) -> list[Entry]:
        fun = str(data.get("fun", ""))
        if event == "new" and fun.startswith(ORCH_FUNS):
            self.orchestrations.add(jid)
            mods = data.get("fun_args") or data.get("arg") or []
            return [("orch", f"orchestration {jid} started: {_short(' '.join(map(str, mods)))}", {"jid": jid})]
        if event == "args" and isinstance(data.get("args"), dict):
            kind, name = data.get("type", "step"), str(data.get("name", ""))
            args = data["args"]
            step_fun = name if kind == "function" else "state.sls"
            step = f"{name} {' '.join(map(str, args.get('arg') or []))}".strip()
            self.announced[(step_fun, _target(data.get("tgt")))] = (jid, _short(step))
            return []
        if event == "ret" and jid in self.orchestrations:
            self.orchestrations.discard(jid)
            self.steps = {job: step for job, step in self.steps.items() if step[0] != jid}
            ret = data.get("return")
            inner = ret.get("data") if isinstance(ret, dict) else None
            failed = [f for run in inner.values() for f in _failed_states(run)] if isinstance(inner, dict) else []
            retcode = ret.get("retcode") if isinstance(ret, dict) else 0
            ok = data.get("success", True) is not False and not failed and not retcode
            text = f"orchestration {jid} " + ("succeeded" if ok else f"FAILED: {'; '.join(failed) or _short(ret, 300)}")
            return [("orch", _short(text, MAX_TEXT_CHARS), _level(ok, {"jid": jid, "event": "ret", "success": ok}))]
        return []


def _target(tgt: Any) -> str:
    return ",".join(map(str, tgt)) if isinstance(tgt, list) else str(tgt)


def _minion(tag: str, data: dict[str, Any]) -> list[Entry]:
    parts = tag.split("/")
    if tag.startswith("salt/minion/") and parts[-1] == "start":
        return [("minions", f"minion {parts[2]} started", {"minion": parts[2]})]
    if tag == "salt/auth" and data.get("act") in ("reject", "denied", "pend"):
        act = data["act"]
        meta = {"minion": data.get("id", "?"), "act": act}
        return [("minions", f"minion {data.get('id', '?')} authentication: {act}", _level(act == "pend", meta))]
    return []


class Feed:
    """Lines waiting for Redis, published in one atomic step per burst; bounded."""

    def __init__(self, publisher: Any, wire: Any, buffer_max_lines: int) -> None:
        self.publisher = publisher
        self.wire = wire
        self.pending: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=buffer_max_lines)
        self.dropped = 0
        self.failing_since: float | None = None
        self.next_try = 0.0

    def add(self, entries: Iterable[Entry], ts: float) -> None:
        for what, text, meta in entries:
            if len(self.pending) == self.pending.maxlen:
                self.dropped += 1
            line = self.wire.Line(ts=ts, text=text[:MAX_TEXT_CHARS], meta=meta)
            self.pending.append((f"salt:{what}", self.wire.encode_line(line)))

    def flush(self, now: float) -> None:
        """Publish what is pending unless Redis failed a moment ago (then back off)."""
        if not self.pending or now < self.next_try:
            return
        lines = list(self.pending)
        if self.dropped:
            text = f"[tailgate] {self.dropped} Salt events were dropped while Redis was unreachable"
            notice = self.wire.Line(ts=time.time(), text=text, meta={"tailgate": "dropped", "count": self.dropped})
            lines.insert(0, ("salt:events", self.wire.encode_line(notice)))
        batches: dict[str, Any] = {}
        for stream, fragment in lines:
            batches.setdefault(stream, self.wire.StreamBatch(stream)).lines.append((0, fragment))
        try:
            self.publisher.publish(list(batches.values()))
        except self.wire.RedisError as exc:
            if self.failing_since is None:
                log.warning("tailgate_events: Redis unreachable (%s); holding up to %d lines", exc, self.pending.maxlen)
                self.failing_since = now
            self.next_try = now + min(RETRY_MAX, max(0.1, now - self.failing_since))
            return
        if self.dropped:
            log.warning("tailgate_events: %d lines were dropped while Redis was unreachable", self.dropped)
        self.pending.clear()
        self.dropped = 0
        self.failing_since = None


class _Wire:
    """The pieces of the shared wire package (and redis-py) the engine uses, imported
    from `wire_dir` once the engine starts (the master's own modules come first)."""

    def __init__(self, wire_dir: str) -> None:
        if wire_dir and wire_dir not in sys.path:
            sys.path.append(wire_dir)
        import redis
        from redis.exceptions import RedisClusterException

        from wire import Keys, Line, Publisher, StreamBatch, encode_line
        from wire.connect import Connector, RedisTarget

        self.Keys, self.Line, self.Publisher = Keys, Line, Publisher
        self.StreamBatch, self.encode_line = StreamBatch, encode_line
        self.RedisError = (redis.RedisError, RedisClusterException)
        self.Connector, self.RedisTarget = Connector, RedisTarget


def start(
    redis_url: str = "redis://127.0.0.1:6379/0",
    key_prefix: str = "tailgate:",
    wire_dir: str = "",
    history_maxlen: int = 10_000,
    buffer_max_lines: int = 10_000,
    redis_mode: str = "single",
    redis_sentinels: Iterable[str] | str = (),
    redis_master_name: str = "",
    redis_sentinel_username: str = "",
    redis_sentinel_password: str = "",
    redis_cluster_nodes: Iterable[str] | str = (),
) -> None:
    """Run until the master stops: read its event bus, publish lines to Redis."""
    import salt.utils.event

    wire = _Wire(wire_dir)
    target = wire.RedisTarget(
        redis_mode,
        redis_url,
        redis_sentinels if isinstance(redis_sentinels, str) else list(redis_sentinels),
        redis_master_name,
        redis_sentinel_username,
        redis_sentinel_password,
        where="tailgate_events: redis_",
        cluster_nodes=redis_cluster_nodes if isinstance(redis_cluster_nodes, str) else list(redis_cluster_nodes),
    )
    connector = wire.Connector(target)
    client = connector.client("tailgate-events", socket_timeout=3, socket_connect_timeout=3)
    keys = target.keys(key_prefix)
    feed = Feed(wire.Publisher(client, keys, int(history_maxlen)), wire, int(buffer_max_lines))
    describer = Describer()
    opts = __opts__  # noqa: F821 - injected by Salt's loader
    log.info("tailgate_events: publishing the master's events to the %s (prefix %s)", target.describe(), key_prefix)
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        while True:
            event = bus.get_event(full=True, wait=0.05 if feed.pending else 1)
            # Take the whole burst before publishing: one atomic step for all of it.
            while event:
                feed.add(describer.describe(event["tag"], event.get("data")), time.time())
                if len(feed.pending) >= 500:
                    break
                event = bus.get_event(full=True, no_block=True)
            connector.follow()
            feed.flush(time.monotonic())
