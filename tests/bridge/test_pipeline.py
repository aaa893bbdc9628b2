"""The bridge on the real broker and Redis: message shapes, malformed input, routing, metrics."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from embedded import KafkaBroker, free_port, wait_until
from tests.support import create_topic, http_get, produce


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_every_message_shape_and_malformed_input(kafka: KafkaBroker, start_bridge, history, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:6]
    auto, strict = f"shapes-{uid}", f"events-{uid}"
    create_topic(kafka.bootstrap, auto)
    create_topic(kafka.bootstrap, strict)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"bridge:\n  max_line_bytes: 1000\n  routes:\n    - {{topic: {strict}, format: json, text_field: log}}\n"
    )
    port = free_port()
    bridge = start_bridge(
        "--static", "--metrics-port", str(port), TAILGATE_CONFIG=str(config), TAILGATE_BRIDGE_TOPICS=auto
    )
    produce(
        kafka.bootstrap,
        auto,
        [
            b"plain line",
            b"chunk 1\nchunk 2\r\nchunk 3\n",
            json.dumps({"message": "json text", "level": "WARN"}).encode(),
            b"bad \xff utf8",
            b"L" * 1500,
            b"",
            b'{"not": "a log event"}',
        ],
    )
    produce(kafka.bootstrap, auto, [None], keys=[b"gone"])  # type: ignore[list-item]  # a tombstone
    produce(
        kafka.bootstrap,
        strict,
        [
            json.dumps({"log": json.dumps({"log": "inner text", "service": "pay"}), "pod": "p-1"}).encode(),
            b'{"log": "broken',
            b"[1, 2]",
            b'{"message": "no log field"}',
            json.dumps({"log": "last", "n": 1}).encode(),
        ],
    )
    auto_lines = wait_until(lambda: (h := history(f"kafka:{auto}")) and len(h) >= 8 and h, 30, what="auto lines")
    assert [line["text"] for line in auto_lines] == [
        "plain line",
        "chunk 1",
        "chunk 2",
        "chunk 3",
        "json text",
        "bad \ufffd utf8",
        "L" * 1000 + " …[truncated 500 bytes]",
        '{"not": "a log event"}',
    ]
    assert auto_lines[4]["meta"] == {"level": "WARN"}
    assert all("meta" not in line for i, line in enumerate(auto_lines) if i != 4)
    strict_lines = wait_until(lambda: (h := history(f"kafka:{strict}")) and len(h) >= 5 and h, 30, what="json lines")
    assert [(line["text"], line.get("meta")) for line in strict_lines] == [
        ("inner text", {"pod": "p-1", "service": "pay"}),
        ('{"log": "broken', None),
        ("[1, 2]", None),
        ('{"message": "no log field"}', None),
        ("last", {"n": 1}),
    ]

    def scraped() -> str:
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
        return body.decode() if status == 200 else ""

    text = wait_until(
        lambda: (t := scraped()) and metric(t, "tailgate_bridge_decode_errors_total", kind="tombstone") == 1 and t,
        15,
        what="metrics",
    )
    for kind, n in [("empty", 1), ("bad_utf8", 1), ("truncated", 1), ("invalid_json", 1), ("not_object", 1)]:
        assert metric(text, "tailgate_bridge_decode_errors_total", kind=kind) == n, kind
    assert metric(text, "tailgate_bridge_decode_errors_total", kind="missing_field") == 1
    assert metric(text, "tailgate_bridge_messages_in_total", topic=auto) == 8
    assert metric(text, "tailgate_bridge_lines_out_total", stream=f"kafka:{auto}") == len(auto_lines)
    assert metric(text, "tailgate_bridge_bytes_out_total", stream=f"kafka:{strict}") > 0
    assert metric(text, "tailgate_bridge_produce_to_publish_seconds_count") > 0
    assert metric(text, "tailgate_bridge_redis_up") == 1
    assert metric(text, "tailgate_bridge_assigned_partitions") == 2
    lag = wait_until(
        lambda: 'tailgate_bridge_consumer_lag{partition="0",topic="' + auto + '"} 0.0' in scraped(), 10, what="lag"
    )
    assert lag
    assert bridge.proc is not None and bridge.proc.poll() is None, bridge.output()


def test_routing_by_key_and_by_json_field(kafka: KafkaBroker, start_bridge, history, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:6]
    by_key, by_field = f"hosts-{uid}", f"app-{uid}"
    create_topic(kafka.bootstrap, by_key, partitions=2)
    create_topic(kafka.bootstrap, by_field, partitions=2)
    config = tmp_path / "routes.yaml"
    config.write_text(
        "bridge:\n  routes:\n"
        f"    - {{topic: {by_key}, split_by: key, keep_whole: false}}\n"
        f"    - {{pattern: 'app-{uid}', split_by: field, field: service, format: json}}\n"
    )
    start_bridge("--static", TAILGATE_CONFIG=str(config))
    keys: list[bytes | None] = [b"web-1", b"web-2", b"web-1", None, b"bad\x07key", b"web-2"]
    produce(kafka.bootstrap, by_key, [f"k{i}".encode() for i in range(len(keys))], keys=keys)
    events = [
        {"message": "a1", "service": "auth"},
        {"message": "c1", "service": "cart"},
        {"message": "x1"},
        {"message": "a2", "service": "auth"},
        {"message": "bad", "service": "/etc"},
    ]
    produce(
        kafka.bootstrap,
        by_field,
        [json.dumps(e).encode() for e in events],
        keys=[b"same"] * len(events),  # one partition, so their order is known
    )

    def texts(stream: str) -> list[str]:
        return [line["text"] for line in history(stream)]

    wait_until(lambda: len(texts(f"kafka:{by_field}")) == 5, 30, what="whole app stream")
    wait_until(lambda: len(texts(f"kafka:{by_key}/web-2")) == 2, 30, what="web-2 stream")
    assert texts(f"kafka:{by_key}/web-1") == ["k0", "k2"]
    assert texts(f"kafka:{by_key}/web-2") == ["k1", "k5"]
    # no key and a key the contract refuses: kept, in the whole stream
    assert sorted(texts(f"kafka:{by_key}")) == ["k3", "k4"]
    assert texts(f"kafka:{by_field}") == ["a1", "c1", "x1", "a2", "bad"]
    assert texts(f"kafka:{by_field}/auth") == ["a1", "a2"]
    assert texts(f"kafka:{by_field}/cart") == ["c1"]
    assert history(f"kafka:{by_field}/auth")[0]["meta"] == {"service": "auth"}
