"""The demo's Salt side: a local master and minion with the logtail formula applied, and
a log file that keeps growing on that minion, so `make run` can show a file stream.

`start_salt_demo` never raises: when Salt cannot run here (not root, a daemon that does
not come up, a failing state) it logs a clear warning and returns None, and the rest of
the demo runs without file streams.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import threading
import time
from pathlib import Path

from embedded.salt import SaltError, SaltPair, logtail_pillar, salt_available
from embedded.services import fresh_workdir

log = logging.getLogger("tailgate.run.salt")

MINION_ID = "tailgate-demo"
PATHS = ("/", "/api/orders", "/api/users/42", "/static/app.js", "/healthz", "/api/search?q=boots")
LEVELS = ("INFO", "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")


class SaltDemo:
    """The running pair, the growing log file, and the gateway settings that reach them."""

    def __init__(self, pair: SaltPair, log_dir: Path, base: Path) -> None:
        self.pair = pair
        self.log_dir = log_dir
        self.base = base
        self.app_log = log_dir / "app.log"
        self.stop_event = threading.Event()
        self.writer = threading.Thread(target=self._write, name="demo-app-log", daemon=True)

    @property
    def stream(self) -> str:
        return f"file:{MINION_ID}:{self.app_log}"

    def gateway_env(self) -> dict[str, str]:
        return {
            "TAILGATE_SALT_MODE": "local",
            "TAILGATE_SALT_MASTER_CONFIG": self.pair.master_config,
            "TAILGATE_GATEWAY_FILE_ALLOWLIST": f"{self.log_dir}/**,/var/log/**",
        }

    def _write(self) -> None:
        """An application log: a few lines a second, rotated by rename every 2,000 lines."""
        n = 0
        rng = random.Random()
        while not self.stop_event.wait(rng.uniform(0.1, 0.6)):
            n += 1
            level = rng.choice(LEVELS)
            line = (
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level:5} shop[{1000 + n % 7}] "
                f"request {rng.choice(PATHS)} took {rng.randint(2, 900)}ms user={rng.randint(1, 500)}\n"
            )
            with self.app_log.open("a") as fh:
                fh.write(line)
            if n % 2000 == 0:
                self.app_log.replace(self.app_log.with_suffix(".log.1"))

    def stop(self, graceful: bool = True) -> None:
        """Stop the log writer, the tail agents (through Salt, unless not `graceful`: the
        daemons were just killed) and the daemons; remove this run's directory."""
        self.stop_event.set()
        self.writer.join(2)
        if graceful and self.pair.running():
            with contextlib.suppress(SaltError):
                self.pair.call("logtail.stop_all", timeout=10)
        self.pair.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def start_salt_demo(
    root: Path, redis_url: str, key_prefix: str, cluster_nodes: list[str] | None = None
) -> SaltDemo | None:
    """Start the master and minion, apply the formula, start the log writer; None on failure.
    `cluster_nodes`: the Redis Cluster's seeds, when the demo runs on one."""
    why = salt_available()
    if why:
        log.warning("Salt is not started (%s): file streams are off in this demo", why)
        return None
    log_dir = root / "run" / "demo-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = fresh_workdir(root / "run")
    allow = [f"{log_dir}/**", "/var/log/**"]
    pillar = logtail_pillar(redis_url, key_prefix, base / "minion", allow, grace_period=10, cluster_nodes=cluster_nodes)
    pair = SaltPair(pillar, minion_id=MINION_ID, workdir=str(base / "salt"))
    started = time.monotonic()
    try:
        pair.start()
        pair.apply()
    except (SaltError, OSError) as exc:
        log.warning("Salt did not come up (%s); file streams are off in this demo. Logs: %s", exc, pair.dir)
        pair.stop()
        return None
    demo = SaltDemo(pair, log_dir, base)
    demo.writer.start()
    log.info(
        "salt-master and salt-minion %r up, logtail formula applied (%.1fs)", MINION_ID, time.monotonic() - started
    )
    return demo
