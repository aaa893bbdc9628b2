"""The bridge's connection to Kafka over TLS, and its TLS/SASL settings checked at start.

The embedded broker has no TLS listener, so a TLS-terminating proxy stands in front of
it (tests.support.TlsProxy) and the broker advertises the proxy: every connection the
bridge makes, bootstrap and broker alike, is then real TLS from kafka-python.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded import KafkaBroker, free_port, wait_until
from tests.support import ROOT, TlsProxy, http_get, self_signed, service_env


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, TlsProxy, Path, Path]]:
    """A broker reachable only over TLS; its CA file, and another CA that did not sign it."""
    work = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(work, "broker")
    stranger, _ = self_signed(work, "stranger")
    internal = free_port()
    proxy = TlsProxy(internal, cert, key)
    broker = KafkaBroker(port=internal, advertised_port=proxy.port, log_path=str(work / "tansu.log")).start()
    proxy.start()
    yield broker, proxy, cert, stranger
    proxy.stop()
    broker.stop()


def tls(cafile: Path) -> dict[str, str]:
    return {"security_protocol": "SSL", "ssl_cafile": str(cafile)}


def test_the_bridge_republishes_from_a_broker_over_tls(tls_broker, start_bridge, history) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    _, proxy, cert, _ = tls_broker
    bootstrap = f"127.0.0.1:{proxy.port}"
    topic = f"tls-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **tls(cert))
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, **tls(cert))
    for i in range(20):
        producer.send(topic, f"over tls {i}".encode())
    producer.flush()
    producer.close()

    port = free_port()
    start_bridge(
        "--static",
        "--metrics-port",
        str(port),
        TAILGATE_BRIDGE_TOPICS=topic,
        TAILGATE_KAFKA_BOOTSTRAP=bootstrap,
        TAILGATE_KAFKA_SECURITY_PROTOCOL="SSL",
        TAILGATE_KAFKA_SSL_CAFILE=str(cert),
    )
    wait_until(lambda: len(history(f"kafka:{topic}")) == 20, 30, what="the lines republished")
    assert [line["text"] for line in history(f"kafka:{topic}")] == [f"over tls {i}" for i in range(20)]
    assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, b"ok: 1 partition\n")


def test_a_broker_certificate_not_signed_by_the_configured_ca_fails_the_start(tls_broker, start_bridge) -> None:
    _, proxy, _, stranger = tls_broker
    bridge = start_bridge(
        "--static",
        TAILGATE_BRIDGE_TOPICS="anything",
        TAILGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{proxy.port}",
        TAILGATE_KAFKA_SECURITY_PROTOCOL="SSL",
        TAILGATE_KAFKA_SSL_CAFILE=str(stranger),
    )
    assert bridge.wait(20) == 2
    assert f"TLS with the Kafka broker at 127.0.0.1:{proxy.port} failed: CERTIFICATE_VERIFY_FAILED" in bridge.output()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECURITY_PROTOCOL": "TLS"}, "kafka.security_protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "/nonexistent/ca.pem"}, "kafka.ssl_cafile: cannot read"),
        ({"SSL_CAFILE": "/etc/hostname"}, "kafka.ssl_cafile is set but kafka.security_protocol PLAINTEXT"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"}, "kafka.sasl_mechanism must be one of PLAIN"),
        (
            {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "svc"},
            "kafka.sasl_username and kafka.sasl_password are required",
        ),
        ({"SASL_PASSWORD": "x"}, "kafka.sasl_* is set but kafka.security_protocol PLAINTEXT does not use SASL"),
    ],
)
def test_impossible_security_settings_fail_the_start_with_a_clear_error(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("bridge: {}\n")
    overrides = {f"TAILGATE_KAFKA_{k}": v for k, v in env.items()}
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), "--topics", "t", "--metrics-port", "0"],
        cwd=ROOT,
        env=service_env(TAILGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", **overrides),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "configuration error" in proc.stderr and message in proc.stderr
