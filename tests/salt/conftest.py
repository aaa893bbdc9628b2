"""Fixtures of the tailgate formula's tests: `salt-call --local` with a pillar of the
test's own, and the formula deployed on the session's minion by its orchestration.

The deployed services run as root here, unlike the units' default account: this
machine's interpreter lives under /root (mode 0700), where no other account can run it.
The units' unprivileged account and hardening are checked on units rendered for
`daemon` (test_formula_apply.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedded import free_port
from embedded.salt import BIN, STATES, SaltError
from tests.conftest import SaltSession
from tests.support import SECRET

MINION = "tailgate-test-minion"


class LocalSalt:
    """`salt-call --local` on the repository's salt_states/, with a pillar written here."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "conf"
        self.pillar_dir = base / "pillar"
        self.conf.mkdir(parents=True, exist_ok=True)
        self.pillar_dir.mkdir(exist_ok=True)
        minion = {
            "id": "tailgate-local",
            "root_dir": str(base / "root"),
            "file_client": "local",
            "file_roots": {"base": [str(STATES)]},
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            "fileserver_followsymlinks": True,
            "enable_fqdns_grains": False,
            "log_file": str(base / "salt-call.log"),
        }
        (self.conf / "minion").write_text(yaml.safe_dump(minion))
        self.synced = False

    def set_pillar(self, docs: dict[str, str]) -> None:
        """Pillar files by name, as text (so pillar.example can go in as shipped)."""
        for name, text in docs.items():
            (self.pillar_dir / f"{name}.sls").write_text(text)
        (self.pillar_dir / "top.sls").write_text(yaml.safe_dump({"base": {"*": sorted(docs)}}))

    def call(self, fun: str, *args: str, timeout: float = 120) -> Any:
        argv = [str(BIN / "salt-call"), "-c", str(self.conf), "--local", "--out=json", "--retcode-passthrough"]
        done = subprocess.run([*argv, fun, *args], capture_output=True, text=True, timeout=timeout, check=False)
        try:
            return json.loads(done.stdout)["local"]
        except (ValueError, KeyError):
            raise SaltError(f"salt-call {fun} {args}: {done.stdout[-1500:]} {done.stderr[-1500:]}") from None

    def apply(self, sls: str) -> dict[str, Any]:
        """Apply `sls` (the custom modules and states synced first, once); raise naming
        each failed state."""
        if not self.synced:
            self.call("saltutil.sync_all")
            self.synced = True
        result = self.call("state.apply", sls)
        failed = {k: v.get("comment") for k, v in result.items()} if isinstance(result, dict) else result
        if not isinstance(result, dict) or not all(v.get("result") for v in result.values()):
            raise SaltError(f"state.apply {sls}: {failed}")
        return result


@pytest.fixture
def local_salt(tmp_path: Path) -> LocalSalt:
    return LocalSalt(tmp_path / "salt-local")


def shared_dir(prefix: str) -> Path:
    """A directory the services' account can reach (pytest's own tmp tree is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def service_pillar(base: Path, **sections: Any) -> dict[str, Any]:
    """Pillar `tailgate` with everything installed under `base`, the fallback service
    manager, this checkout's interpreter (no virtualenv built), sections merged over it."""
    pillar: dict[str, Any] = {
        "user": "root",
        "group": "root",
        "create_user": False,
        "install_dir": str(base / "opt"),
        "python": sys.executable,
        "venv": {"create": False},
        "config_dir": str(base / "etc"),
        "run_dir": str(base / "run"),
        "log_dir": str(base / "log"),
        "service": {"manager": "process", "unit_dir": str(base / "units"), "stop_timeout": 10, "ready_timeout": 20},
        "master": {"wire_dir": str(base / "master"), "pkgs": []},
    }
    for key, value in sections.items():
        pillar[key] = {**pillar[key], **value} if isinstance(pillar.get(key), dict) else value
    return pillar


class Deployment:
    """The tailgate formula on the session's minion: two gateway replicas started by
    `tailgate.orch.deploy`, authentication on, file streams through the session master."""

    def __init__(self, session: SaltSession) -> None:
        self.session = session
        self.pair = session.pair
        self.base = shared_dir("tailgate-deploy-")
        self.ports = [free_port(), free_port()]
        self.run_dir = self.base / "run"
        self.log_dir = self.base / "log"

    def pillar(self, **settings: Any) -> dict[str, Any]:
        return service_pillar(
            self.base,
            gateway={"replicas": self.ports},
            bridge={"instances": 0},
            settings={
                "redis": {"url": self.session.redis_url, "prefix": self.session.prefix},
                "gateway": {"drain_timeout": 2, "file_allowlist": [f"{self.session.logs}/**"], **settings},
                "salt": {"mode": "local", "master_config": self.pair.master_config, "wanted_ttl": 3},
            },
            secrets={"auth_secret": SECRET},
            master={
                "config_file": str(self.pair.conf_dir / "master.d" / "tailgate-engine.conf"),
                "gateway_url": f"http://127.0.0.1:{self.ports[0]}",
            },
            orch={"gateways": [MINION]},
        )

    def orch(self) -> tuple[bool, dict[str, Any], str]:
        """Run `salt-run state.orch tailgate.orch.deploy`: (succeeded, steps by ID, output)."""
        self.pair.call("saltutil.refresh_pillar", timeout=30)
        done = self.pair.run("state.orch", "tailgate.orch.deploy", "--out=json", timeout=300)
        try:
            steps = next(iter(json.loads(done.stdout)["data"].values()))
        except (ValueError, KeyError, StopIteration):
            raise SaltError(f"state.orch: {done.stdout[-2000:]} {done.stderr[-2000:]}") from None
        ok = isinstance(steps, dict) and all(s.get("result") for s in steps.values())
        return ok, steps if isinstance(steps, dict) else {}, done.stdout

    def pid(self, port: int) -> int | None:
        """The replica's pid from its lock file (None when no lock file is there)."""
        with contextlib.suppress(FileNotFoundError):
            text = (self.run_dir / f"tailgate-gateway-{port}.lock").read_text().strip()
            return int(text) if text else None
        return None

    def ws_url(self, port: int) -> str:
        return f"ws://127.0.0.1:{port}/ws"


@pytest.fixture(scope="session")
def deployed(salt_session: SaltSession) -> Iterator[Deployment]:
    deployment = Deployment(salt_session)
    pair = deployment.pair
    pair.set_pillar("tailgate", deployment.pillar())
    try:
        pair.apply("tailgate.master")  # the runner's settings, in the master's master.d/
        ok, _, out = deployment.orch()
        assert ok, f"first deploy failed: {out[-3000:]}"
        yield deployment
    finally:
        with contextlib.suppress(SaltError):
            pair.call("state.apply", "tailgate.service.clean", timeout=120)
        with contextlib.suppress(FileNotFoundError):
            (pair.conf_dir / "master.d" / "tailgate-engine.conf").unlink()
        shutil.rmtree(deployment.base, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
