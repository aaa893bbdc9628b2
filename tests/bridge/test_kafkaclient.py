"""The Kafka client interface (bridge.kafkaclient) keeps its invariants with each backend,
on the real broker: where a partition goes on is what the bridge chose, whatever the
client would do by itself."""

from __future__ import annotations

import ast
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.kafkaclient import BACKENDS, KafkaClient, TopicPartition, backend, check_security
from embedded import KafkaBroker, wait_until
from settings import Settings
from tests.support import ROOT, create_topic, produce

RECORDS = 20


@pytest.fixture(scope="module")
def topic(kafka: KafkaBroker) -> str:
    """Two partitions of RECORDS records each, values `p:i`."""
    name = f"client-{uuid.uuid4().hex[:6]}"
    create_topic(kafka.bootstrap, name, partitions=2)
    for p in range(2):
        produce(kafka.bootstrap, name, [f"{p}:{i}".encode() for i in range(RECORDS)], partition=p)
    return name


@pytest.fixture
def client(kafka: KafkaBroker, bridge_client: str) -> Iterator[KafkaClient]:
    settings = Settings()
    settings.kafka.bootstrap = kafka.bootstrap
    settings.bridge.group_id = f"g{uuid.uuid4().hex[:8]}"
    opened = backend(bridge_client).open_consumer(settings, check_security(settings.kafka))
    yield opened
    opened.close(2000)


class Reader:
    """Polls a client, keeping every partition's records until a test asks for them."""

    def __init__(self, client: KafkaClient) -> None:
        self.client = client
        self.kept: dict[TopicPartition, list[int]] = {}

    def _poll(self, timeout_ms: int = 50) -> None:
        for tp, records in self.client.poll(timeout_ms).items():
            self.kept.setdefault(tp, []).extend(r.offset for r in records)

    def next(self, tp: TopicPartition, want: int) -> list[int]:
        """The offsets of the next `want` records of `tp`."""

        def enough() -> bool:
            self._poll()
            return len(self.kept.get(tp, [])) >= want

        wait_until(enough, 10, 0, what=f"{want} records of {tp}")
        got, self.kept[tp] = self.kept[tp][:want], self.kept[tp][want:]
        return got

    def nothing_for(self, seconds: float) -> bool:
        """Poll for `seconds` (to see that nothing comes): True when nothing did."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll()
        return not any(self.kept.values())


def test_a_new_partition_starts_where_the_bridge_says_and_not_before_it_is_resumed(client, topic) -> None:
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    read = Reader(client)
    client.assign([p0, p1])
    client.pause([p0, p1])
    client.seek(p0, 5)  # at once: the partition has fetched nothing yet
    assert read.nothing_for(0.5)  # paused: nothing, from anywhere
    client.seek(p1, 12)
    client.resume([p0, p1])
    assert read.next(p0, 3) == [5, 6, 7]
    assert read.next(p1, 2) == [12, 13]
    assert client.assignment() == {p0, p1}


def test_a_seek_while_paused_holds_through_polls_and_a_pause_loses_no_record(client, topic) -> None:
    p0 = TopicPartition(topic, 0)
    read = Reader(client)
    client.assign([p0])
    client.seek(p0, 0)
    assert read.next(p0, 4) == [0, 1, 2, 3]
    client.pause([p0])
    read.kept.clear()  # what came with the first four, unasked for
    assert client.paused() == {p0}
    client.seek(p0, 4)
    assert read.nothing_for(0.5)
    client.resume([p0])
    assert read.next(p0, 1) == [4]
    client.pause([p0])
    read.kept.clear()
    client.seek(p0, 15)
    assert read.nothing_for(0.5)  # polled while paused, after the seek
    client.resume([p0])
    assert read.next(p0, 2) == [15, 16]
    assert client.paused() == set()


def test_assign_keeps_the_partitions_that_stay_where_they_are(client, topic, kafka: KafkaBroker) -> None:
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    read = Reader(client)
    client.assign([p0])
    client.seek(p0, 10)
    assert read.next(p0, 10) == list(range(10, 20))
    client.assign([p0, p1])
    client.pause([p1])
    client.seek(p1, 3)
    client.resume([p1])
    assert read.next(p1, 1) == [3]
    produce(kafka.bootstrap, topic, [b"0:20"], partition=0)
    assert read.next(p0, 1) == [20]  # p0 went on: not read again from anywhere
    client.assign([p1])
    assert client.assignment() == {p1}
    assert wait_until(lambda: (client.highwater(p1) or 0) == RECORDS, 10, what="the high watermark")


def test_commits_and_committed_offsets(client, topic) -> None:
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    client.assign([p0, p1])
    client.commit({p1: 9}, 5000)
    assert client.committed([p0, p1], 5000) == {p1: 9}
    failures: list[object] = []
    client.commit_async({p0: 7}, lambda offsets, exc: failures.append((offsets, exc)))
    # the answer comes back inside a poll
    wait_until(lambda: client.poll(50) is not None and client.committed([p0], 5000) == {p0: 7}, 10, what="commit")
    assert failures == []


@pytest.mark.unit
@pytest.mark.parametrize("bridge_client", ["kafka-python"])  # reads source files only: once
def test_only_the_backend_modules_import_a_kafka_client_library(bridge_client: str) -> None:
    owners = {"kafka": "bridge/kafka_python.py", "confluent_kafka": "bridge/confluent_kafka.py"}
    assert set(BACKENDS.values()) == {path[:-3].replace("/", ".") for path in owners.values()}
    for path in sorted(Path(ROOT, "bridge").glob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                library = name.split(".")[0]
                assert library not in owners or owners[library] == where, f"{where} imports {name}"


@pytest.mark.unit
@pytest.mark.parametrize("bridge_client", ["kafka-python"])  # starts no client: once
def test_an_unknown_client_is_a_configuration_error(bridge_client: str) -> None:
    message = "bridge.client must be one of kafka-python, confluent-kafka, not 'kafka'"
    with pytest.raises(ValueError, match=re.escape(message)):
        backend("kafka")


@pytest.mark.unit
@pytest.mark.parametrize("bridge_client", ["confluent-kafka"])  # kafka-python's constructor connects at once
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_librdkafka_takes_every_security_setting_the_bridge_offers(bridge_client: str, mechanism: str) -> None:
    from confluent_kafka import Consumer

    from bridge.confluent_kafka import connection_config

    settings = Settings().kafka
    settings.bootstrap = "127.0.0.1:9"  # never answers: nothing is asked of it
    settings.security_protocol = "SASL_SSL"
    settings.ssl_cafile = settings.ssl_certfile = "/etc/hostname"
    settings.sasl_mechanism, settings.sasl_username, settings.sasl_password = mechanism, "svc", "secret"
    security = check_security(settings)
    assert "secret" not in repr(security)
    config = connection_config(settings, security)
    assert config["ssl.key.location"] == "/etc/hostname"  # the certificate file holds the key
    config.pop("ssl.ca.location")  # not a CA bundle: librdkafka reads it at once
    config.pop("ssl.certificate.location")
    config.pop("ssl.key.location")
    Consumer({**config, "group.id": "g"}).close()  # raises for a setting this librdkafka lacks
