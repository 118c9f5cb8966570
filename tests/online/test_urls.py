"""FEATUREPLANE_REDIS_URL parsing (one parser for every client) and cluster slot routing."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.crc import key_slot

from featureplane.errors import ConfigError
from featureplane.online.clients import feast_connection_string
from featureplane.online.slots import SLOTS, command_key, slot_owners
from featureplane.online.urls import RedisUrl
from tests.support.settings import make_settings


def test_cluster_url_lists_seed_nodes_for_feast_and_the_gateway(tmp_path: Path) -> None:
    url = "rediss://:s3cret@10.0.0.1:7000,10.0.0.2:7001,redis://10.0.0.3"
    settings = make_settings(tmp_path, url, redis_type="redis_cluster")
    assert feast_connection_string(settings) == (
        "10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:6379,password=s3cret,ssl=true"
    )
    parsed = RedisUrl.parse(url, cluster=True)
    assert (parsed.password, parsed.tls, parsed.db) == ("s3cret", True, None)
    with pytest.raises(ConfigError, match="database 0"):
        RedisUrl.parse("redis://10.0.0.1:7000/3", cluster=True)


@pytest.mark.parametrize(
    ("url", "feast"),
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379,db=0"),
        ("redis://localhost", "localhost:6379"),
        ("redis://default:pw@h:1/2", "h:1,db=2,password=pw"),
        ("rediss://user:p%40ss@h:7/3", "h:7,db=3,username=user,password=p@ss,ssl=true"),
    ],
)
def test_standalone_url_in_feasts_form(tmp_path: Path, url: str, feast: str) -> None:
    assert feast_connection_string(make_settings(tmp_path, url)) == feast


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:1", "expected a redis:// or rediss:// URL"),
        ("redis://h:1/zero", "database must be a number"),
    ],
)
def test_bad_standalone_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        RedisUrl.parse(url)


def test_slot_owners_and_command_keys() -> None:
    owners, primaries = slot_owners(
        [(0, 99, "a"), (100, SLOTS - 2, "b"), (SLOTS - 1, SLOTS - 1, "a")]
    )
    assert primaries == ["a", "b"]
    assert (owners[0], owners[99], owners[100], owners[SLOTS - 1]) == ("a", "a", "b", "a")
    partial, _ = slot_owners([(0, 10, "a")])
    assert partial[11] is None
    assert command_key([b"HMGET", b"k", b"f"]) == b"k"
    assert command_key([b"EVALSHA", b"sha", b"1", b"{t}:q"]) == b"{t}:q"
    assert command_key([b"EVAL", b"script", b"0"]) is None
    assert command_key([b"PING"]) is None
    assert key_slot(b"{t}:a") == key_slot(b"{t}:b")
