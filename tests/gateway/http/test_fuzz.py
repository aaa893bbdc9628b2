"""Property-based fuzzing (hypothesis) of what clients control: frames and stream names.

In process: `gateway.http.protocol.parse_command` and `wire.names.parse_stream` raise nothing
but their documented errors, whatever they are given, and what they accept is
well-formed. Through a real gateway (authentication on): every random or malformed frame
a fuzzing client sends is answered (an `error`, or the command's normal answer) or the
connection is closed cleanly with its documented code, while a well-behaved client on
the same process receives every numbered line, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
import websockets
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embedded import RedisServer
from gateway.http.protocol import Ping, Subscribe, Unsubscribe, parse_command
from gateway.http.queries import Limits
from tests.support import GatewayProc, WsClient, service_env
from wire import Keys, Line, Publisher, StreamBatch, StreamNameError, encode_line, parse_stream
from wire.codes import ProtocolError
from wire.epoch import parse_epoch
from wire.names import MAX_NAME_CHARS, StreamName, parse_selector

pytestmark = pytest.mark.unit

SECRET = "fuzzing-" + "f" * 40
MAX_FRAME = 4096
MAX_BACKLOG = 1000
MAX_PATTERN = 200
MAX_TERMS = 6
LIMITS = Limits(MAX_BACKLOG, MAX_PATTERN, MAX_TERMS)
ANSWERS = {"error", "pong", "subscribed", "unsubscribed"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
tricky_names = st.sampled_from(
    [
        "kafka:ok",
        "kafka:a/b",
        "kafka:",
        "kafka:/x",
        "kafka:a/",
        "kafka:a//b",
        "kafka:a b",
        "file:m:/var/log/x",
        "file:m:/var/log/../etc/passwd",
        "file:m:relative",
        "file::/x",
        "file:m:/x//y",
        "file:m:/x/",
        "file:m:/x\x00y",
        "file:m:/x;rm -rf /",
        "file:m:/var/log/$(id)",
        "file:web-*:/var/log/x",
        "file:*:/var/log/x",
        "file:web-[12]:/var/log/x",
        "file:web-*;id:/var/log/x",
        "file:w?b:relative",
        "FILE:m:/x",
        "kafka:" + "t" * 250,
        "x" * (MAX_NAME_CHARS + 1),
    ]
)
stream_names = st.one_of(
    tricky_names,
    st.text(max_size=40),
    st.text(max_size=30).map(lambda t: "kafka:" + t),
    st.builds(lambda m, p: f"file:{m}:{p}", st.text(max_size=10), st.text(max_size=30)),
    st.builds(
        lambda m, p: f"file:{m}:/{p}", st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True), st.text(max_size=20)
    ),
)
commands = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping"]) | json_values},
    optional={
        "stream": stream_names | json_values,
        "keyword": st.text(max_size=MAX_PATTERN + 5) | json_values,
        "regex": st.sampled_from(["(", "a{99999}", "(?P<x>a)", "\\", "[", "(a)\\1", "(?=x)", ".*", "(?i)err"])
        | st.text(max_size=30)
        | json_values,
        "ignore_case": json_values,
        "backlog": st.integers(-5, MAX_BACKLOG + 5) | json_values,
        "since": st.sampled_from(["0-0", "1-1", "99999999999999-0", "-1-1", "1-", "a-b"]) | json_values,
        "exclude": st.lists(st.text(max_size=MAX_PATTERN + 5), max_size=MAX_TERMS + 2) | json_values,
        "fields": st.dictionaries(st.text(max_size=12), json_values, max_size=MAX_TERMS + 2) | json_values,
        "from": st.sampled_from(["2026-11-30T10:00:00Z", "2026-13-01", "x", 1.7e9, -1, 1e30, float("nan")])
        | json_values,
        "until": st.sampled_from(["2026-11-30T11:00:00+01:00", "", 1.7e9 + 1, 0]) | json_values,
        "around": st.sampled_from(["5-0", "0-0", "x"]) | json_values,
        "context": st.integers(-2, MAX_BACKLOG + 2) | json_values,
        "epoch": st.sampled_from(["18c2f1a0b3c4d5e6f", "", "A", "x" * 33, "a b", "\ud800"]) | json_values,
    },
)
frames = st.one_of(
    commands.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
)


# In process ----------------------------------------------------------------------------


@settings(max_examples=600, deadline=None)
@given(frame=frames | commands.map(json.dumps).map(str.encode))
def test_parse_command_raises_only_protocol_errors_and_accepts_only_well_formed_commands(frame: str | bytes) -> None:
    try:
        command = parse_command(frame, LIMITS)
    except ProtocolError as exc:
        assert exc.code in ("bad_request", "too_large")
        assert exc.message
        assert exc.stream is None or (isinstance(exc.stream, str) and len(exc.stream) <= 512)
        return
    assert isinstance(command, Ping | Subscribe | Unsubscribe)
    if isinstance(command, Subscribe | Unsubscribe):
        assert parse_selector(command.stream.name) == command.stream
    if isinstance(command, Subscribe):
        spec, query = command.filter, command.query
        assert 0 <= query.backlog <= MAX_BACKLOG and 0 <= query.context <= MAX_BACKLOG
        assert query.epoch is None or (query.since is not None and parse_epoch(query.epoch))
        assert len(spec.keywords) + len(spec.exclude) + len(spec.fields) <= MAX_TERMS
        texts = [*spec.keywords, *spec.exclude, spec.regex, *(p for pair in spec.fields for p in pair)]
        assert all(isinstance(t, str) and len(t) <= MAX_PATTERN for t in texts)
        try:  # the handler compiles the filter next: it too may only refuse, with its own error
            spec.compile(command.stream.name)
        except ProtocolError as exc:
            assert exc.code == "bad_request" and exc.message


@settings(max_examples=800, deadline=None)
@given(name=stream_names | json_values)
def test_parse_stream_raises_only_stream_name_errors_and_accepted_names_are_safe(name: Any) -> None:
    try:
        stream = parse_stream(name)
    except StreamNameError as exc:
        assert str(exc)
        return
    assert isinstance(stream, StreamName) and stream.name == name
    assert not any(ord(c) < 0x20 for c in name)
    if stream.kind == "file":
        assert stream.path.startswith("/") and "/../" not in stream.path + "/" and "//" not in stream.path
        assert name == f"file:{stream.minion}:{stream.path}"
    else:
        assert stream.kind == "kafka" and name in (f"kafka:{stream.topic}", f"kafka:{stream.topic}/{stream.sub}")


@settings(max_examples=300, deadline=None)
@given(
    topic=st.from_regex(r"[A-Za-z0-9._-]{1,60}", fullmatch=True),
    minion=st.from_regex(r"[A-Za-z0-9._-]{1,60}", fullmatch=True),
    segments=st.lists(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}", fullmatch=True), min_size=1, max_size=6),
)
def test_every_name_the_contract_allows_parses(topic: str, minion: str, segments: list[str]) -> None:
    assert parse_stream(f"kafka:{topic}").topic == topic
    path = "/" + "/".join(segments)
    stream = parse_stream(f"file:{minion}:{path}")
    assert (stream.minion, stream.path) == (minion, path)
    with pytest.raises(StreamNameError):
        parse_stream(f"file:{minion}:{path}/../etc/passwd")


# Through a real gateway -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_gateway(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    prefix = f"fz{uuid.uuid4().hex[:6]}:"
    env = service_env(
        TAILGATE_REDIS_URL=redis_server.url,
        TAILGATE_REDIS_PREFIX=prefix,
        TAILGATE_SALT_MODE="off",
        TAILGATE_AUTH_SECRET=SECRET,
        TAILGATE_GATEWAY_MAX_FRAME_BYTES=str(MAX_FRAME),
        TAILGATE_GATEWAY_MAX_BACKLOG=str(MAX_BACKLOG),
        TAILGATE_GATEWAY_MAX_PATTERN_CHARS=str(MAX_PATTERN),
        TAILGATE_GATEWAY_CONTROL_RATE="100000",
        TAILGATE_GATEWAY_CONTROL_BURST="100000",
    )
    gw = GatewayProc(env, log_dir=Path(tmp_path_factory.mktemp("fuzz-gateway")))
    gw.prefix = prefix  # type: ignore[attr-defined]
    gw.start()
    yield gw
    gw.stop()


def _token() -> str:
    return jwt.encode({"sub": "fuzzer", "exp": int(time.time()) + 600, "streams": ["kafka:*"]}, SECRET, "HS256")


async def _fuzz(gw: GatewayProc, rclient: redis.Redis, sent_frames: list[str | bytes]) -> None:
    url = f"{gw.ws_url}?token={_token()}"
    steady_stream = f"kafka:steady-{uuid.uuid4().hex[:6]}"
    steady = await WsClient.connect(url)
    await steady.subscribe(steady_stream)
    publisher = Publisher(rclient, Keys(gw.prefix))  # type: ignore[attr-defined]
    published = 0

    fuzzer = await WsClient.connect(url)
    for frame in sent_frames:
        answered = sum(1 for f in fuzzer.frames if f.get("type") in ANSWERS)
        with contextlib.suppress(websockets.ConnectionClosed):
            await fuzzer.ws.send(frame)
        await fuzzer.wait_for(
            lambda a=answered, c=fuzzer: c.closed_code is not None
            or sum(1 for f in c.frames if f.get("type") in ANSWERS) > a,
            what=f"an answer to {frame[:120]!r}",
        )
        size = len(frame.encode() if isinstance(frame, str) else frame)
        if size > MAX_FRAME:
            # The only frame that ends a connection is one over the size limit: told, then 1009.
            await fuzzer.wait_for(lambda c=fuzzer: c.closed_code is not None, what="close after a big frame")
            assert fuzzer.closed_code == 1009 and fuzzer.of_type("error")[-1]["code"] == "too_large"
            fuzzer = await WsClient.connect(url)
        else:
            assert fuzzer.closed_code is None, (frame[:200], fuzzer.closed_code)
        lines = [(0, encode_line(Line(time.time(), f"n{published + i}"))) for i in range(5)]
        publisher.publish([StreamBatch(steady_stream, lines)])
        published += 5

    for f in fuzzer.of_type("error"):
        assert f["code"] in ("bad_request", "forbidden", "too_large", "unavailable", "not_found"), f
    want = [f"n{i}" for i in range(published)]
    await steady.wait_for(lambda: len(steady.texts(steady_stream)) >= published, what="every steady line")
    assert steady.texts(steady_stream) == want
    assert steady.closed_code is None and not steady.of_type("dropped")
    await fuzzer.close()
    await steady.close()


big_frames = st.builds(lambda n: json.dumps({"op": "ping", "pad": "x" * n}), st.integers(MAX_FRAME, MAX_FRAME * 3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(sent=['{"op":"ping"}', json.dumps({"op": "ping", "pad": "x" * (MAX_FRAME + 1)}), b"\xff\xfe", "{}"])
@given(
    sent=st.lists(frames | commands.map(json.dumps), min_size=10, max_size=40)
    | st.lists(big_frames | frames, max_size=4)
)
def test_fuzzed_frames_are_all_answered_and_a_well_behaved_client_misses_nothing(
    fuzz_gateway: GatewayProc, redis_server: RedisServer, sent: list[str | bytes]
) -> None:
    rclient = redis.Redis.from_url(redis_server.url)
    try:
        asyncio.run(_fuzz(fuzz_gateway, rclient, sent))
    finally:
        rclient.close()
    assert fuzz_gateway.proc is not None and fuzz_gateway.proc.poll() is None, "the gateway process died"
