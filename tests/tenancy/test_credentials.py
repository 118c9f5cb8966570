"""Tenant tokens against a real Redis: only digests stored, revocation immediate, scopes kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.tenancy.credentials import (
    CRED_PREFIX,
    CredentialStore,
    parse_scopes,
    parse_token_id,
    stored_scopes,
    verify,
)
from tests.support.trees import Platform, cli


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


TENANT = "scopetest"


def test_scopes_are_stored_listed_and_kept_by_rotation(redis_server: EmbeddedRedis) -> None:
    # The Redis is the session's: a tenant of its own, so the listing holds only these tokens.
    with redis.Redis.from_url(redis_server.url) as client:
        store = CredentialStore(client, b"pepper")
        default = store.issue(TENANT)
        both = store.issue(TENANT, ("write", "read"))
        writer = store.issue(TENANT, ("write",))
        assert default.scopes == ("read",)
        assert both.scopes == ("read", "write")  # in SCOPES order
        assert client.hget(CRED_PREFIX + writer.id, "scopes") == b"write"
        listed = {c.id: c.scopes for c in store.list(TENANT)}
        assert listed == {default.id: ("read",), both.id: ("read", "write"), writer.id: ("write",)}
        successor = store.rotate(writer.id, overlap_seconds=0)
        assert successor is not None
        assert successor.scopes == ("write",)
        # A token issued before scopes existed (no field) may read, as it always could.
        client.hdel(CRED_PREFIX + default.id, "scopes")
        assert {c.id: c.scopes for c in store.list(TENANT)}[default.id] == ("read",)
        assert stored_scopes(None) == ("read",)
        with pytest.raises(ValueError, match="comma-separated subset of read, write"):
            store.issue(TENANT, ("admin",))


@pytest.mark.parametrize(
    ("text", "scopes"),
    [("read", ("read",)), ("write,read", ("read", "write")), (" read , write ", ("read", "write"))],
)
def test_scopes_parse_from_the_command_line(text: str, scopes: tuple[str, ...]) -> None:
    assert parse_scopes(text) == scopes


@pytest.mark.parametrize("text", ["", ",", "read,admin", "READ"])
def test_anything_else_is_not_a_scope(text: str) -> None:
    with pytest.raises(ValueError, match=f"got {text!r}"):
        parse_scopes(text)


def test_the_cli_issues_and_lists_scoped_tokens(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    tree = Platform(tmp_path, redis_server.url).tree("cli", "scopecli", {})
    issued = cli(tree, "tenants", "issue-token", "scopecli", "--scope", "write,read")
    assert issued.returncode == 0, issued.stderr
    assert parse_token_id(issued.stdout.strip()) is not None
    assert "scopes read,write" in issued.stderr
    listed = cli(tree, "tenants", "tokens", "scopecli")
    assert listed.returncode == 0, listed.stderr
    assert "read,write" in listed.stdout
    refused = cli(tree, "tenants", "issue-token", "scopecli", "--scope", "admin")
    assert refused.returncode == 2
    assert "--scope" in refused.stderr
    assert "subset of read, write" in refused.stderr
