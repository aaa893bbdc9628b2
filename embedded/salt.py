"""A real salt-master and salt-minion on loopback, for the demo and the tests.

Both run as root from this virtualenv with a temporary config tree (`root_dir`),
non-default publish/return ports, `auto_accept: True`, the repository's salt_states/ as
file_roots (the `logtail` and `tailgate` formulas, the modules under `_modules/` and
`_states/`, and the shared wire/ package through the formulas' links) and a pillar for the
formula written here. The master runs the `tailgate_events` engine (its event bus into
`salt:*` streams of the pillar's Redis and prefix) and finds the `tailgate` runner, both
straight from salt_states/ (`engines_dirs`, `runner_dirs`). `start()` waits until the
minion's key is accepted and it answers `test.ping`; `apply()` syncs the modules and runs
`state.apply logtail`. `add_minion()` starts another salt-minion process with an id, config
directory, root and logtail pillar of its own (a second minion on the same machine).

Production never uses this module: there the formula is served by the real master.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from embedded.services import free_port, port_open, stop_process

ROOT = Path(__file__).resolve().parent.parent
STATES = ROOT / "salt_states"
# The code the tailgate formula ships (links into this checkout): wire/ for the engine.
APP = STATES / "tailgate" / "files" / "app"
BIN = Path(sys.executable).parent
log = logging.getLogger(__name__)


class SaltError(RuntimeError):
    """A Salt command failed or did not answer."""


class SaltPair:
    """One salt-master and one salt-minion started together (`start`), stopped together."""

    def __init__(
        self,
        pillar: dict[str, Any],
        minion_id: str = "tailgate-minion",
        workdir: str | None = None,
        log_level: str = "warning",
    ) -> None:
        self.minion_id = minion_id
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="tailgate-salt-"))
        self.conf_dir = self.dir / "conf"
        self.pillar_dir = self.dir / "pillar"
        self.publish_port = free_port()
        self.ret_port = free_port()
        self.log_level = log_level
        self.pillar = pillar
        self.pillars: dict[str, Any] = {"logtail": pillar}
        self.api_port = free_port()
        self.api_user = "tailgate"
        self.api_password = secrets.token_hex(12)
        self.master: subprocess.Popen[bytes] | None = None
        self.minion: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.extra: dict[str, subprocess.Popen[bytes]] = {}  # more minion ids on this machine (add_minion)
        self.roots: dict[str, str] = {}

    @property
    def api_url(self) -> str:
        """salt-api (rest_cherrypy, plain HTTP on loopback), once `start_api` ran."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def master_config(self) -> str:
        """The master config file, as LocalClient (`salt.mode: local`) wants it."""
        return str(self.conf_dir / "master")

    @property
    def accepted_keys(self) -> Path:
        """The master's directory of accepted minion keys."""
        return self.dir / "root" / "etc" / "salt" / "pki" / "master" / "minions"

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.pillar_dir.mkdir(parents=True, exist_ok=True)
        common = {
            "root_dir": str(self.dir / "root"),
            "user": "root",
            "log_level_logfile": "info",
            "enable_fqdns_grains": False,
            "ipv6": False,
        }
        pillar = self.pillar
        master = dict(
            common,
            interface="127.0.0.1",
            publish_port=self.publish_port,
            ret_port=self.ret_port,
            auto_accept=True,
            file_roots={"base": [str(STATES)]},
            pillar_roots={"base": [str(self.pillar_dir)]},
            fileserver_followsymlinks=True,
            worker_threads=3,
            keep_jobs_seconds=3600,
            log_file=str(self.dir / "master.log"),
            # The master's events as salt:* streams.
            engines_dirs=[str(STATES / "_engines")],
            runner_dirs=[str(STATES / "_runners")],
            engines=[
                {
                    "tailgate_events": {
                        "redis_url": pillar["redis_url"],
                        "key_prefix": pillar["key_prefix"],
                        "wire_dir": str(APP),
                        # on a Redis Cluster, the same mode and seeds as the tail agents
                        **{k: pillar[k] for k in ("redis_mode", "redis_cluster_nodes") if k in pillar},
                    }
                }
            ],
            # salt-api for `salt.mode: api`: rest_cherrypy on loopback, eauth against a
            # text file of users, allowed the logtail functions and one wheel function.
            rest_cherrypy={"host": "127.0.0.1", "port": self.api_port, "disable_ssl": True},
            netapi_enable_clients=["local", "wheel"],
            external_auth={
                "file": {
                    "^filename": str(self.conf_dir / "api-users"),
                    "^filetype": "text",
                    self.api_user: ["logtail.*", {"@wheel": ["key.list_all"]}],
                }
            },
        )
        minion = dict(
            common,
            id=self.minion_id,
            master="127.0.0.1",
            master_port=self.ret_port,
            publish_port=self.publish_port,
            acceptance_wait_time=1,
            random_reauth_delay=0,
            auth_safemode=False,
            grains_cache=True,
            log_file=str(self.dir / "minion.log"),
        )
        users = self.conf_dir / "api-users"
        users.write_text(f"{self.api_user}:{self.api_password}\n")
        users.chmod(0o600)
        (self.conf_dir / "master").write_text(yaml.safe_dump(master))
        (self.conf_dir / "minion").write_text(yaml.safe_dump(minion))
        self.write_pillar(self.pillar)

    def write_pillar(self, pillar: dict[str, Any]) -> None:
        """(Re)write the pillar the minion gets: `logtail` for every minion."""
        self.pillar = pillar
        self.set_pillar("logtail", pillar)

    def set_pillar(self, name: str, data: dict[str, Any]) -> None:
        """(Re)write pillar `name` (`{name: data}`) for every minion, the master's own
        (which orchestrations render with) included."""
        self.pillars[name] = data
        (self.pillar_dir / f"{name}.sls").write_text(yaml.safe_dump({name: data}))
        self._write_top()

    def _write_top(self) -> None:
        # An added minion's own pillar file comes after the shared ones: merged over them.
        top: dict[str, list[str]] = {"*": sorted(self.pillars)}
        top.update({minion: [_own_pillar(minion)] for minion in self.extra})
        (self.pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": top}, sort_keys=False))

    def add_minion(self, minion_id: str, logtail: dict[str, Any], timeout: float = 90.0) -> None:
        """Start a second salt-minion process on this machine, as `minion_id`, with a config
        directory of its own and `logtail` merged over the shared logtail pillar for it
        alone (where its agents keep their config, locks and logs); return once it answers."""
        conf_dir = self.dir / f"conf-{minion_id}"
        conf_dir.mkdir(parents=True, exist_ok=True)
        minion = yaml.safe_load((self.conf_dir / "minion").read_text())
        # a root of its own where the paths of its IPC sockets stay short (AF_UNIX paths end at 108 bytes)
        self.roots[minion_id] = root = tempfile.mkdtemp(prefix="tailgate-minion-")
        minion.update(id=minion_id, root_dir=root, log_file=str(conf_dir / "log"))
        (conf_dir / "minion").write_text(yaml.safe_dump(minion))
        (self.pillar_dir / f"{_own_pillar(minion_id)}.sls").write_text(yaml.safe_dump({"logtail": logtail}))
        self.extra[minion_id] = self._spawn("minion", conf_dir, f"minion-{minion_id}")
        self._write_top()
        self._wait(lambda: self._alive(minion_id) and self.ping(minion_id), timeout, 0.5, f"{minion_id} to answer")

    def remove_minion(self, minion_id: str, forget_key: bool = True) -> None:
        """Stop an added minion and delete its key: the master knows one minion again."""
        stop_process(self.extra.pop(minion_id, None), timeout=10)
        shutil.rmtree(self.roots.pop(minion_id, ""), ignore_errors=True)
        if forget_key:
            self._write_top()
            argv = [str(BIN / "salt-key"), "-c", str(self.conf_dir), "-y", "-d", minion_id]
            subprocess.run(argv, capture_output=True, timeout=60, cwd=str(self.dir), check=False)

    def _spawn(self, name: str, conf_dir: Path | None = None, out_name: str = "") -> subprocess.Popen[bytes]:
        out = open(self.dir / f"{out_name or name}.out", "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(
            [str(BIN / f"salt-{name}"), "-c", str(conf_dir or self.conf_dir), "-l", self.log_level],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(self.dir),
        )

    def start(self, timeout: float = 90.0) -> SaltPair:
        """Start both, and return once the minion's key is accepted and it answers."""
        started = time.monotonic()
        self._write_config()
        self.master = self._spawn("master")
        self._wait(lambda: self._alive("master") and port_open(self.ret_port), timeout, 0.1, "salt-master ports")
        self.minion = self._spawn("minion")
        self._wait(lambda: self._alive("minion") and self.ping(), timeout, 0.5, "salt-minion to answer test.ping")
        log.info("salt master+minion up in %.1fs (%s)", time.monotonic() - started, self.dir)
        return self

    def _wait(self, check: Callable[[], bool], timeout: float, interval: float, what: str) -> None:
        """Like `wait_until`, but a daemon that exited fails at once (SaltError)."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise SaltError(f"timed out after {timeout:.0f}s waiting for {what}; see {self.dir}")
            time.sleep(interval)

    def start_api(self, timeout: float = 60.0) -> SaltPair:
        """Start salt-api (rest_cherrypy) next to the running master."""
        self.api = self._spawn("api")
        self._wait(lambda: self._alive("api") and port_open(self.api_port), timeout, 0.1, "salt-api port")
        return self

    def _alive(self, name: str) -> bool:
        proc = {"master": self.master, "minion": self.minion, "api": self.api}.get(name) or self.extra.get(name)
        if proc is None or proc.poll() is not None:
            raise SaltError(f"salt-{name} exited; see {self.dir / (name + '.out')} and {self.dir / (name + '.log')}")
        return True

    def ping(self, minion: str | None = None) -> bool:
        try:
            return self.call("test.ping", timeout=5, minion=minion) is True
        except SaltError:
            return False

    def call(self, fun: str, *args: str, timeout: float = 30.0, minion: str | None = None) -> Any:
        """Run one function on the minion (or another id, `add_minion`) through the master
        (the `salt` CLI); its return."""
        minion = minion or self.minion_id
        argv = [str(BIN / "salt"), "-c", str(self.conf_dir), "--out=json", "--static", "-t", str(int(timeout))]
        argv += ["-L", minion, fun, *args]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout + 30, cwd=str(self.dir), check=False)
        except subprocess.TimeoutExpired:
            raise SaltError(f"{fun}: the salt command did not return") from None
        try:
            result = json.loads(done.stdout or b"{}")
        except ValueError:
            raise SaltError(f"{fun}: {done.stdout[-500:]!r} {done.stderr[-500:]!r}") from None
        if not isinstance(result, dict) or minion not in result:
            raise SaltError(f"{fun}: no answer from {minion}: {done.stderr[-500:]!r}")
        return result[minion]

    def apply(self, sls: str = "logtail", minion: str | None = None) -> dict[str, Any]:
        """Sync the modules and apply `sls` (the logtail formula); raise if a state fails."""
        self.call("saltutil.sync_all", timeout=60, minion=minion)
        self.call("saltutil.refresh_pillar", timeout=30, minion=minion)
        result = self.call("state.apply", sls, timeout=120, minion=minion)
        if not isinstance(result, dict):
            raise SaltError(f"state.apply {sls}: {result!r}")
        failed = {k: v.get("comment") for k, v in result.items() if not v.get("result")}
        if failed:
            raise SaltError(f"state.apply {sls} failed: {failed}")
        return result

    def run(self, fun: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """`salt-run <fun> <args>` on this master (orchestrations, the tailgate runner)."""
        argv = [str(BIN / "salt-run"), "-c", str(self.conf_dir), "--no-color", fun, *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=str(self.dir), check=False)
        except subprocess.TimeoutExpired:
            raise SaltError(f"salt-run {fun}: no answer within {timeout:.0f}s") from None

    def jobs(self, fun: str) -> list[dict[str, Any]]:
        """Jobs the master issued for function `fun` (from its job cache)."""
        done = self.run("jobs.list_jobs", f"search_function={fun}", "--out=json", timeout=60)
        try:
            jobs = json.loads(done.stdout or "{}")
        except ValueError:
            raise SaltError(f"jobs.list_jobs: {done.stdout[-300:]!r} {done.stderr[-300:]!r}") from None
        return list(jobs.values()) if isinstance(jobs, dict) else []

    def running(self) -> bool:
        """Whether both daemons are still up (a `call` can only be answered then)."""
        return all(p is not None and p.poll() is None for p in (self.master, self.minion))

    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The daemons this pair started and that are still referenced."""
        return [p for p in (self.api, self.minion, self.master) if p is not None]

    def stop(self) -> None:
        for minion_id in list(self.extra):
            self.remove_minion(minion_id, forget_key=False)
        stop_process(self.api, timeout=10)
        stop_process(self.minion, timeout=10)
        stop_process(self.master, timeout=10)
        self.api = self.minion = self.master = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _own_pillar(minion_id: str) -> str:
    """The pillar file holding an added minion's own settings."""
    return "minion_" + minion_id.replace(".", "_").replace("-", "_")


def logtail_pillar(
    redis_url: str,
    key_prefix: str,
    base: Path,
    allowlist: list[str],
    grace_period: float = 30.0,
    python: str | None = None,
    cluster_nodes: list[str] | None = None,
) -> dict[str, Any]:
    """A pillar for the formula with every installed path under `base` (tests, demo);
    with `cluster_nodes`, for a Redis Cluster seeded by them (`redis_url`: credentials only)."""
    cluster = {"redis_mode": "cluster", "redis_cluster_nodes": cluster_nodes} if cluster_nodes else {}
    return {
        **cluster,
        "python": python or sys.executable,
        "pkgs": [],
        "install_dir": str(base / "agent"),
        "config_file": str(base / "etc" / "logtail.json"),
        "run_dir": str(base / "run"),
        "log_dir": str(base / "log"),
        "redis_url": redis_url,
        "key_prefix": key_prefix,
        "allowlist": allowlist,
        "grace_period": grace_period,
        "alive_ttl": 3,
    }


def salt_available() -> str | None:
    """Why a local master and minion cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "salt-master and salt-minion need root here"
    for name in ("salt-master", "salt-minion", "salt"):
        if not (BIN / name).exists():
            return f"{BIN / name} is missing (pip install salt)"
    return None
