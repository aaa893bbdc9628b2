"""Both formulas rendered and applied with `salt-call --local`: each renders from its own
pillar.example as shipped, the tailgate formula's units pass `systemd-analyze verify`
and run unprivileged and sandboxed, and on this machine (no systemd as PID 1) the
fallback service manager starts what the units describe: a bridge and a gateway that
answer /readyz. tailgate.clean stops and removes them.
"""

from __future__ import annotations

import configparser
import json
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from embedded import KafkaBroker, RedisServer, wait_until
from tests.salt.conftest import LocalSalt, service_pillar, shared_dir
from tests.support import ROOT, http_get

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes",
    "Restart": "on-failure",
}


@pytest.mark.parametrize("formula", ["logtail", "tailgate"])
def test_each_formula_renders_from_its_own_pillar_example(local_salt: LocalSalt, formula: str) -> None:
    example = (ROOT / "salt_states" / formula / "pillar.example").read_text()
    assert yaml.safe_load(example) == {formula: None}  # every key commented out, as shipped
    local_salt.set_pillar({formula: example})
    states = local_salt.call("state.show_sls", formula)
    assert isinstance(states, dict) and states, states  # a rendering error comes back as a list of messages
    assert all(state_id.startswith(f"{formula}-") for state_id in states)


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_units_pass_systemd_analyze_verify_unprivileged_and_sandboxed(local_salt: LocalSalt) -> None:
    base = shared_dir("tailgate-units-")
    try:
        pillar = service_pillar(
            base,
            user="daemon",  # an unprivileged account every Debian has (systemd refuses `nobody`)
            group="daemon",
            python="/usr/bin/python3",
            service={"manager": "systemd"},
            bridge={"instances": 2},
            gateway={"replicas": [8081, 8082]},
            settings={"bridge": {"use_group": False}},
            secrets={
                "auth_secret": 'a "quoted" \\ secret of more than thirty-two bytes',
                "redis_password": "s3cr/t",
                "redis_sentinel_password": "sentinel-pw",
            },
        )
        local_salt.set_pillar({"tailgate": yaml.safe_dump({"tailgate": pillar})})
        local_salt.apply("tailgate.service.units")
        units = sorted((base / "units").glob("*.service"))
        assert [u.name for u in units] == [
            "tailgate-bridge-0.service",
            "tailgate-bridge-1.service",
            "tailgate-gateway-8081.service",
            "tailgate-gateway-8082.service",
        ]
        done = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, check=False
        )
        assert (done.returncode, done.stdout + done.stderr) == (0, "")
        for path in units:
            service = unit(path)["Service"]
            assert (service["User"], service["Group"]) == ("daemon", "daemon")
            assert {k: service.get(k) for k in HARDENING} == HARDENING
        assert (
            unit(units[1])["Service"]["ExecStart"]
            == "/usr/bin/python3 -m bridge --metrics-port 9102 --instance 1 --instances 2"
        )
        assert unit(units[3])["Service"]["ExecStart"] == "/usr/bin/python3 -m gateway --port 8082"
        # Secrets only in the environment file, which nobody but root and the group reads.
        secrets = base / "etc" / "secrets.env"
        assert stat.S_IMODE(secrets.stat().st_mode) == 0o640
        assert stat.S_IMODE((base / "etc" / "tailgate.yaml").stat().st_mode) == 0o640
        assert secrets.read_text().splitlines()[1:] == [
            'TAILGATE_AUTH_SECRET="a \\"quoted\\" \\\\ secret of more than thirty-two bytes"',
            'TAILGATE_REDIS_SENTINEL_PASSWORD="sentinel-pw"',
            'TAILGATE_REDIS_URL="redis://:s3cr%2Ft@127.0.0.1:6379/0"',
        ]
        assert "s3cr" not in (base / "etc" / "tailgate.yaml").read_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_apply_without_systemd_runs_a_bridge_and_a_gateway_answering_readyz(
    local_salt: LocalSalt, redis_server: RedisServer, kafka: KafkaBroker
) -> None:
    base = shared_dir("tailgate-apply-")
    port, metrics = 0, 0
    try:
        from embedded import free_port

        port, metrics = free_port(), free_port()
        pillar = service_pillar(
            base,
            gateway={"replicas": [port]},
            bridge={"instances": 1, "metrics_port": metrics},
            settings={
                "redis": {"url": redis_server.url, "prefix": f"t{uuid.uuid4().hex[:8]}:"},
                "kafka": {"bootstrap": kafka.bootstrap},
                "bridge": {"use_group": False, "topics": ["formula-apply"]},
                "salt": {"mode": "off"},
            },
        )
        local_salt.set_pillar({"tailgate": yaml.safe_dump({"tailgate": pillar})})
        result = local_salt.apply("tailgate")
        started = [s["name"] for s in result.values() if s["changes"].get("started")]
        assert sorted(started) == ["tailgate-bridge-0", f"tailgate-gateway-{port}"]
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200  # the state waited for it
        wait_until(lambda: http_get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200, 30, what="bridge ready")
        again = local_salt.apply("tailgate")  # idempotent: nothing restarted, nothing changed
        assert [s["name"] for s in again.values() if s["changes"]] == []
        status = local_salt.call(
            "tailgate.status", f"tailgate-gateway-{port}", "manager=process", f"run_dir={base}/run"
        )
        assert status["running"] is True
        local_salt.apply("tailgate.clean")
        with pytest.raises(OSError):  # nothing listens there any more
            http_get(f"http://127.0.0.1:{port}/readyz")
        assert not (base / "units").exists() or not list((base / "units").iterdir())
        assert not (base / "opt").exists() and not (base / "etc").exists()
    finally:
        if port:
            for name in ("tailgate-bridge-0", f"tailgate-gateway-{port}"):
                local_salt.call("tailgate.stop", name, "manager=process", f"run_dir={base}/run")
        shutil.rmtree(base, ignore_errors=True)


SENTINEL = {"mode": "sentinel", "sentinels": ["10.0.0.4:26379", "10.0.0.5:26379"], "master_name": "tg"}


@pytest.mark.parametrize("mode", ["single", "sentinel"])
def test_the_master_state_writes_the_engine_and_runner_settings_root_only(local_salt: LocalSalt, mode: str) -> None:
    base = shared_dir("tailgate-master-")
    try:
        redis = {"url": "redis://10.0.0.4:6379/1", "prefix": "tg:", **(SENTINEL if mode == "sentinel" else {})}
        pillar = service_pillar(
            base,
            master={"config_file": str(base / "master.d" / "tailgate-engine.conf")},
            settings={"redis": redis},
            secrets={"redis_password": "pw", "redis_sentinel_password": "spw"},
        )
        local_salt.set_pillar({"tailgate": yaml.safe_dump({"tailgate": pillar})})
        local_salt.apply("tailgate.master")
        conf_file = base / "master.d" / "tailgate-engine.conf"
        assert stat.S_IMODE(conf_file.stat().st_mode) == 0o600
        conf = yaml.safe_load(conf_file.read_text())
        engine = conf["engines"][0]["tailgate_events"]
        following = {  # how the engine reaches the master the sentinels name (as the services do)
            "redis_mode": "sentinel",
            "redis_sentinels": SENTINEL["sentinels"],
            "redis_master_name": "tg",
            "redis_sentinel_username": "",
            "redis_sentinel_password": "spw",
        }
        assert engine == {
            "redis_url": "redis://:pw@10.0.0.4:6379/1",
            "key_prefix": "tg:",
            "history_maxlen": 10000,
            "wire_dir": str(base / "master"),
            **(following if mode == "sentinel" else {}),
        }
        assert (base / "master" / "wire" / "publish.py").read_bytes() == (ROOT / "wire" / "publish.py").read_bytes()
        assert json.dumps(conf["tailgate"]["runner_streams"]) == '["kafka:*", "salt:*", "file:*"]'
        # on Redis Cluster the engine is told the mode and the seeds
        nodes = ["10.0.0.4:7000", "10.0.0.5:7000"]
        pillar["settings"]["redis"].update(mode="cluster", cluster_nodes=nodes)
        local_salt.set_pillar({"tailgate": yaml.safe_dump({"tailgate": pillar})})
        local_salt.apply("tailgate.master")
        engine = yaml.safe_load(conf_file.read_text())["engines"][0]["tailgate_events"]
        assert (engine["redis_mode"], engine["redis_cluster_nodes"]) == ("cluster", nodes)
    finally:
        shutil.rmtree(base, ignore_errors=True)
