"""Every bridge started by these tests runs with each Kafka client backend in turn
(`bridge.client`); a test that names `bridge_client` in its own parametrisation runs with
those only (docs/BRIDGE.md says which, and why)."""

from __future__ import annotations

import pytest

from bridge.kafkaclient import BACKENDS


@pytest.fixture(params=sorted(BACKENDS, reverse=True))
def bridge_client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bridge_env(bridge_env: dict[str, str], bridge_client: str) -> dict[str, str]:
    return dict(bridge_env, TAILGATE_BRIDGE_CLIENT=bridge_client)
