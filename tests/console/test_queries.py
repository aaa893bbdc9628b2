"""The console's queries in Debian's chromium against a real gateway and Redis: the filter
box's syntax (terms, -excluded, field:value) applied on the server and shown parsed, and
a link to one line that opens on it with its context, highlighted, then follows live."""

from __future__ import annotations

import redis
from playwright.sync_api import Page

from tests.browser import (
    download_lines,
    line_texts,
    numbered,
    open_console,
    publish_numbered,
    publish_texts,
    wait_last_line,
)
from tests.support import metric
from wire import Keys, Publisher


def start(start_gateway):  # Salt off: no console test here opens a minion
    return start_gateway(TAILGATE_SALT_MODE="off")


def test_the_filter_box_takes_terms_exclusions_and_fields(page: Page, pub: Publisher, start_gateway) -> None:
    gw = start(start_gateway)
    texts = ["GET /api error", "GET /healthz error", "POST /api error", "GET /api ok"]
    metas = [{"level": "warn"}, {"level": "warn"}, {"level": "error"}, {"level": "warn"}]
    publish_texts(pub, "kafka:box", texts, meta=metas)
    open_console(page, gw, "#s=kafka:box")
    wait_last_line(page, "GET /api ok")
    page.fill("#filter", "error -healthz level:warn")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('.pane .row.line').length === 1")
    assert line_texts(page) == ["GET /api error"]
    assert page.inner_text("#filter-note") == 'server filter: "error" · not "healthz" · level = "warn"'
    marks = page.evaluate("() => [...document.querySelectorAll('.pane .row.line mark')].map((m) => m.textContent)")
    assert marks == ["error"], "keyword terms are highlighted; exclusions and fields are not"
    publish_texts(pub, "kafka:box", ["PUT /api error", "PUT /healthz error"], meta=[{"level": "WARN"}, None])
    page.click("#case")
    page.wait_for_function("() => document.querySelectorAll('.pane .row.line').length === 2")
    assert line_texts(page) == ["GET /api error", "PUT /api error"], "ignore case reaches the field too"
    page.wait_for_function("() => location.hash === '#s=kafka:box&q=error+-healthz+level:warn&i=1'")


def test_a_line_link_opens_on_the_line_with_its_context_then_follows_live(
    page: Page, pub: Publisher, rclient: redis.Redis, prefix: str, start_gateway
) -> None:
    gw = start(start_gateway)
    s = "kafka:linked"
    publish_numbered(pub, s, 1, 200)
    ids = [entry_id.decode() for entry_id, _ in rclient.xrange(Keys(prefix).hist(s))]

    open_console(page, gw, f"#s={s}")
    wait_last_line(page, numbered(200))
    page.locator(".pane .row.line").last.click()
    page.click(".details [data-detail=link]")
    page.wait_for_selector("#toast >> text=copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f"{gw.base}/#s={s}&at={ids[199]}&ctx=20", "the link names the stream and the line"

    page.goto("about:blank")
    page.goto(f"{gw.base}/#s={s}&at={ids[99]}&ctx=5")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_selector(".row.line.target >> text=line 000100")
    assert page.is_visible("#link-banner") and "Line" in page.inner_text("#link-text")
    page.wait_for_function("() => document.querySelector('.chip')?.textContent.includes('linked')")
    assert download_lines(page) == [numbered(i) for i in range(95, 106)], "the line and 5 lines either side"
    box = page.locator(".row.line.target").bounding_box()
    pane = page.locator(".pane .scroller").bounding_box()
    assert box and pane and pane["y"] < box["y"] < pane["y"] + pane["height"], "the line is on screen"
    publish_numbered(pub, s, 201, 201)
    # the link's query has ended: the page holds no live subscription (its lines come on Follow live)
    assert metric(gw, "tailgate_gateway_subscriptions", f'stream="{s}"') == 0
    assert numbered(201) not in line_texts(page)

    page.click("#link-follow")
    page.wait_for_function("() => document.getElementById('link-banner').hidden")
    publish_numbered(pub, s, 202, 203)
    wait_last_line(page, numbered(203))  # following the tail now
    assert download_lines(page) == [numbered(i) for i in range(95, 204)], "no hole and no repeat after the line"
    assert "at=" not in page.evaluate("() => location.hash")

    page.goto("about:blank")
    page.goto(f"{gw.base}/#s={s}&at={ids[197]}&ctx=1&live=1")  # follow at once
    page.wait_for_selector(".row.line.target >> text=line 000198")
    publish_numbered(pub, s, 204, 204)
    page.click(".jump")  # back to the tail: the view kept its place on the linked line
    wait_last_line(page, numbered(204))
    assert download_lines(page) == [numbered(i) for i in range(197, 205)]
