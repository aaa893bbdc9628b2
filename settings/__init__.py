"""Tailgate configuration: one typed place, loaded once per process.

Values come from, lowest to highest precedence: the defaults below, the YAML file
(``TAILGATE_CONFIG``, else ``conf/tailgate.yaml``), then environment variables. Every
scalar setting ``<section>.<name>`` can be set as ``TAILGATE_<SECTION>_<NAME>``; the
contract's names (``TAILGATE_REDIS_URL``, ``TAILGATE_KAFKA_BOOTSTRAP``,
``TAILGATE_GATEWAY_PORT``, ``TAILGATE_BRIDGE_TOPICS``, ``TAILGATE_AUTH_SECRET``,
``TAILGATE_AUTH_PUBLIC_KEY``) follow that rule, and ``TAILGATE_ALLOWED_ORIGINS`` is an
alias of ``TAILGATE_AUTH_ALLOWED_ORIGINS``.
"""

from settings.load import ConfigError, load
from settings.model import (
    AuthSettings,
    BridgeSettings,
    GatewaySettings,
    KafkaSettings,
    RedisSettings,
    RouteSettings,
    SaltSettings,
    Settings,
)

__all__ = [
    "AuthSettings",
    "BridgeSettings",
    "ConfigError",
    "GatewaySettings",
    "KafkaSettings",
    "RedisSettings",
    "RouteSettings",
    "SaltSettings",
    "Settings",
    "load",
]
