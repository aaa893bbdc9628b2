"""The monitoring that ships with the formula (conf/monitoring/): the alert rules pass
`promtool check rules`, and every Tailgate metric the rules and the dashboard use is one
a running gateway or bridge exports on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from embedded import free_port, wait_until
from tests.support import ROOT, http_get

MONITORING = ROOT / "conf" / "monitoring"
METRIC_RE = re.compile(r"\btailgate_[a-z0-9_]+")


def exprs() -> dict[str, list[str]]:
    rules = yaml.safe_load((MONITORING / "tailgate-alerts.yml").read_text())
    dashboard = json.loads((MONITORING / "tailgate-dashboard.json").read_text())
    return {
        "alert rules": [rule["expr"] for group in rules["groups"] for rule in group["rules"]],
        "dashboard": [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]],
    }


def exported(text: str) -> set[str]:
    """The sample names a /metrics page can hold: each family's, with the suffixes its
    type adds (a counter's _total, a histogram's _bucket, _sum and _count)."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.add(family)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(kind, ())
        names.update(family + s for s in suffixes)
    return names


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh --test installs Debian's prometheus package"
    done = subprocess.run([promtool, "check", "rules", str(MONITORING / "tailgate-alerts.yml")], capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"SUCCESS: 10 rules found" in done.stdout


def test_every_metric_the_rules_and_dashboard_use_is_exported(start_gateway, start_bridge) -> None:
    port = free_port()
    gateway = start_gateway()
    start_bridge(TAILGATE_BRIDGE_METRICS_PORT=str(port), TAILGATE_BRIDGE_TOPICS="monitoring-check")
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 30, what="bridge /metrics")
    pages = {
        "gateway": http_get(gateway.base + "/metrics")[1].decode(),
        "bridge": http_get(f"http://127.0.0.1:{port}/metrics")[1].decode(),
    }
    available = exported(pages["gateway"]) | exported(pages["bridge"])
    # a ready replica says so (the not-ready and reader alerts read these)
    assert "\ntailgate_gateway_ready 1.0\n" in pages["gateway"]
    assert "\ntailgate_gateway_reader_connected 1.0\n" in pages["gateway"]
    for where, found in exprs().items():
        used = {name for expr in found for name in METRIC_RE.findall(expr)}
        assert used, where
        assert used <= available, f"{where} use metrics no service exports: {sorted(used - available)}"
    # what the alerts are about, each covered
    rules = " ".join(exprs()["alert rules"])
    for needed in (
        "tailgate_gateway_ready",
        "tailgate_gateway_reader_connected",
        'up{job="tailgate-bridge"}',
        "tailgate_gateway_redis_reconnects_total",
        "tailgate_gateway_lines_dropped_total",
        "tailgate_gateway_slow_clients_closed_total",
        "tailgate_bridge_consumer_lag",
        "tailgate_gateway_publish_to_send_seconds_bucket",
        "tailgate_bridge_unacked_publishes_total",
    ):
        assert needed in rules, needed
