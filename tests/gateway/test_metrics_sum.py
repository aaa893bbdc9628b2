"""Summing worker processes' metrics into one exposition (gateway.metrics_sum), on the
gateway's own registry."""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics
from gateway.metrics_sum import MetricsSum
from gateway.workers import worker_count

pytestmark = pytest.mark.unit


def worker(connections: int, queue_max: int, lines: dict[str, int], ready: bool = True) -> str:
    m = GatewayMetrics()
    m.ready.set(int(ready))
    m.connections.set(connections)
    m.queue_bytes_max.set(queue_max)
    for stream, n in lines.items():
        m.sent(stream, n, n * 10, 1)  # one frame each, published at the epoch: the +Inf bucket
    m.lines_in.inc(sum(lines.values()))
    return m.render().decode()


def samples(body: bytes) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_counters_and_gauges_add_up_the_max_gauge_takes_the_largest_and_created_goes() -> None:
    total = samples(MetricsSum().total([worker(3, 100, {"kafka:a": 5}), worker(4, 700, {"kafka:a": 2, "kafka:b": 1})]))
    assert total["tailgate_gateway_connections{}"] == 7
    assert total["tailgate_gateway_queue_bytes_max{}"] == 700
    assert total["tailgate_gateway_lines_sent_total{stream=kafka:a}"] == 7
    assert total["tailgate_gateway_lines_sent_total{stream=kafka:b}"] == 1
    assert total["tailgate_gateway_bytes_sent_total{stream=kafka:a}"] == 70
    assert total["tailgate_gateway_lines_in_total{}"] == 8
    assert not [k for k in total if "_created" in k]


def test_a_retired_worker_leaves_its_counters_not_its_gauges() -> None:
    summed = MetricsSum()
    summed.retire(worker(5, 900, {"kafka:gone": 4}))
    total = samples(summed.total([worker(1, 10, {"kafka:a": 2})]))
    assert total["tailgate_gateway_lines_sent_total{stream=kafka:gone}"] == 4
    assert total["tailgate_gateway_lines_in_total{}"] == 6
    assert total["tailgate_gateway_connections{}"] == 1
    assert total["tailgate_gateway_queue_bytes_max{}"] == 10
    assert total["tailgate_gateway_publish_to_send_seconds_count{}"] == 2  # histograms are kept too
    assert total["tailgate_gateway_publish_to_send_seconds_bucket{le=+Inf}"] == 2


def test_the_process_is_ready_only_when_every_worker_is() -> None:
    both = samples(MetricsSum().total([worker(1, 0, {}), worker(1, 0, {})]))
    one = samples(MetricsSum().total([worker(1, 0, {}), worker(1, 0, {}, ready=False)]))
    assert (both["tailgate_gateway_ready{}"], one["tailgate_gateway_ready{}"]) == (1, 0)


def test_zero_workers_means_one_per_core() -> None:
    assert worker_count(0) == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3
