"""Embedded services for the demo and the tests: a private redis-server and the Tansu
Kafka-compatible broker on free loopback ports, started and stopped as real processes.

Production never uses this package; it points at real Redis and Kafka.
"""

from embedded.cluster import RedisClusterNodes
from embedded.services import (
    KafkaBroker,
    RedisServer,
    free_port,
    gateway_ready,
    tansu_binary,
    wait_until,
)

__all__ = [
    "KafkaBroker",
    "RedisClusterNodes",
    "RedisServer",
    "free_port",
    "gateway_ready",
    "tansu_binary",
    "wait_until",
]
