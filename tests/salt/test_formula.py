"""The logtail formula's shape, read from its files: the agent's defaults live in
defaults.yaml only, the agent refuses a config missing a key, and state IDs follow
template-formula's ``<formula>-<sls>-...`` naming."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.salt.test_policy import load_agent
from tests.support import ROOT

pytestmark = pytest.mark.unit  # nothing here starts a process

FORMULA = ROOT / "salt_states" / "logtail"


def defaults() -> dict:
    return yaml.safe_load((FORMULA / "defaults.yaml").read_text())["logtail"]


def test_defaults_yaml_holds_every_agent_setting_and_the_agent_none() -> None:
    fields = dataclasses.fields(load_agent().AgentConfig)
    assert {f.name for f in fields} <= set(defaults())
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields)


def test_the_agent_loads_the_whole_map_and_refuses_a_config_missing_a_key(tmp_path: Path) -> None:
    agent = load_agent()
    path = tmp_path / "logtail.json"
    path.write_text(json.dumps({**defaults(), "grace_period": "7", "max_line_bytes": 300.0}))
    conf = agent.AgentConfig.load(str(path))
    assert conf.allowlist == ["/var/log/**"] and conf.grace_period == 7.0 and conf.max_line_bytes == 300
    whole = defaults()
    del whole["grace_period"], whole["run_dir"]
    path.write_text(json.dumps(whole))
    with pytest.raises(ValueError, match="missing grace_period, run_dir"):
        agent.AgentConfig.load(str(path))
    assert agent.main(["--config", str(path), "--minion-id", "m", "--path", "/var/log/a.log"]) == agent.EXIT_USAGE


def test_the_agent_refuses_a_config_naming_no_redis(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = load_agent()
    path = tmp_path / "logtail.json"
    path.write_text(json.dumps({**defaults(), "redis_mode": "sentinel", "redis_master_name": "tailgate"}))
    assert agent.main(["--config", str(path), "--minion-id", "m", "--path", "/var/log/a.log"]) == agent.EXIT_USAGE
    assert "logtail:redis_mode is sentinel but logtail:redis_sentinels is empty" in caplog.text


def test_config_sls_hands_the_whole_map_over() -> None:
    text = (FORMULA / "config.sls").read_text()
    assert "- dataset: {{ logtail | json }}" in text
    for key in defaults():
        assert f"logtail.{key} |" not in text  # no key picked out and cast one by one


@pytest.mark.parametrize("sls", ["install", "config", "clean"])
def test_state_ids_are_formula_sls_what_function(sls: str) -> None:
    ids = re.findall(r"^([A-Za-z][\w.-]*):\s*$", (FORMULA / f"{sls}.sls").read_text(), re.MULTILINE)
    ids = [i for i in ids if i != "include"]
    assert ids and all(i.startswith(f"logtail-{sls}-") for i in ids), ids


def test_the_formulas_haproxy_config_is_conf_haproxy_cfg_with_the_pillars_addresses() -> None:
    """One balancer config: the formula's template renders conf/haproxy.cfg (the file the
    demo and the fleet tests run), changing only the bind address and the replica lines."""
    import jinja2

    env = jinja2.Environment(extensions=["jinja2.ext.do"], keep_trailing_newline=True)
    template = env.from_string((ROOT / "salt_states/tailgate/files/haproxy.cfg.jinja").read_text())
    pillar = {"haproxy": {"bind": "10.1.2.3:80", "servers": []}, "gateway": {"replicas": [8081, 8082]}}
    rendered = template.render(tailgate=pillar).splitlines()
    shipped = (ROOT / "conf/haproxy.cfg").read_text().splitlines()

    def common(lines: list[str]) -> list[str]:
        return [ln for ln in lines if not re.match(r"\s*(bind [^\s]+$|server gw|# Managed by Salt)", ln)]

    assert common(rendered) == common(shipped)
    assert "    bind 10.1.2.3:80" in rendered
    assert [ln.strip() for ln in rendered if ln.strip().startswith("server gw")] == [
        "server gw1 127.0.0.1:8081 check",
        "server gw2 127.0.0.1:8082 check",
    ]
