"""The cluster key layout: every key of a stream in one slot, global keys one per slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot as redis_key_slot

from wire import Keys
from wire.cluster import parse_nodes
from wire.connect import RedisTarget, RedisTargetError
from wire.slots import SLOTS, key_slot, slot_tag

pytestmark = pytest.mark.unit

NAMES = ["kafka:app", "kafka:app/we{ird}", "file:web-1:/var/log/a}b.log", "salt:jobs"]


@pytest.mark.parametrize("stream", NAMES)
def test_a_streams_keys_share_its_slot_and_its_channel_names_it(stream: str) -> None:
    keys = Keys("tg:", cluster=True)
    slot = keys.slot(stream)
    assert {redis_key_slot(k.encode()) for k in (keys.hist(stream), keys.live(stream), keys.epoch(stream))} == {slot}
    assert keys.stream_of_channel(keys.live(stream).encode()) == stream
    assert {key_slot(k) for k in (keys.seen_in(slot), keys.counts_in(slot), keys.offsets_in("g", slot))} == {slot}


def test_the_single_node_layout_is_unchanged() -> None:
    keys = Keys("tg:")
    assert (keys.hist("kafka:a"), keys.live("kafka:a"), keys.epoch("kafka:a")) == (
        "tg:hist:kafka:a",
        "tg:live:kafka:a",
        "tg:epoch:kafka:a",
    )
    assert Keys("tg:", cluster=True).stream_of_channel("tg:live:kafka:a") is None


def test_every_slot_has_a_tag_hashing_to_it() -> None:
    assert all(key_slot("{" + slot_tag(s) + "}") == s for s in range(SLOTS))


def test_cluster_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys("t{g}:", cluster=True)
    with pytest.raises(ValueError, match="group"):
        Keys("tg:", cluster=True).offsets_in("g{1}", 0)
    with pytest.raises(RedisTargetError, match=r"redis\.mode"):
        RedisTarget("sentinal")
    with pytest.raises(RedisTargetError, match=r"redis\.prefix"):
        RedisTarget("cluster", cluster_nodes=("10.0.0.1:7000",)).keys("t{g}:")
    with pytest.raises(ValueError, match="not host:port"):
        parse_nodes(["10.0.0.1"])
    with pytest.raises(ValueError, match="names no node"):
        parse_nodes([])
    assert parse_nodes(["10.0.0.1:7000", "[::1]:7001"]) == [("10.0.0.1", 7000), ("::1", 7001)]


def test_a_gateway_refuses_to_start_on_a_mode_without_what_it_needs() -> None:
    from gateway.__main__ import check_values
    from settings import ConfigError, Settings

    settings = Settings()
    check_values(settings)
    settings.redis.mode = "cluster"
    with pytest.raises(ConfigError, match="names no node"):
        check_values(settings)
    settings.redis.cluster_nodes = ["127.0.0.1:7000"]
    check_values(settings)


def test_a_bridge_refuses_to_wait_for_replicas_on_a_cluster() -> None:
    from bridge.service import Bridge
    from settings import Settings

    settings = Settings()
    settings.bridge.topics = ["t"]
    settings.redis.mode, settings.redis.cluster_nodes = "cluster", ["127.0.0.1:7000"]
    settings.redis.min_replicas_acked = 1
    with pytest.raises(ValueError, match="min_replicas_acked is not supported in cluster mode"):
        Bridge(settings)
