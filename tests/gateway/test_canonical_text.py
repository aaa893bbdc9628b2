"""The gateway's side of the canonical text rule (issue 12), on a real gateway and Redis.

What clients send: a stream, keyword or regex holding a lone surrogate is refused with
`bad_request`, and the connection goes on. What producers stored before the rule: lines
an older version wrote with a lone surrogate escape or a bare NaN/Infinity token reach
viewers made canonical, live and from history; a line that cannot be read at all reaches
them as a notice under its id; none of it stops the live reader, a connection or an
unrelated viewer, and all of it is counted.
"""

from __future__ import annotations

import re

import redis

from embedded import wait_until
from tests.support import Viewer, http_get
from wire import Keys, Line, Publisher, StreamBatch, encode_line

# What a version before the rule stored (json.dumps, then "backslashreplace"): valid JSON
# to Python, refused by a browser (NaN) or unfit for UTF-8 once decoded (the escape).
OLD_ESCAPE = b'"ts":1.5,"text":"old \\ud800 escape","meta":{"k\\udc00":"v","nan":NaN,"inf":[Infinity,-Infinity]}'
UNREADABLE_META = {"tailgate": "unreadable"}  # the contract's mark of such a notice (PROTOCOL.md)
OLD_DEEP = b'"ts":1.5,"text":"old deep","meta":{"m":' + b"[" * 5000 + b"]" * 5000 + b"}"


def test_a_lone_surrogate_in_a_client_frame_is_a_bad_request_and_nothing_else(start_gateway) -> None:
    gw = start_gateway()
    calm = Viewer(gw.ws_url, "kafka:calm")
    client = Viewer(gw.ws_url, "kafka:fine")
    frames = [  # raw strings: the escape reaches the gateway as six characters, as a client writes it
        r'{"op":"subscribe","stream":"file:m:/var/log/\ud800"}',
        r'{"op":"subscribe","stream":"kafka:app/\udcff"}',
        r'{"op":"subscribe","stream":"kafka:fine","keyword":"x\ud800"}',
        r'{"op":"subscribe","stream":"kafka:fine","regex":"\udfff+"}',
        r'{"op":"unsubscribe","stream":"kafka:\ud800"}',
    ]
    for n, frame in enumerate(frames, 1):
        client.ws.send(frame)
        wait_until(lambda n=n: len(client._typed("error")) == n, 5, what=f"an answer to {frame}")
    errors = client._typed("error")
    assert [e["code"] for e in errors] == ["bad_request"] * len(frames)
    assert all("lone surrogate" in e["message"] for e in errors), errors
    client.ws.send('{"op":"ping"}')
    wait_until(lambda: client._typed("pong"), 5, what="pong: the connection goes on")
    assert client.not_strict() == [] and client.close_code is None
    assert calm.close_code is None and http_get(gw.base + "/readyz")[0] == 200
    assert "Traceback" not in gw.output()
    calm.close()
    client.close()


def _metric(gw_base: str, how: str) -> float:
    text = http_get(gw_base + "/metrics")[1].decode()
    found = re.search(rf'^tailgate_gateway_lines_repaired_total{{how="{how}"}} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_lines_an_old_version_stored_reach_viewers_canonical(start_gateway, rclient: redis.Redis, prefix: str) -> None:
    gw = start_gateway()
    keys = Keys(prefix)
    pub = Publisher(rclient, keys)
    old, calm_stream = "kafka:old", "kafka:calm"
    calm = Viewer(gw.ws_url, calm_stream)
    plain = Viewer(gw.ws_url, old)
    filtered = Viewer(gw.ws_url, old, regex="escape|after")
    # one live message: the escape and NaN make it suspect, so the deep line is read too
    pub.publish([StreamBatch(old, [(0, OLD_ESCAPE), (0, OLD_DEEP), (0, b'"ts":1.5,"text":"not json')])])
    rclient.xadd(keys.hist(old), {"x": "an entry with no line field"})
    pub.publish([StreamBatch(old, [(0, encode_line(Line(2.0, "after")))])])
    wait_until(lambda: "after" in plain.texts(), 10, what="the old stream's last line")
    pub.publish([StreamBatch(calm_stream, [(0, encode_line(Line(2.0, "calm")))])])
    wait_until(lambda: "calm" in calm.texts(), 10, what="the calm viewer's line")

    repaired = {"text": "old \ufffd escape", "meta": {"k\ufffd": "v", "nan": "NaN", "inf": ["Infinity", "-Infinity"]}}
    live = plain.lines()
    assert {k: live[0][k] for k in ("text", "meta")} == repaired
    for line in live[1:3]:  # unreadable: a notice under the line's own id, whatever the filter
        assert line["meta"] == UNREADABLE_META and line["text"].startswith("[tailgate] a line stored here")
    assert "nested too deeply" in live[1]["text"] and "not JSON" in live[2]["text"]
    assert [line["text"] for line in live[3:]] == ["after"]
    wait_until(lambda: "after" in filtered.texts(), 10, what="the filtered viewer's lines")
    assert filtered.lines() == live

    backlog = Viewer(gw.ws_url, old, backlog=100)
    since = Viewer(gw.ws_url, old, since="0-0", keyword="escape")
    wait_until(lambda: "after" in backlog.texts(), 10, what="the backlog")
    wait_until(lambda: len(since.lines()) == 4, 10, what="the since lines")
    history = backlog.lines()
    assert history[:3] == live[:3] and history[4] == live[3]
    assert history[3]["meta"] == UNREADABLE_META and "no line field" in history[3]["text"]
    assert since.lines() == history[:4]  # the notices pass the keyword filter

    for viewer in (calm, plain, filtered, backlog, since):
        assert viewer.not_strict() == [] and viewer.close_code is None
        viewer.close()
    assert http_get(gw.base + "/readyz")[0] == 200
    assert _metric(gw.base, "rewritten") >= 2 and _metric(gw.base, "unreadable") >= 4
    assert "Traceback" not in gw.output()
