"""The command's pieces without a process: the time merge, --from/--until values, where
the gateway and token come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailgate.config import Target, resolve
from tailgate.errors import CliError, Exit
from tailgate.merge import HISTORY_WAIT, Merger
from tailgate.timespec import start_fields, when

pytestmark = pytest.mark.unit


def line(ts: float, text: str) -> dict[str, object]:
    return {"id": f"{int(ts * 1000)}-0", "ts": ts, "text": text}


def merger() -> tuple[Merger, list[str]]:
    out: list[str] = []
    return Merger(lambda stream, ln: out.append(f"{stream}:{ln['text']}"), window=0.3), out


def test_history_waits_for_every_stream_then_comes_out_by_time() -> None:
    m, out = merger()
    m.expect("a", now=0)
    m.expect("b", now=0)
    m.add("a", [line(1, "a1"), line(3, "a3")], now=0)
    m.live("a")
    m.flush(now=0.1)
    assert out == [], "b may still send older history"
    m.add("b", [line(2, "b2")], now=0.2)
    m.flush(now=0.2)
    assert out == ["a:a1", "b:b2"], "a3 waits: b may have more history"
    m.live("b")
    m.flush(now=0.25)
    assert out == ["a:a1", "b:b2"], "b is live, but a3 arrived less than the window ago"
    m.flush(now=0.31)
    assert out == ["a:a1", "b:b2", "a:a3"]


def test_a_finished_stream_holds_nothing_back_and_one_stream_never_waits() -> None:
    m, out = merger()
    m.expect("a", now=0)
    m.expect("b", now=0)
    m.add("a", [line(5, "a5")], now=0)
    m.done("b")
    m.flush(now=0)
    assert out == ["a:a5"]
    assert not m.finished
    m.done("a")
    assert m.finished
    alone, seen = merger()
    alone.expect("x", now=0)
    alone.add("x", [line(1, "x1")], now=0)
    alone.flush(now=0)
    assert seen == ["x:x1"]


def test_a_stream_that_never_catches_up_stops_holding_back_after_a_while() -> None:
    m, out = merger()
    m.expect("a", now=0)
    m.expect("stuck", now=0)
    m.add("a", [line(1, "a1")], now=0)
    m.live("a")
    m.flush(now=HISTORY_WAIT - 1)
    assert out == []
    m.flush(now=HISTORY_WAIT + 1)
    assert out == ["a:a1"]


def test_times_and_ids_for_from_and_until() -> None:
    now = 1_000_000.0
    assert when("--from", "10m", now) == now - 600
    assert when("--from", "1h30m", now) == now - 5400
    assert when("--from", "2d", now) == now - 2 * 86400
    assert when("--until", "now", now) == now
    assert when("--from", "1764496800", now) == 1764496800.0
    assert when("--from", "2026-11-30T10:00:00Z", now) == "2026-11-30T10:00:00Z"
    assert start_fields("1764496800000-3", now) == {"since": "1764496800000-3"}
    assert start_fields("5m", now) == {"from": now - 300}
    for bad in ("yesterday", "10x", "", "m"):
        with pytest.raises(CliError) as exc:
            when("--from", bad, now)
        assert exc.value.status == Exit.USAGE


def test_flags_then_environment_then_config_file(tmp_path: Path) -> None:
    config = tmp_path / "tailgate" / "config.toml"
    config.parent.mkdir()
    (tmp_path / "tok").write_text("from-file\n")
    config.write_text(f'url = "https://lb.example.com/tailgate"\ntoken_file = "{tmp_path / "tok"}"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve(None, None, None, env) == Target("https://lb.example.com/tailgate/", "from-file")
    assert resolve(None, None, None, env).ws_url == "wss://lb.example.com/tailgate/ws"
    env |= {"TAILGATE_URL": "http://gw:8080", "TAILGATE_TOKEN": "from-env"}
    assert resolve(None, None, None, env) == Target("http://gw:8080/", "from-env")
    assert resolve("http://flag:1/", "from-flag", None, env) == Target("http://flag:1/", "from-flag")
    assert resolve(None, None, None, {"HOME": str(tmp_path / "nobody")}) == Target("http://127.0.0.1:8080/", None)
    config.write_text('url = "http://x/"\npassword = "oops"\n')
    with pytest.raises(CliError, match="unknown keys"):
        resolve(None, None, None, {"XDG_CONFIG_HOME": str(tmp_path)})
    with pytest.raises(CliError, match="not found"):
        resolve(None, None, str(tmp_path / "missing.toml"), {})
    with pytest.raises(CliError, match="http"):
        resolve("ftp://x", None, None, {"HOME": str(tmp_path / "nobody")})
