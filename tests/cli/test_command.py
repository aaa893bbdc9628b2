"""The `tailgate` command in a real terminal (tmux), against a real gateway and Redis, lines
fed through the real publish step: merged order and a colour per source, --exclude and
--from, an exact resume after the gateway restarts mid-stream, the exit statuses."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from embedded import free_port, wait_until
from tests.browser import PacedPublisher, numbered, restart_on_same_port
from tests.cli.terminal import Terminal
from tests.support import AUTH_ENV, Service, metric, token
from wire import Keys, Line, Publisher, StreamBatch, encode_line

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def publish(pub: Publisher, stream: str, items: list[tuple[float, str]]) -> None:
    pub.publish([StreamBatch(stream, [(0, encode_line(Line(ts, text))) for ts, text in items])])


def subscribed(gw, stream: str, viewers: int = 1) -> None:
    wait_until(lambda: metric(gw, "tailgate_gateway_subscriptions", f'stream="{stream}"') >= viewers, 10, what=stream)


def test_two_streams_merge_by_time_with_a_colour_each(term: Terminal, pub: Publisher, start_gateway) -> None:
    gw = start_gateway(TAILGATE_SALT_MODE="off")
    base = time.time() - 60
    # history: each stream's lines in id order, their times interleaving with the other's
    publish(pub, "kafka:alpha", [(base + 1, "a1"), (base + 3, "a3"), (base + 5, "a5")])
    publish(pub, "kafka:beta", [(base + 2, "b2"), (base + 4, "b4"), (base + 6, "b6")])
    term.run(f"tailgate --url {gw.base} tail kafka:alpha kafka:beta --backlog 10")
    term.wait_for(lambda text: "b6" in text, what="the merged history")
    subscribed(gw, "kafka:beta")
    now = time.time()
    publish(pub, "kafka:beta", [(now + 0.02, "live b8")])  # published first, but later in time
    publish(pub, "kafka:alpha", [(now + 0.01, "live a7")])
    term.wait_for(lambda text: "live b8" in text and "live a7" in text, what="live lines")
    shown = [ln.split()[-1] for ln in term.lines() if re.search(r"\d\d:\d\d:\d\d\.\d{3} ", ln)]
    assert shown == ["a1", "b2", "a3", "b4", "a5", "b6", "a7", "b8"], "one view, ordered by the lines' times"
    first = next(ln for ln in term.lines() if ln.endswith(" a1"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} alpha +a1", first)
    coloured = term.screen(colours=True)
    alpha = {m.group(1) for m in re.finditer(r"\x1b\[([0-9;]+)malpha", coloured)}
    beta = {m.group(1) for m in re.finditer(r"\x1b\[([0-9;]+)mbeta", coloured)}
    assert len(alpha) == 1 and len(beta) == 1 and alpha != beta, "a colour per source"
    term.interrupt()
    assert term.exit_status() == 130

    term.clear()
    term.run(f"tailgate --url {gw.base} streams")
    assert term.exit_status() == 0
    assert {"kafka:alpha", "kafka:beta"} <= {ln.split()[0] for ln in term.lines() if ln.startswith("kafka:")}

    term.clear()
    term.run(f"tailgate --url {gw.base} tail kafka:alpha kafka:beta --no-follow --no-color")
    assert term.exit_status() == 0
    assert not SGR.search(term.screen(colours=True).replace("\x1b[0m", "")), "--no-color prints no colour"
    term.clear()
    term.run(f"tailgate --url {gw.base} tail kafka:alpha --no-follow | cat")
    assert term.exit_status() == 0
    assert "a5" in term.screen() and "\x1b[3" not in term.screen(colours=True), "no colour into a pipe"


def test_exclude_and_from_a_time(
    term: Terminal, rclient: redis.Redis, prefix: str, pub: Publisher, start_gateway
) -> None:
    gw = start_gateway(TAILGATE_SALT_MODE="off")
    s = "kafka:web"
    publish(pub, s, [(time.time(), f"before {i}") for i in range(3)])
    last = int(rclient.xrevrange(Keys(prefix).hist(s), count=1)[0][0].split(b"-")[0])
    wait_until(lambda: sum(x * m for x, m in zip(rclient.time(), (1000, 0.001), strict=True)) > last + 1, 2)
    since = datetime.fromtimestamp((last + 1) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    texts = ["GET /a 200", "GET /healthz 200", "GET /b 500", "GET /healthz 200", "GET /c 200"]
    publish(pub, s, [(time.time(), t) for t in texts])
    term.run(f"tailgate --url {gw.base} tail {s} --from {since} --exclude healthz -o raw --no-follow")
    assert term.exit_status() == 0
    body = [ln for ln in term.lines() if ln.startswith("GET") or ln.startswith("before")]
    assert body == ["GET /a 200", "GET /b 500", "GET /c 200"]
    term.clear()
    term.run(f"tailgate --url {gw.base} tail {s} --from 1h --grep GET --grep 200 --exclude healthz -o raw --no-follow")
    assert term.exit_status() == 0
    assert [ln for ln in term.lines() if ln.startswith("GET")] == ["GET /a 200", "GET /c 200"]


def test_resume_after_the_gateway_restarts_mid_stream_is_exact(
    term: Terminal, pub: Publisher, start_gateway, services: list[Service], tmp_path: Path
) -> None:
    gw = start_gateway(TAILGATE_SALT_MODE="off")
    s = "kafka:steady"
    term.run(f"tailgate --url {gw.base} tail {s} -o raw --backlog 0")
    subscribed(gw, s)
    feeder = PacedPublisher(pub, s, rate=200)
    feeder.start()
    try:
        term.wait_for(lambda text: numbered(300) in text, what="lines before the restart")
        gw.stop()  # SIGTERM: the gateway drains, closing the command's connection with 1001
        time.sleep(0.5)  # lines published while no gateway runs
        restart_on_same_port(gw, services, tmp_path)
        term.wait_for(lambda text: "connected again" in text, what="the reconnect")
        target = numbered(feeder.sent + 200)
        term.wait_for(lambda text: target in text, 30, what="lines after the restart")
    finally:
        total = feeder.stop()
    term.wait_for(lambda text: numbered(total) in text, 30, what="the last line")
    term.interrupt()
    assert term.exit_status() == 130
    lines = term.lines()
    printed = [ln for ln in lines if ln.startswith("line ")]
    assert printed == [numbered(i) for i in range(1, total + 1)], "every line once, in order, across the restart"
    notes = [ln for ln in lines if ln.startswith("tailgate: ")]
    assert any("reconnecting" in n for n in notes) and any("connected again" in n for n in notes), notes


def test_exit_statuses_say_what_went_wrong(term: Terminal, start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV)
    cases = [
        (f"tailgate --url http://127.0.0.1:{free_port()} tail kafka:x", 3, "cannot reach the gateway"),
        (f"tailgate --url {gw.base} tail kafka:a1", 4, "refused the token (HTTP 401)"),
        (f"tailgate --url {gw.base} --token {token(('kafka:a*',))} tail kafka:b1", 5, "forbidden (kafka:b1)"),
        (f"TAILGATE_TOKEN={token(('kafka:a*',))} tailgate --url {gw.base} tail 'kafka:a b'", 2, "topic must match"),
        (f"tailgate --url {gw.base} tail kafka:a1 --from yesterday", 2, "give a duration"),
        (f"tailgate --url {gw.base} streams", 4, "HTTP 401"),
        (f"tailgate --url {gw.base} tail kafka:a1 --no-follow --token {token(('kafka:a*',))}", 0, ""),
        (f"tailgate --url {gw.base} --token {token(('kafka:a*',), ttl=-60)} streams", 4, "token expired"),
    ]
    for command, status, words in cases:
        term.clear()
        term.run(command)
        assert term.exit_status() == status, (command, term.screen()[-800:])
        assert words in term.screen(), (command, term.screen()[-800:])
    # the config file names the gateway and the token
    config = Path(term.env["XDG_CONFIG_HOME"]) / "tailgate" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{gw.base}"\ntoken = "{token(("kafka:*",))}"\n')
    term.clear()
    term.run("tailgate tail kafka:b1 --no-follow")
    assert term.exit_status() == 0
