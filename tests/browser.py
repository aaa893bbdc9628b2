"""Browser fixtures and helpers for the console tests: Debian's chromium driven by Playwright.

One browser per test module (`running_browser`); each test gets a fresh context and page
(`fresh_page`), which fails the test on any uncaught error in the page. Helpers read the page
the way a user sees it (rows on screen, the file the Download button saves) and feed
lines through the real publish step (`wire.Publisher`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support import GatewayProc, Service
from wire import Keys, Line, Publisher, StreamBatch, encode_line

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Containers often give /dev/shm only 64 MB; chromium then crashes on busy pages.
    "--disable-dev-shm-usage",
]

# Main-thread stalls as the page sees them, recorded from the start: long tasks (script
# over 50 ms) and long animation frames (a frame's script, style, layout and paint together).
LONGTASK_PROBE = """
window.__longtasks = [];
for (const type of ['longtask', 'long-animation-frame']) {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longtasks.push(Math.round(e.duration));
  }).observe({ type, buffered: true });
}
"""

# A 250 ms busy loop in a page task: proves the probe sees stalls before a test trusts it.
STALL = "() => setTimeout(() => { const t = performance.now(); while (performance.now() - t < 250) {} }, 0)"


def launch(playwright: Playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/setup.sh --test (installs Debian's chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def running_browser() -> Iterator[Browser]:
    """One headless chromium, for a test module's `browser` fixture (module scope, not
    session: Playwright's sync API keeps its own asyncio loop running while it is open,
    and the suite's async tests cannot start theirs until it is closed)."""
    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


def fresh_page(browser: Browser) -> Iterator[Page]:
    """A page in a new context, for a test's `page` fixture; any uncaught error in the
    page fails the test."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 820},
        accept_downloads=True,
        permissions=["clipboard-read", "clipboard-write"],
    )
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    if errors:
        pytest.fail(f"uncaught errors in the page: {errors}")


def open_console(page: Page, gw: GatewayProc, hash_: str) -> None:
    """Open the console on a share-link hash; return once every source is subscribed."""
    page.goto(f"{gw.base}/{hash_}")
    page.wait_for_selector("#conn[data-state=open]", timeout=15000)
    page.wait_for_function("() => [...document.querySelectorAll('.chip')].every((c) => c.dataset.kind === 'ok')")


def restart_on_same_port(gw: GatewayProc, services: list[Service], log_dir: Path) -> GatewayProc:
    """A new gateway process, set up like a stopped one, on its port (what a page reconnects to)."""
    again = GatewayProc(dict(gw.env), log_dir=log_dir)
    again.port = gw.port
    again.env["TAILGATE_GATEWAY_PORT"] = str(gw.port)
    services.append(again)
    return again.start()


def line_texts(page: Page) -> list[str]:
    """Texts of the log lines drawn in the page (the rows on screen plus a few either side)."""
    return page.evaluate("() => [...document.querySelectorAll('.pane .row.line .txt')].map((e) => e.textContent)")


def wait_last_line(page: Page, text: str, timeout: float = 15.0) -> None:
    """Wait until the last line drawn is `text` (the view follows the tail)."""
    page.wait_for_function(
        """(t) => { const rows = document.querySelectorAll('.pane .row.line .txt');
                    return rows.length > 0 && rows[rows.length - 1].textContent === t; }""",
        arg=text,
        timeout=timeout * 1000,
    )


def wait_numbered_at_least(page: Page, n: int, timeout: float = 15.0) -> None:
    """Wait until the last line drawn is a numbered line at or past `n`."""
    page.wait_for_function(
        """(n) => { const rows = document.querySelectorAll('.pane .row.line .txt');
                    const m = rows.length ? /^line (\\d+)$/.exec(rows[rows.length - 1].textContent) : null;
                    return m !== null && Number(m[1]) >= n; }""",
        arg=n,
        timeout=timeout * 1000,
    )


def download(page: Page, button: str = "#download") -> tuple[list[str], list[str]]:
    """Click a Download button; return the saved file's log lines (without their leading
    timestamp) and its inline notices (the rows starting with '#')."""
    rows = download_rows(page, button)
    lines = [row.split(" ", 1)[1] for row in rows if row and not row.startswith("#")]
    return lines, [row for row in rows if row.startswith("#")]


def download_rows(page: Page, button: str = "#download") -> list[str]:
    """Click a Download button; return the saved file's rows as they are."""
    with page.expect_download() as info:
        page.click(button)
    return Path(info.value.path()).read_text(encoding="utf-8").splitlines()


def whole_view_after_a_reconnect(page: Page, total: int) -> list[str]:
    """Once the last line drawn is line `total`, the downloaded view (its rows, notices
    included), which must hold lines 1..`total` once each, in order, and say the
    connection was lost on the way."""
    wait_last_line(page, numbered(total), timeout=20)
    rows = download_rows(page)
    lines = [row.split(" ", 1)[1] for row in rows if not row.startswith("#")]
    assert lines == [numbered(i) for i in range(1, total + 1)]
    assert any("connection lost" in r for r in rows), rows[:3]
    return rows


def numbers_around(rows: list[str], marker: str) -> list[tuple[int | None, int | None]]:
    """For each notice row containing `marker`: the numbered lines just before and after it."""

    def number(row: str) -> int | None:
        parts = row.split(" ")
        return int(parts[2]) if not row.startswith("#") and len(parts) > 2 and parts[1] == "line" else None

    out = []
    for i, row in enumerate(rows):
        if row.startswith("#") and marker in row:
            before = next((number(r) for r in reversed(rows[:i]) if not r.startswith("#")), None)
            after = next((number(r) for r in rows[i + 1 :] if not r.startswith("#")), None)
            out.append((before, after))
    return out


def download_lines(page: Page, button: str = "#download") -> list[str]:
    return download(page, button)[0]


def numbered(i: int) -> str:
    return f"line {i:06d}"


def publish_numbered(pub: Publisher, stream: str, first: int, last: int, per_batch: int = 50) -> None:
    """Publish `line <first>` .. `line <last>` through the atomic publish step."""
    for start in range(first, last + 1, per_batch):
        end = min(last, start + per_batch - 1)
        now = time.time()
        pub.publish([StreamBatch(stream, [(0, encode_line(Line(now, numbered(i)))) for i in range(start, end + 1)])])


def publish_texts(
    pub: Publisher,
    stream: str,
    texts: list[str],
    meta: list[dict[str, Any] | None] | None = None,
    ts: float | None = None,
) -> None:
    now = time.time() if ts is None else ts
    lines = [(0, encode_line(Line(now, t, (meta[i] if meta else None)))) for i, t in enumerate(texts)]
    pub.publish([StreamBatch(stream, lines)])


class PacedPublisher(threading.Thread):
    """Publishes numbered lines at a steady rate from a thread until `stop()`.

    Batches go out every `tick` seconds, sized so that the average rate holds even when
    the machine is busy (it catches up on the schedule rather than drifting).
    """

    def __init__(self, pub: Publisher, stream: str, rate: float, tick: float = 0.01, limit: int | None = None) -> None:
        super().__init__(daemon=True)
        self.pub = pub
        self.stream = stream
        self.rate = rate
        self.tick = tick
        self.limit = limit
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        try:
            while not self._halt.is_set():
                due = int((time.monotonic() - started) * self.rate)
                if self.limit is not None:
                    due = min(due, self.limit)
                if due > self.sent:
                    publish_numbered(self.pub, self.stream, self.sent + 1, due, per_batch=500)
                    self.sent = due
                if self.limit is not None and self.sent >= self.limit:
                    return
                self._halt.wait(self.tick)
        # Any failure in this thread is handed to the test, which re-raises it in stop().
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def stop(self) -> int:
        self._halt.set()
        self.join(10)
        if self.error is not None:
            raise self.error
        return self.sent


# Fixtures for the browser tests (registered for the suite by tests/conftest.py).


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from running_browser()


@pytest.fixture
def page(browser: Browser, services: list[Service]) -> Iterator[Page]:
    # Asking for `services` first makes the page close before the test's gateway stops.
    yield from fresh_page(browser)


@pytest.fixture
def pub(rclient: redis.Redis, prefix: str) -> Publisher:
    return Publisher(rclient, Keys(prefix))
