"""Console benchmark (issue 6): how the web console holds up as line rates climb.

    .venv/bin/python -m bench.console                 # every scenario, about 90 s
    .venv/bin/python -m bench.console --seconds 5     # shorter runs

A real Redis and gateway, Debian's chromium driven by Playwright, lines fed through the
real publish step (wire.Publisher) at a paced rate. Each scenario opens the console on
fresh streams, then measures in the page for the feed's duration: animation frames drawn
(requestAnimationFrame), the longest gap between two frames, long tasks and long animation
frames (PerformanceObserver), and how far the newest line drawn trails the newest line
published (sampled every 0.5 s, in lines and in seconds at the feed rate). The baseline is
the same page with the same sources open and no lines arriving, measured in the same run.
Results go to bench/results/console.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from playwright.sync_api import Page, sync_playwright

from embedded import RedisServer
from tests.browser import LONGTASK_PROBE, PacedPublisher, launch
from tests.support import GatewayProc, service_env
from wire import Keys, Publisher

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "console.json"
FRAMES = (
    "window.__frames = []; (function f(t) { window.__frames.push(t); requestAnimationFrame(f); })(performance.now());"
)
SCENARIOS = [
    # (name, total lines/s, sources, layout)
    ("baseline: 3 sources open, no lines", 0, 3, "merged"),
    ("5,000/s, 1 source", 5000, 1, "merged"),
    ("5,000/s over 3 sources, merged", 5000, 3, "merged"),
    ("5,000/s over 3 sources, side by side", 5000, 3, "panes"),
    ("20,000/s, 1 source", 20000, 1, "merged"),
]


def newest_shown(page: Page) -> int:
    text = page.evaluate(
        """() => { const r = document.querySelectorAll('.pane .row.line .txt');
                   return r.length ? r[r.length - 1].textContent : ''; }"""
    )
    m = re.fullmatch(r"line (\d+)", text or "")
    return int(m.group(1)) if m else 0


def run_scenario(page: Page, base: str, pub: Publisher, rate: int, sources: int, layout: str, seconds: float) -> dict:
    tag = uuid.uuid4().hex[:6]
    streams = [f"kafka:bench-{tag}-{i}" for i in range(sources)]
    page.add_init_script(LONGTASK_PROBE)
    page.goto(f"{base}/#" + "&".join(f"s={s}" for s in streams) + (f"&layout={layout}" if layout != "merged" else ""))
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => [...document.querySelectorAll('.chip')].every((c) => c.dataset.kind === 'ok')")
    page.evaluate("() => { window.__longtasks.length = 0; }")
    page.evaluate(f"() => {{ {FRAMES} }}")
    per = rate / sources if rate else 0
    feeders = [PacedPublisher(pub, s, rate=per, limit=int(per * seconds)) for s in streams] if rate else []
    started = time.monotonic()
    for f in feeders:
        f.start()
    lags: list[int] = []
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        if feeders:
            lags.append(max(0, feeders[0].sent - newest_shown(page)))
    for f in feeders:
        f.join(seconds + 30)
        f.stop()
    elapsed = time.monotonic() - started
    frames = page.evaluate(
        """() => { const f = window.__frames; let gap = 0;
                   for (let i = 1; i < f.length; i++) gap = Math.max(gap, f[i] - f[i - 1]);
                   return { n: f.length, span: (f[f.length - 1] - f[0]) / 1000, maxGap: gap }; }"""
    )
    stalls = page.evaluate("() => window.__longtasks")
    sent = sum(f.sent for f in feeders)
    return {
        "lines_per_s": round(sent / elapsed) if feeders else 0,
        "fps": round(frames["n"] / frames["span"], 1) if frames["span"] else 0,
        "max_frame_gap_ms": round(frames["maxGap"]),
        "stalls_over_50ms": len(stalls),
        "longest_stall_ms": max(stalls, default=0),
        "median_lag_lines": sorted(lags)[len(lags) // 2] if lags else 0,
        "max_lag_s": round(max(lags, default=0) / per, 3) if per else 0,
        "dropped_notice": page.inner_text("#status-dropped"),
    }


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="feed duration per scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(workdir=tmp).start()
        prefix = f"bench{uuid.uuid4().hex[:6]}:"
        gw = GatewayProc(
            service_env(TAILGATE_REDIS_URL=server.url, TAILGATE_REDIS_PREFIX=prefix, TAILGATE_SALT_MODE="off"),
            log_dir=Path(tmp),
        )
        try:
            gw.start()
            client = redis.Redis.from_url(server.url)
            pub = Publisher(client, Keys(prefix))
            results = []
            with sync_playwright() as pw:
                browser = launch(pw)
                for name, rate, sources, layout in SCENARIOS:
                    context = browser.new_context(viewport={"width": 1400, "height": 820})
                    row = {
                        "scenario": name,
                        **run_scenario(context.new_page(), gw.base, pub, rate, sources, layout, args.seconds),
                    }
                    context.close()
                    results.append(row)
                    print(json.dumps(row), flush=True)
                browser.close()
        finally:
            gw.stop()
            server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "seconds": args.seconds, "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
