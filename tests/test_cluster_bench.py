"""The cluster benchmark's own arithmetic (bench/cluster_bench.py): which node holds a
stream, each node's share, the commandstats totals and the Markdown it prints. Wrong here,
the table would credit a shard with another's publish load."""

from __future__ import annotations

import pytest

from bench.cluster_bench import command_total, markdown, owner, per_line, shares, streams_by_node
from wire import Keys
from wire.slots import key_slot

pytestmark = pytest.mark.unit

SLOTS = [(0, 5460, 7000), (5461, 10922, 7001), (10923, 16383, 7002)]


def test_owner_is_the_node_whose_range_holds_the_slot() -> None:
    assert [owner(s, SLOTS) for s in (0, 5460, 5461, 10922, 10923, 16383)] == [7000, 7000, 7001, 7001, 7002, 7002]
    with pytest.raises(LookupError):
        owner(3, [(5, 10, 7000)])


def test_streams_go_to_the_owner_of_their_hash_tag_slot() -> None:
    keys = Keys("t:", cluster=True)
    streams = [f"kafka:s{i:03d}" for i in range(200)]
    spread = streams_by_node(streams, keys, SLOTS)
    assert sorted(s for mine in spread.values() for s in mine) == streams
    for port, mine in spread.items():
        assert all(owner(key_slot("{" + s + "}"), SLOTS) == port for s in mine)
    assert all(mine for mine in spread.values())  # 200 names spread over all three


def test_a_node_owning_no_stream_is_listed_with_none() -> None:
    assert streams_by_node(["kafka:one"], Keys("t:"), [(0, 16383, 6379)]) == {6379: ["kafka:one"]}
    spread = streams_by_node(["kafka:one"], Keys("t:", cluster=True), SLOTS)
    assert sorted(len(v) for v in spread.values()) == [0, 0, 1]


def test_cpu_per_line_is_in_microseconds_and_empty_when_nothing_was_published() -> None:
    assert per_line(0.2, 20_000) == "10.0 us"
    assert per_line(0.2, 0) == "-"


def test_shares_sum_to_one_and_survive_an_idle_run() -> None:
    assert shares({1: 10.0, 2: 30.0}) == {1: 0.25, 2: 0.75}
    assert shares({1: 0.0, 2: 0.0}) == {1: 0.0, 2: 0.0}


def test_command_totals_add_eval_and_evalsha_and_count_an_absent_command_as_zero() -> None:
    stats = {"cmdstat_eval": {"calls": 5, "usec": 100}, "cmdstat_evalsha": {"calls": 2, "usec": 40}}
    assert command_total(stats, "calls", ("eval", "evalsha")) == 7
    assert command_total(stats, "usec", ("eval", "evalsha")) == 140
    assert command_total(stats, "calls", ("publish", "spublish")) == 0


def test_markdown_has_a_row_per_run_and_per_node() -> None:
    node = {
        "port": 7000,
        "role": "primary",
        "streams": 70,
        "lines_per_s": 7148,
        "share": 0.35,
        "publish_calls_per_s": 1461,
        "publish_script_time": 0.057,
        "redis_cpu": 0.062,
        "history_mib": 2.5,
        "gateway_pubsub_connections": 1,
        "gateway_connections": 34,
    }
    run = {
        "scenario": "many",
        "setup": "cluster, 3 primaries",
        "published_lines_per_s": 20422,
        "publisher_cpu": 0.215,
        "delivered_lines_per_s": 100972,
        "delivered_ratio": 0.9889,
        "dropped": 0,
        "gaps": 0,
        "errors": 1,
        "p50_ms": 191,
        "p99_ms": 611,
        "gateway_cpu": 0.254,
        "redis_cpu_total": 0.124,
        "nodes": [node, {**node, "port": 7001}],
    }
    lines = markdown([run]).splitlines()
    assert (
        "| many | cluster, 3 primaries | 20,422 | 0.21 (10.5 us) | 100,972 (98.9%) | 0 / 0 / 1 | 191 / 611 ms"
        in lines[2]
    )
    assert lines[2].endswith("| 0.25 | 0.06 + 0.06 (0.12; 6.1 us) |")
    assert [row.split(" | ")[2] for row in lines[-2:]] == ["primary :7000", "primary :7001"]
    assert "| 7,148 (35%) | 1,461 | 0.057 | 0.062 | 2.5 MiB | 1 | 34 |" in lines[-1]
