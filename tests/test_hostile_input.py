"""Hostile Kafka values through the real broker, bridge, Redis and gateway (issue 12:
defects 1 and 3, and their class: text is canonical once it is past wire/).

One broker, bridge and gateway serve the whole module, as a deployment would: each test
watches a `hostile` topic beside an unrelated `calm` one on the same gateway, and asserts
what a user would notice: the calm viewer keeps receiving, `/readyz` stays 200 on both
services, a backlog or `since` subscribe over the hostile lines works, and every frame
any client receives is strict JSON (no NaN or Infinity token, no lone surrogate), which
is what a browser's JSON.parse and UTF-8 need. The bridge's decoder, in process, at the end.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from bridge.decode import Decoder
from embedded import KafkaBroker, RedisServer, free_port, wait_until
from tests.support import GatewayProc, Service, Viewer, create_topic, http_get, service_env
from wire.text import MAX_DEPTH


@dataclass
class Stack:
    """The module's broker, bridge and gateway, and the two topics they carry."""

    kafka: KafkaBroker
    hostile: str
    calm: str
    gateway: GatewayProc
    bridge: Service
    bridge_port: int
    producer: KafkaProducer
    viewers: list[Viewer] = field(default_factory=list)

    def produce(self, topic: str, values: list[bytes]) -> None:
        for value in values:
            self.producer.send(topic, value=value)
        self.producer.flush()

    def view(self, stream: str, **fields: Any) -> Viewer:
        viewer = Viewer(self.gateway.ws_url, stream, **fields)
        self.viewers.append(viewer)
        return viewer

    def ready(self) -> bool:
        bridge = http_get(f"http://127.0.0.1:{self.bridge_port}/readyz")[0]
        return http_get(self.gateway.base + "/readyz")[0] == 200 and bridge == 200


@pytest.fixture(scope="module")
def stack(kafka: KafkaBroker, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    uid = uuid.uuid4().hex[:6]
    hostile, calm = f"hostile-{uid}", f"calm-{uid}"
    create_topic(kafka.bootstrap, hostile)
    create_topic(kafka.bootstrap, calm)
    logs = tmp_path_factory.mktemp("hostile")
    config = logs / "tailgate.yaml"
    config.write_text("bridge: {}\n")  # the defaults, not the repository's conf/tailgate.yaml
    env = service_env(
        TAILGATE_CONFIG=str(config),
        TAILGATE_REDIS_URL=redis_server.url,
        TAILGATE_REDIS_PREFIX=f"t{uid}:",
        TAILGATE_KAFKA_BOOTSTRAP=kafka.bootstrap,
        TAILGATE_BRIDGE_GROUP_ID=f"g{uid}",
        TAILGATE_BRIDGE_TOPICS=f"{hostile},{calm}",
    )
    port = free_port()
    bridge = Service("bridge", env, args=["--static", "--metrics-port", str(port)], log_dir=logs).start()
    gateway = GatewayProc(env, log_dir=logs)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=2, max_request_size=4 << 20)
    s = Stack(kafka, f"kafka:{hostile}", f"kafka:{calm}", gateway, bridge, port, producer)
    try:
        gateway.start()
        wait_until(s.ready, 30, what="bridge and gateway ready")
        yield s
    finally:
        for viewer in s.viewers:
            viewer.close()
        producer.close()
        gateway.stop()
        bridge.stop()


def _topic(stream: str) -> str:
    return stream.removeprefix("kafka:")


def _calm_still_flows(s: Stack, calm: Viewer) -> None:
    marker = f"calm {uuid.uuid4().hex}"
    s.produce(_topic(s.calm), [marker.encode()])
    wait_until(lambda: marker in calm.texts(), 15, what="the calm stream's viewer to get its next line")


def _assert_nobody_hurt(s: Stack) -> None:
    """Every frame any viewer got is strict JSON, no connection closed, no process raised."""
    for viewer in s.viewers:
        assert viewer.not_strict() == [], f"frames a browser would reject, on {viewer.stream}"
        assert viewer.close_code is None, f"{viewer.stream} closed {viewer.close_code}"
    for svc in (s.bridge, s.gateway):
        assert "Traceback" not in svc.output(), svc.output()[-3000:]


def _catch_up(s: Stack, marker: str) -> list[dict[str, Any]]:
    """The hostile stream's history through a backlog and a `since` subscribe, each
    waited on until it reaches `marker`; both must agree."""
    got = []
    for fields in ({"backlog": 1000}, {"since": "0-0"}):
        viewer = s.view(s.hostile, **fields)
        wait_until(lambda v=viewer: marker in v.texts(), 15, what=f"{fields} over the hostile lines")
        got.append(viewer.lines())
    assert got[0] == got[1]
    return got[0]


# Defect 1: a lone surrogate escape stopped all live delivery -------------------------------


def test_a_lone_surrogate_in_a_kafka_value_stops_nobody(stack: Stack) -> None:
    s = stack
    calm = s.view(s.calm)
    plain = s.view(s.hostile)
    filtered = s.view(s.hostile, regex="lone|after")  # the filtering path parses and re-encodes
    keyword = s.view(s.hostile, keyword="LONE", ignore_case=True)
    tag = uuid.uuid4().hex[:8]
    s.produce(
        _topic(s.hostile),
        [
            b'{"message":"x \\ud800 lone ' + tag.encode() + b'","level":"\\udc00","\\udbff":1}',
            b'{"message":"pair \\ud83d\\ude00 kept, raw \xed\xa0\x80 bytes"}',
            f"after {tag}".encode(),
        ],
    )
    wait_until(lambda: f"after {tag}" in plain.texts(), 15, what="the hostile stream's last line")
    _calm_still_flows(s, calm)
    assert s.ready()

    mine = [line for line in plain.lines() if tag in line["text"] or "pair" in line["text"]]
    assert [(line["text"], line.get("meta")) for line in mine] == [
        (f"x \ufffd lone {tag}", {"level": "\ufffd", "\ufffd": 1}),
        ("pair \U0001f600 kept, raw \ufffd bytes", None),
        (f"after {tag}", None),
    ]
    wait_until(lambda: f"after {tag}" in filtered.texts(), 10, what="the filtered viewer's lines")
    assert [t for t in filtered.texts() if tag in t] == [f"x \ufffd lone {tag}", f"after {tag}"]
    wait_until(lambda: keyword.texts(), 10, what="the keyword viewer's line")
    assert f"x \ufffd lone {tag}" in keyword.texts()

    history = _catch_up(s, f"after {tag}")
    assert [line for line in history if tag in line["text"] or "pair" in line["text"]] == mine
    _calm_still_flows(s, calm)
    _assert_nobody_hurt(s)


# Defect 3: NaN and Infinity reached the browser -------------------------------------------


def test_numbers_json_cannot_hold_reach_viewers_as_strings(stack: Stack) -> None:
    s = stack
    calm = s.view(s.calm)
    plain = s.view(s.hostile)
    filtered = s.view(s.hostile, keyword="numbers")
    tag = uuid.uuid4().hex[:8]
    value = f'{{"message":"numbers {tag}","a":NaN,"b":1e999,"c":-Infinity,"d":[Infinity,1.5],"e":{{"f":-1e999}}}}'
    s.produce(_topic(s.hostile), [value.encode(), b'{"message":NaN,"tag":"' + tag.encode() + b'"}'])
    wait_until(lambda: len([line for line in plain.lines() if tag in json.dumps(line)]) == 2, 15, what="both lines")
    _calm_still_flows(s, calm)
    assert s.ready()

    mine = [line for line in plain.lines() if tag in json.dumps(line)]
    assert [(line["text"], line.get("meta")) for line in mine] == [
        (
            f"numbers {tag}",
            {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": ["Infinity", 1.5], "e": {"f": "-Infinity"}},
        ),
        ("NaN", {"tag": tag}),
    ]
    wait_until(lambda: filtered.lines(), 10, what="the filtered viewer's line")
    assert [line for line in filtered.lines() if tag in line["text"]] == mine[:1]
    history = _catch_up(s, f"numbers {tag}")
    assert [line for line in history if tag in json.dumps(line)] == mine
    _assert_nobody_hurt(s)


# The class: arbitrary values, through the real bridge and gateway ----------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: json.dumps writes them as bare tokens
    | st.text(st.characters() | st.characters(categories=["Cs"]), max_size=20)  # lone surrogates too
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _object(message: Any, extra: dict[str, Any]) -> bytes:
    # ensure_ascii: a lone surrogate becomes the escape a JavaScript or Java app writes
    return json.dumps({"message": message, **extra}, ensure_ascii=True).encode()


kafka_values = st.one_of(
    st.binary(max_size=200),
    st.builds(_object, json_values, st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
    json_values.map(lambda v: json.dumps(v).encode()),
    # a shipper's wrapper around the app's own JSON line, which the decoder opens too
    st.builds(
        lambda inner: _object(json.dumps(inner), {"pod": "p"}),
        st.fixed_dictionaries({"message": json_values}, optional={"x": json_values}),
    ),
    st.sampled_from([b"1e999", b"-1e999", b"NaN", b'"\\udfff"', b"[1e400, -Infinity]", b'{"message": 1e999}']),
    st.builds(
        lambda d, raw: b'{"message":"deep","m":' + b"[" * d + raw + b"]" * d + b"}",
        st.integers(1, 3000),
        st.sampled_from([b"", b"NaN", b'"\\ud800"']),
    ),
    st.integers(60_000, 400_000).map(lambda n: b'{"message":"' + b"h" * n + b'","big":"' + b"\\ud800" * 100 + b'"}'),
    st.integers(60_000, 400_000).map(lambda n: b"x" * n),
)


@pytest.fixture
def watching(stack: Stack) -> dict[str, Any]:
    """The viewers that stay for every example: the calm stream's, and the hostile
    stream's unfiltered and filtered ones."""
    return {
        "calm": stack.view(stack.calm),
        "hostile": [
            stack.view(stack.hostile),
            stack.view(stack.hostile, regex="(?i)[a-z]"),
            stack.view(stack.hostile, keyword="MARK", ignore_case=True),
        ],
        "sent": [],
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(values=st.lists(kafka_values, min_size=1, max_size=4))
def test_no_kafka_value_can_stop_a_viewer_or_reach_one_unfit(
    stack: Stack, watching: dict[str, Any], values: list[bytes]
) -> None:
    s = stack
    marker = f"marker {uuid.uuid4().hex}"
    s.produce(_topic(s.hostile), [*values, marker.encode()])
    calm_line = f"calm {uuid.uuid4().hex}"
    watching["sent"].append(calm_line)
    s.produce(_topic(s.calm), [calm_line.encode()])
    for viewer in watching["hostile"]:
        wait_until(lambda v=viewer: marker in v.texts(), 20, what="the hostile stream's marker")
    calm: Viewer = watching["calm"]
    wait_until(lambda: calm_line in calm.texts(), 20, what="the calm stream's line")
    assert calm.texts() == watching["sent"]  # every line, once, in order
    assert s.ready()
    backlog = s.view(s.hostile, backlog=50)
    wait_until(lambda: marker in backlog.texts(), 15, what="a backlog over the hostile lines")
    backlog.close()
    s.viewers.remove(backlog)
    assert backlog.not_strict() == []
    _assert_nobody_hurt(s)


# The bridge's decoder, in process ------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_the_decoder_keeps_json_nested_too_deep_as_text(fmt: str) -> None:
    decoder = Decoder(fmt, "message", 1000)
    for depth in (MAX_DEPTH + 1, 100_000):  # past the bound, and past what json.loads can parse
        value = b'{"message":"deep","m":' + b"[" * depth + b"]" * depth + b"}"
        errors: Counter[str] = Counter()
        texts, meta = decoder.decode(value, errors)
        assert meta is None and texts[0].startswith('{"message":"deep","m":[[[')
        assert errors["too_deep"] == 1
    errors = Counter()
    shallow = b'{"message":"ok","m":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert decoder.decode(shallow, errors)[0] == ["ok"] and not errors
    inner = json.dumps({"message": "inner", "m": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)})
    texts, meta = decoder.decode(json.dumps({"message": inner, "pod": "p"}).encode(), errors)
    assert texts == [inner] and meta == {"pod": "p"}  # a too-deep inner object stays the text
