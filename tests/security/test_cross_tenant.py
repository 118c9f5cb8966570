"""No cross-tenant read or write through any endpoint: every route of the real gateway x every
(caller, foreign tenant) pair, and every registry-server RPC x every (caller, foreign tenant) pair.

Real components only: the session's gateway (`featureplane serve`, 2 workers) over the sample
deployment (three tenants applied and materialized into a real Redis); for the registry, the
TLS `featureplane registry-server` and the `feast apply`-applied projects of
tests/registry/test_ownership.py.

The route list is not written down here: it is read from the running gateway's /openapi.json
and from the app itself (its router, the documentation routes and the fast routes that bypass
FastAPI). :data:`ROUTES` classifies each; a route that appears later without a class fails
:func:`test_every_route_is_classified` until someone decides what it may reveal.

"No values leaked" is checked against sentinels: every distinctive feature value each owner
reads from its own views (floats with several digits, strings that are no entity key or name).
No answer to a foreign caller may contain one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import redis

from featureplane.embedded.gateway import GatewayProcess
from featureplane.tenancy.credentials import CRED_PREFIX, CredentialStore
from tests.support.deployment import Deployment
from tests.support.gateway import bearer
from tests.support.registry_server import (
    Platform,
    all_projects,
    project_rows,
    registry_db,
    remote_registry,
)

FEATURES = "/get-online-features"
TENANT_DATA = "tenant data: authenticated, answers the caller's own and shared objects only"
PUBLIC = "public: no credential, no feature values, the same answer whoever asks"

# Every (method, path) the gateway serves. HEAD is GET without a body (Starlette adds it to the
# documentation routes), so it is classified with GET.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", FEATURES): TENANT_DATA,
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Feast's own feature server has write and extra read routes; the gateway must have none.
FEAST_SERVER_PATHS = (
    "/push",
    "/write-to-online-store",
    "/materialize",
    "/materialize-incremental",
    "/retrieve-online-documents",
    "/get-online-documents",
    "/get-online-features/",
    "//get-online-features",
    "/GET-ONLINE-FEATURES",
    "/get-online-features/../push",
    "/features",
    "/feature-views",
    "/projects",
)
# Headers and query parameters a confused deputy might take the tenant or project from.
TENANT_HEADERS = ("X-Featureplane-Tenant", "X-Tenant", "X-Tenant-Id", "X-Scope-OrgID")
PROJECT_HEADERS = ("X-Featureplane-Project", "X-Project", "X-Feast-Project")


@dataclass(frozen=True)
class View:
    tenant: str
    project: str
    name: str
    features: tuple[str, ...]
    entities: dict[str, list[Any]] = field(hash=False, compare=False)

    @property
    def refs(self) -> list[str]:
        return [f"{self.name}:{f}" for f in self.features]


@dataclass
class World:
    """The deployment as the tests see it: who owns what, who shares what, what it holds."""

    deployment: Deployment
    views: dict[str, list[View]]  # tenant -> its feature views
    services: dict[str, list[str]]  # tenant -> its feature service names
    sentinels: dict[str, set[str]]  # tenant -> distinctive value texts of its features

    @property
    def tenants(self) -> list[str]:
        return sorted(self.views)

    def project(self, tenant: str) -> str:
        return self.deployment.catalog.get_tenant(tenant).feast_project

    def shared_views(self, owner: str, reader: str) -> frozenset[str]:
        return self.deployment.catalog.get_tenant(owner).grants_to(reader)[0]

    def shared_services(self, owner: str, reader: str) -> frozenset[str]:
        return self.deployment.catalog.get_tenant(owner).grants_to(reader)[1]

    def token(self, tenant: str) -> str:
        return self.deployment.tokens[tenant]


def pairs(tenants: list[str]) -> list[tuple[str, str]]:
    """Every ordered (caller, foreign tenant) pair."""
    return list(itertools.permutations(tenants, 2))


def post(
    http: httpx.Client,
    token: str | None,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    path: str = FEATURES,
) -> httpx.Response:
    """POST, waiting out a 429 (quotas are on in the session gateway) so the status is the
    authorization decision, not the rate limiter's."""
    all_headers = (bearer(token) if token else {}) | (headers or {})
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers.setdefault("Content-Type", "application/json")
    for _ in range(5):
        resp = http.post(path, content=content, headers=all_headers, params=params)
        if resp.status_code != 429:
            return resp
        time.sleep(float(resp.headers.get("Retry-After", "0.2")))
    return resp


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _flat(v)
    else:
        yield value


def distinctive(value: Any, exclude: set[str]) -> str | None:
    """The text of a value that cannot appear in an answer by coincidence, else None."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return None
    if isinstance(value, float):
        text = orjson.dumps(value).decode()
        digits = sum(c.isdigit() for c in text.lstrip("-0."))
        return text if digits >= 6 else None
    if isinstance(value, str) and len(value) >= 6 and value not in exclude:
        return value
    return None


def _load_world(deployment: Deployment, http: httpx.Client) -> World:
    from featureplane.feast_config import close_registry, open_registry

    registry = open_registry(deployment.settings)
    views: dict[str, list[View]] = {}
    services: dict[str, list[str]] = {}
    try:
        for spec in deployment.catalog.values():
            project = spec.feast_project
            tables = deployment.tables[spec.name]
            views[spec.name] = []
            for fv in registry.list_feature_views(project, allow_cache=False):
                features = tuple(f.name for f in fv.features)
                keys = list(fv.join_keys)
                table = next(
                    t for t in tables.values() if set(keys) | set(features) <= set(t.column_names)
                )
                entities = {k: table.column(k).slice(0, 3).to_pylist() for k in keys}
                views[spec.name].append(View(spec.name, project, fv.name, features, entities))
            # On-demand views too: a foreign one is refused like a stored one, and its owner's
            # worker never runs for another tenant.
            odfvs = registry.list_on_demand_feature_views(project, allow_cache=False, skip_udf=True)
            for odfv in odfvs:
                entities = {}
                for source in odfv.source_feature_view_projections.values():
                    entities |= next(v for v in views[spec.name] if v.name == source.name).entities
                for field in odfv.get_request_data_schema():
                    entities[field] = [100, 200, 300]
                outputs = tuple(f.name for f in odfv.features)
                views[spec.name].append(View(spec.name, project, odfv.name, outputs, entities))
            services[spec.name] = [
                s.name for s in registry.list_feature_services(project, allow_cache=False)
            ]
    finally:
        close_registry(registry)
    # Names and entity keys may appear in any answer (the caller sends them): not sentinels.
    names: set[str] = set(views) | {p for p in (v.project for vs in views.values() for v in vs)}
    for vs in views.values():
        for v in vs:
            names |= {v.name, *v.features, *v.entities}
            names |= {str(x) for col in v.entities.values() for x in col}
    sentinels: dict[str, set[str]] = {}
    for tenant, vs in views.items():
        found: set[str] = set()
        for v in vs:
            resp = post(
                http, deployment.tokens[tenant], {"features": v.refs, "entities": v.entities}
            )
            assert resp.status_code == 200, resp.text
            n_keys = len(v.entities)
            for column in resp.json()["results"][n_keys:]:
                assert "PRESENT" in column["statuses"], (v.name, column)
                for value in _flat(column["values"]):
                    text = distinctive(value, names)
                    if text is not None:
                        found.add(text)
        assert found, f"{tenant}: no distinctive feature values to look for"
        sentinels[tenant] = found
    return World(deployment, views, services, sentinels)


@pytest.fixture(scope="module")
def world(deployment: Deployment, gateway: GatewayProcess) -> World:
    with httpx.Client(base_url=gateway.base, timeout=10) as client:
        return _load_world(deployment, client)


def assert_nothing_of(world: World, owner: str, resp: httpx.Response, what: str) -> None:
    text = resp.text
    leaked = sorted(s for s in world.sentinels[owner] if s in text)
    assert not leaked, f"{what}: {owner}'s values in the answer: {leaked[:5]}"
    for tenant in world.tenants:
        assert world.token(tenant) not in text, f"{what}: {tenant}'s token in the answer"


# -- the route list ------------------------------------------------------------------------------


def served_routes(world: World, gateway: GatewayProcess) -> set[tuple[str, str]]:
    """What the gateway serves: its OpenAPI document (running) plus what the app itself routes,
    documentation and fast routes included."""
    from featureplane.gateway.app import create_app

    found: set[tuple[str, str]] = set()
    schema = httpx.get(f"{gateway.base}/openapi.json", timeout=10).json()
    for path, operations in schema["paths"].items():
        found |= {(method.upper(), path) for method in operations}
    app = create_app(world.deployment.settings)
    for path, methods in _flatten(app.router.routes):
        found |= {(m, path) for m in methods - {"HEAD"}}
    documented = {r.path: r.methods or {"*"} for r in app.documented_routes}
    for path in app.fast_routes:
        found |= {(m, path) for m in documented.get(path, {"*"})}
    return found


def _flatten(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers (FastAPI keeps them as
    wrappers); anything else without methods (a Mount, a WebSocket route) reads as ``*``."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _flatten(included.routes, prefix + getattr(context, "prefix", ""))
            continue
        methods = set(getattr(route, "methods", None) or {"*"})
        yield prefix + getattr(route, "path", repr(route)), methods


def test_every_route_is_classified(world: World, gateway: GatewayProcess) -> None:
    served = served_routes(world, gateway)
    unclassified = served - set(ROUTES)
    assert not unclassified, (
        f"routes without a security class in {__name__}.ROUTES: {sorted(unclassified)}; "
        "decide what they may reveal to which tenant and add them (and their tests)"
    )
    assert set(ROUTES) <= served, f"classified but not served: {sorted(set(ROUTES) - served)}"


# -- the feature route ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    label: str
    body: dict[str, Any] | bytes
    status: int | None  # None: any refusal (4xx other than 429)
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    params: dict[str, str] = field(default_factory=dict, hash=False)


def view_attempts(world: World, caller: str, target: View) -> list[Attempt]:
    """Ways for ``caller`` to read ``target`` (a view not shared with it)."""
    own, foreign = world.project(caller), target.project
    refs, entities = target.refs, target.entities
    feature = target.features[0]
    body = {"features": refs, "entities": entities}
    mine = world.views[caller][0] if world.views[caller] else None
    mixed_entities = entities | (mine.entities if mine else {})
    hints = {h: target.tenant for h in TENANT_HEADERS} | {h: foreign for h in PROJECT_HEADERS}
    duplicate = b'{"features": %b, "entities": %b, "project": "%b", "project": "%b"}' % (
        orjson.dumps(refs),
        orjson.dumps(entities),
        own.encode(),
        foreign.encode(),
    )
    query = {"tenant": target.tenant, "project": foreign}
    lookalike = target.name.replace("a", "\u0430", 1).replace("e", "\u0435", 1)
    return [
        Attempt("plain", body, 403),
        Attempt("project=foreign", body | {"project": foreign}, 403),
        Attempt("full_feature_names", body | {"full_feature_names": True}, 403),
        Attempt(
            "full_feature_names+project",
            body | {"full_feature_names": True, "project": foreign},
            403,
        ),
        Attempt(
            "mixed with own view",
            {"features": [*(mine.refs[:1] if mine else []), *refs], "entities": mixed_entities},
            403,
        ),
        Attempt("one feature", {"features": refs[:1], "entities": entities}, 403),
        Attempt("project=own", body | {"project": own}, 400),
        Attempt("project upper-cased", body | {"project": foreign.upper()}, 400),
        Attempt("project padded", body | {"project": f" {foreign}"}, 400),
        Attempt("project with NUL", body | {"project": f"{foreign}\x00"}, 400),
        Attempt("project list", body | {"project": [foreign]}, 422),
        Attempt("project:view:feature", body | {"features": [f"{foreign}:{refs[0]}"]}, 400),
        Attempt("project/view", body | {"features": [f"{foreign}/{refs[0]}"]}, 400),
        Attempt("path traversal", body | {"features": [f"../{foreign}/{refs[0]}"]}, 400),
        Attempt("view@project", body | {"features": [f"{target.name}@{foreign}:{feature}"]}, 400),
        Attempt("project.view", body | {"features": [f"{foreign}.{refs[0]}"]}, 400),
        Attempt("full name as ref", body | {"features": [f"{target.name}__{feature}"]}, 400),
        Attempt("lookalike view name", body | {"features": [f"{lookalike}:{feature}"]}, None),
        Attempt("view as service", {"feature_service": target.name, "entities": entities}, None),
        Attempt("tenant/project headers", body, 403, headers=hints),
        Attempt("tenant/project query", body, 403, params=query),
        Attempt("duplicate project key", duplicate, None),
        Attempt("body names the tenant", body | {"tenant": target.tenant}, 403),
    ]  # fmt: skip


def service_attempts(world: World, caller: str, owner: str, service: str) -> list[Attempt]:
    own, foreign = world.project(caller), world.project(owner)
    entities: dict[str, list[Any]] = {}
    for v in world.views[owner]:
        entities |= v.entities
    body = {"feature_service": service, "entities": entities}
    return [
        Attempt("service", body, 403),
        Attempt("service project=foreign", body | {"project": foreign}, 403),
        Attempt("service full_feature_names", body | {"full_feature_names": True}, 403),
        Attempt("service project=own", body | {"project": own}, 400),
        Attempt("service + tenant headers", body, 403, headers={"X-Tenant": owner}),
    ]


def _feature_route_matrix(world: World) -> Iterator[tuple[str, str, str, Attempt]]:
    for caller, owner in pairs(world.tenants):
        for view in world.views[owner]:
            if view.name not in world.shared_views(owner, caller):
                for attempt in view_attempts(world, caller, view):
                    yield caller, owner, view.name, attempt
        for service in world.services[owner]:
            if service not in world.shared_services(owner, caller):
                for attempt in service_attempts(world, caller, owner, service):
                    yield caller, owner, service, attempt


def test_feature_route_refuses_every_foreign_read(world: World, http: httpx.Client) -> None:
    tried = 0
    owners_tried: set[tuple[str, str]] = set()
    for caller, owner, target, attempt in _feature_route_matrix(world):
        what = f"{caller} -> {owner}.{target} [{attempt.label}]"
        resp = post(http, world.token(caller), attempt.body, attempt.headers, attempt.params)
        if attempt.status is not None:
            assert resp.status_code == attempt.status, f"{what}: {resp.status_code} {resp.text}"
        else:
            assert 400 <= resp.status_code < 500, f"{what}: {resp.status_code} {resp.text}"
        answer = resp.json()
        assert set(answer) == {"error"}, f"{what}: {resp.text}"
        assert_nothing_of(world, owner, resp, what)
        tried += 1
        owners_tried.add((caller, owner))
    assert owners_tried == set(pairs(world.tenants))  # every pair had something to refuse
    assert tried > 100


def test_shared_views_stay_readable_and_scoped(world: World, http: httpx.Client) -> None:
    """The positive control: what a grant names is served (so the refusals above are not an
    outage), and a grant opens nothing beside it."""
    checked = 0
    for reader, owner in pairs(world.tenants):
        for view in world.views[owner]:
            if view.name not in world.shared_views(owner, reader):
                continue
            body = {"features": view.refs, "entities": view.entities}
            for extra in ({}, {"project": view.project}, {"full_feature_names": True}):
                resp = post(http, world.token(reader), body | extra)
                assert resp.status_code == 200, resp.text
                own = post(http, world.token(owner), body | extra)
                assert resp.json() == own.json()
            others = [v for v in world.views[owner] if v.name != view.name]
            for other in others:
                if other.name in world.shared_views(owner, reader):
                    continue
                mixed = {
                    "features": [*view.refs, *other.refs],
                    "entities": view.entities | other.entities,
                    "project": view.project,
                }
                resp = post(http, world.token(reader), mixed)
                assert resp.status_code == 403, resp.text
                assert_nothing_of(world, owner, resp, f"{reader} -> {owner} mixed")
            checked += 1
    assert checked, "no sharing grant in tenants/: the positive control would be vacuous"


def test_no_other_method_or_path_answers(world: World, http: httpx.Client) -> None:
    """No write route exists: every other method on every served path, and Feast's feature
    server routes, are refused without data, whoever asks and whatever the body names."""
    paths = {path for _, path in ROUTES}
    for caller, owner in pairs(world.tenants):
        view = world.views[owner][0]
        body = orjson.dumps({"features": view.refs, "entities": view.entities})
        headers = bearer(world.token(caller)) | {"Content-Type": "application/json"}
        for path in sorted(paths):
            for method in METHODS:
                if (method, path) in ROUTES:
                    continue
                resp = http.request(method, path, content=body, headers=headers)
                assert resp.status_code in (404, 405), f"{method} {path}: {resp.status_code}"
                assert_nothing_of(world, owner, resp, f"{caller}: {method} {path}")
        for path in FEAST_SERVER_PATHS:
            for method in ("GET", "POST"):
                resp = http.request(method, path, content=body, headers=headers)
                assert resp.status_code in (404, 405), f"{method} {path}: {resp.status_code}"
                assert_nothing_of(world, owner, resp, f"{caller}: {method} {path}")


# -- public routes -----------------------------------------------------------------------------


def _comparable(path: str, resp: httpx.Response) -> Any:
    if path == "/metrics":  # counters move between two scrapes: compare the families only
        return sorted(
            {line.split()[2] for line in resp.text.splitlines() if line.startswith("# TYPE")}
        )
    if path == "/ready":
        body = resp.json()
        body["checks"].pop("registry_age_seconds")
        return body
    return resp.text


def test_public_routes_reveal_the_same_to_everyone(world: World, http: httpx.Client) -> None:
    public = sorted(path for (method, path), kind in ROUTES.items() if kind == PUBLIC)
    for path in public:
        anonymous = http.get(path)
        assert anonymous.status_code == 200, path
        for caller, owner in pairs(world.tenants):
            hints = {h: owner for h in TENANT_HEADERS} | {
                h: world.project(owner) for h in PROJECT_HEADERS
            }
            resp = http.get(
                path,
                headers=bearer(world.token(caller)) | hints,
                params={"tenant": owner, "project": world.project(owner)},
            )
            what = f"{caller} asking {path} about {owner}"
            assert resp.status_code == anonymous.status_code, what
            assert _comparable(path, resp) == _comparable(path, anonymous), what
            for tenant in world.tenants:
                assert_nothing_of(world, tenant, resp, what)


# -- bad credentials ------------------------------------------------------------------------------


def bad_credentials(world: World) -> dict[str, str | None]:
    """Authorization header values that must not authenticate anybody."""
    settings = world.deployment.settings
    fraud, recsys = world.token("fraud"), world.token("recsys")
    fraud_id, recsys_secret = fraud.split("_")[1], recsys.split("_", 2)[2]
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        store = CredentialStore(client, settings.pepper)
        revoked = store.issue("fraud")
        store.revoke(revoked.id)
        expired = store.issue("recsys")
        client.hset(CRED_PREFIX + expired.id, "expires_at", str(time.time() - 1))
        ghost = store.issue("ghost")  # a real token of no tenant in tenants/
    return {
        "none": None,
        "empty": "",
        "bearer only": "Bearer",
        "basic": "Basic ZnJhdWQ6c2VjcmV0",
        "token scheme": f"Token {fraud}",
        "raw token": fraud,
        "appended": f"Bearer {fraud}x",
        "truncated": f"Bearer {fraud[:-1]}",
        "case-changed secret": f"Bearer {fraud[:-4]}{fraud[-4:].swapcase()}"
        if fraud[-4:].swapcase() != fraud[-4:]
        else f"Bearer {fraud[:-1]}{'A' if fraud[-1] != 'A' else 'B'}",
        "fraud id, recsys secret": f"Bearer fpt_{fraud_id}_{recsys_secret}",
        "two tokens": f"Bearer {fraud} {recsys}",
        "prefix only": "Bearer fpt_",
        "sql-ish": "Bearer fpt_' OR '1'='1",
        "key injection": f"Bearer fpt_{fraud_id}*_{'x' * 43}",
        "revoked": f"Bearer {revoked.token}",
        "expired": f"Bearer {expired.token}",
        "ghost tenant": f"Bearer {ghost.token}",
        "huge": "Bearer fpt_" + "a" * 8000,
    }


def test_bad_credentials_get_401_and_nothing_else(world: World, http: httpx.Client) -> None:
    for label, header in bad_credentials(world).items():
        for owner in world.tenants:
            for view in world.views[owner]:
                body = {"features": view.refs, "entities": view.entities}
                headers = {"Content-Type": "application/json"}
                if header is not None:
                    headers["Authorization"] = header
                resp = http.post(FEATURES, content=orjson.dumps(body), headers=headers)
                what = f"{label} -> {owner}.{view.name}"
                assert resp.status_code == 401, f"{what}: {resp.status_code} {resp.text}"
                assert resp.json()["error"]["code"] == "unauthenticated"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert_nothing_of(world, owner, resp, what)


def test_revocation_applies_to_the_next_request_on_every_worker(
    world: World, http: httpx.Client
) -> None:
    settings = world.deployment.settings
    view = world.views["fraud"][0]
    body = {"features": view.refs, "entities": view.entities}
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        store = CredentialStore(client, settings.pepper)
        issued = store.issue("fraud")
        for _ in range(8):  # warm both workers' token caches
            assert post(http, issued.token, body).status_code == 200
        store.revoke(issued.id)
    for _ in range(8):
        resp = post(http, issued.token, body)
        assert resp.status_code == 401, resp.text
        assert_nothing_of(world, "fraud", resp, "revoked")
        # ... also on the error paths that carry no read (a revoked token learns only 401).
        for bad in ({"features": ["nope:x"], "entities": view.entities}, b"{not json"):
            resp = post(http, issued.token, bad)
            assert resp.status_code == 401, resp.text


# -- the registry server ---------------------------------------------------------------------------

REGISTRY_TENANTS = ("fraud", "pricing", "recsys")  # pricing never applies: its project is absent


def _fabricated(project: str) -> dict[str, Any]:
    """New objects an attacker tries to put into ``project``."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.permissions.permission import Permission
    from feast.permissions.policy import RoleBasedPolicy
    from feast.project import Project
    from feast.types import Int64

    entity = Entity(name="planted", join_keys=["planted_id"], value_type=ValueType.INT64)
    source = FileSource(name="planted_source", path="/tmp/planted", timestamp_field="ts")
    view = FeatureView(
        name="planted_view",
        entities=[entity],
        ttl=timedelta(days=1),
        schema=[Field(name="planted_id", dtype=Int64), Field(name="x", dtype=Int64)],
        source=source,
    )
    return {
        "entity": entity,
        "source": source,
        "view": view,
        "service": FeatureService(name="planted_service", features=[view]),
        "permission": Permission(name="planted", policy=RoleBasedPolicy(roles=["anyone"])),
        "project": Project(name=project, description="taken over"),
    }


# (RemoteRegistry method, its positional arguments) for one RPC each. Argument names:
# ``project`` the victim's project; ``view``/``entity``/``source`` the name of one of the victim's
# objects; ``new:<kind>`` an object the attacker made up; ``changed:view`` the victim's own view,
# edited; ``start``/``end`` a materialization interval. Writes also pass ``commit=True``.
RPCS: list[tuple[str, tuple[str, ...]]] = [
    ("list_entities", ("project",)),
    ("list_data_sources", ("project",)),
    ("list_feature_views", ("project",)),
    ("list_all_feature_views", ("project",)),
    ("list_on_demand_feature_views", ("project",)),
    ("list_stream_feature_views", ("project",)),
    ("list_feature_services", ("project",)),
    ("list_permissions", ("project",)),
    ("list_saved_datasets", ("project",)),
    ("list_validation_references", ("project",)),
    ("list_project_metadata", ("project",)),
    ("get_project", ("project",)),
    ("get_infra", ("project",)),
    ("get_feature_view", ("view", "project")),
    ("get_any_feature_view", ("view", "project")),
    ("get_entity", ("entity", "project")),
    ("get_data_source", ("source", "project")),
    ("apply_entity", ("new:entity", "project")),
    ("apply_data_source", ("new:source", "project")),
    ("apply_feature_view", ("new:view", "project")),
    ("apply_feature_view", ("changed:view", "project")),
    ("apply_feature_service", ("new:service", "project")),
    ("apply_permission", ("new:permission", "project")),
    ("apply_project", ("new:project",)),
    ("apply_materialization", ("changed:view", "project", "start", "end")),
    ("delete_feature_view", ("view", "project")),
    ("delete_entity", ("entity", "project")),
    ("delete_data_source", ("source", "project")),
    ("delete_feature_service", ("new:service-name", "project")),
    ("delete_permission", ("new:permission-name", "project")),
    ("delete_project", ("project",)),
]
WRITES = ("apply_", "delete_", "update_")


def rpc_arguments(names: tuple[str, ...], victim: str, objects: dict[str, Any]) -> list[Any]:
    fabricated = _fabricated(victim)
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "project": victim,
        "start": now - timedelta(days=1),
        "end": now,
        "new:service-name": "planted_service",
        "new:permission-name": "planted",
    }
    for kind in ("view", "entity", "source"):
        existing = objects.get(kind)
        values[kind] = existing.name if existing is not None else f"planted_{kind}"
    for kind, made_up in fabricated.items():
        values[f"new:{kind}"] = made_up
    view = objects.get("view")
    if view is not None:
        view.description = "changed by another tenant"
    values["changed:view"] = view if view is not None else fabricated["view"]
    return [values[name] for name in names]


def _objects(platform_: Platform, tenant: str) -> dict[str, Any]:
    """The owner's own objects, read through the server with the owner's token."""
    if tenant not in platform_.tokens:
        return {}
    owner = remote_registry(platform_, platform_.tokens[tenant], tenant)
    found = {
        "view": owner.list_feature_views(tenant),
        "entity": owner.list_entities(tenant),
        "source": owner.list_data_sources(tenant),
    }
    return {kind: objects[0] for kind, objects in found.items() if objects}


def _refused(call: Callable[[], object], read: bool) -> str:
    """How the call failed: ``denied`` (permission), ``not found`` (an object the caller named
    does not exist) or, for a list, ``empty`` (Feast filters lists by permission: nothing of
    the foreign project comes back). Anything else, a write that succeeds above all, fails."""
    from feast.errors import FeastPermissionError

    try:
        answer = call()
    except FeastPermissionError:
        return "denied"
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        assert "NotFound" in text or "does not exist" in text, text
        return "not found"
    if read and isinstance(answer, list) and not answer:
        return "empty"
    raise AssertionError(f"succeeded: {answer!r}"[:500])


def test_registry_server_refuses_every_rpc_into_foreign_projects(
    platform: Platform,
    applied: dict[str, Any],
) -> None:
    db = registry_db(platform)
    platform.tokens.setdefault("pricing", platform.credentials.issue("pricing").token)
    before = {t: project_rows(db, t) for t in REGISTRY_TENANTS}
    projects = all_projects(db)
    objects = {t: _objects(platform, t) for t in REGISTRY_TENANTS}
    outcomes: dict[str, int] = {}
    failures: list[str] = []
    for caller, victim in pairs(list(REGISTRY_TENANTS)):
        registry = remote_registry(platform, platform.tokens[caller], caller)
        for method, names in RPCS:
            what = f"{caller} -> {victim}: {method}{names}"
            args = rpc_arguments(names, victim, objects[victim])
            kwargs = {"commit": True} if method.startswith(WRITES) else {}
            if method == "apply_materialization":
                kwargs = {}
            bound = getattr(registry, method)
            try:
                outcome = _refused(
                    lambda: bound(*args, **kwargs),  # noqa: B023 - called at once
                    read=not method.startswith(WRITES),
                )
            except AssertionError as exc:
                failures.append(f"{what}: {exc}")
                continue
            # An object that exists is refused for permission, never reported "not found".
            planted_name = method.startswith("delete_") and names[0].startswith("new:")
            if objects[victim] and not planted_name and outcome == "not found":
                failures.append(f"{what}: {outcome}")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # Nothing changed anywhere, byte for byte.
        for tenant in REGISTRY_TENANTS:
            assert project_rows(db, tenant) == before[tenant], f"{caller} changed {tenant}"
        assert all_projects(db) == projects
    assert not failures, "\n".join(failures)
    assert outcomes.get("denied", 0) >= len(RPCS) * 3, outcomes
