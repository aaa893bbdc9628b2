"""The Salt master's streams in the console (a real browser): the picker lists them under
their own heading, and a failed step of an orchestration is edged in red. Lines are
published as the engine publishes them (wire.Publisher, the engine's own texts and meta).
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page

from tests.browser import open_console, wait_last_line
from tests.salt.test_events import engine
from wire import Line, Publisher, StreamBatch, encode_line


@pytest.fixture
def start_gateway(start_gateway):  # the suite's fixture, with Salt off (no master here)
    return lambda **env: start_gateway(**{"TAILGATE_SALT_MODE": "off", **env})


def publish_events(pub: Publisher, events: list[tuple[str, dict]]) -> None:
    describer = engine.Describer()
    batches: dict[str, StreamBatch] = {}
    for tag, data in events:
        for what, text, meta in describer.describe(tag, data):
            fragment = encode_line(Line(ts=time.time(), text=text, meta=meta))
            batches.setdefault(f"salt:{what}", StreamBatch(f"salt:{what}")).lines.append((0, fragment))
    pub.publish(list(batches.values()))


def test_salt_streams_are_listed_and_a_failed_step_is_red(page: Page, pub: Publisher, start_gateway) -> None:
    gw = start_gateway()
    step = {"type": "function", "tgt": "web1", "name": "tailgate.start", "args": {"arg": ["tailgate-gateway-8081"]}}
    failed = {"fun": "tailgate.start", "retcode": 1, "success": False, "return": "ERROR: not ready within 30s"}
    publish_events(
        pub,
        [
            ("salt/run/9/new", {"fun": "runner.state.orch", "fun_args": ["tailgate.orch.deploy"]}),
            ("salt/run/9/args", step),
            ("salt/job/5/new", {"fun": "tailgate.start", "tgt": "web1", "minions": ["web1"]}),
            ("salt/job/5/ret/web1", failed),
        ],
    )
    open_console(page, gw, "#s=salt:orch")
    wait_last_line(
        page, "✗ step tailgate.start tailgate-gateway-8081 on web1: FAILED (retcode 1): ERROR: not ready within 30s"
    )
    rows = page.locator(".pane .row.line")
    assert rows.count() == 3
    assert "lvl-error" in (rows.nth(2).get_attribute("class") or "")
    assert "lvl-error" not in (rows.nth(0).get_attribute("class") or "")
    page.wait_for_selector("#sources .source[data-stream='salt:jobs']")
    listed = page.evaluate(
        """() => {
          const head = [...document.querySelectorAll('#sources h3')].find((h) => h.textContent === 'Salt master');
          return [...head.nextElementSibling.querySelectorAll('.source')].map((r) => r.dataset.stream);
        }"""
    )
    assert sorted(listed) == ["salt:events", "salt:jobs", "salt:orch"]
