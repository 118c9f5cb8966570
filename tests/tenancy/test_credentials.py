"""Tenant tokens against a real Redis: only digests stored, revocation immediate."""

from __future__ import annotations

import redis

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.tenancy.credentials import CRED_PREFIX, CredentialStore, parse_token_id, verify


def test_issue_list_revoke(redis_server: EmbeddedRedis) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        _issue_list_revoke(client)


def _issue_list_revoke(client: redis.Redis) -> None:
    store = CredentialStore(client, b"pepper")
    issued = store.issue("fraud")
    assert parse_token_id(issued.token) == issued.id
    stored = client.hgetall(CRED_PREFIX + issued.id)
    assert stored[b"tenant"] == b"fraud"
    assert issued.token.encode() not in b"".join(stored.values())  # only a digest is kept
    assert verify(b"pepper", issued.token, stored[b"digest"].decode())
    assert not verify(b"other-pepper", issued.token, stored[b"digest"].decode())
    assert issued.id in [c.id for c in store.list("fraud")]
    assert store.revoke(issued.id) == "fraud"
    assert client.exists(CRED_PREFIX + issued.id) == 0
    assert issued.id not in [c.id for c in store.list("fraud")]
    assert store.revoke(issued.id) is None


def test_malformed_tokens_have_no_id() -> None:
    for token in (
        "",
        "abc",
        "fpt_",
        "fpt_short_secret",
        "fpt_0123456789ab_tooshort",
        "xyz_0123456789ab_" + "a" * 40,
    ):
        assert parse_token_id(token) is None
