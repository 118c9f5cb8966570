"""Lint of a tenant's Feast repo, run by `featureplane plan` and `featureplane apply`.

Errors block the gate; warnings are printed. Every finding names the file and the object.
The levels below are the platform's; a tenant sets its own in tenant.yaml (``lint:``, a
``default`` and one entry per rule: ``error``, ``warning`` or ``off``), except for ``feast``.

=================  =======  ==========================================================
rule               level    what
=================  =======  ==========================================================
module-name        error    a repo module whose bare name is a standard-library or installed
                            top-level module (``types.py``, ``json.py``, ``feast.py``,
                            ``redis.py``): Feast imports that module instead and the file's
                            definitions silently vanish
unique-name        error    two feature views (of any kind), entities, feature services or
                            data sources share a name (case-insensitively, as Feast compares)
description        error    a feature view or entity without a description
owner              error    a feature view whose ``owner`` (Feast's field) or ``tags["owner"]``
                            is missing or not an owner email in tenants/<t>/tenant.yaml
ttl                error    a feature view with no ttl (or 0)
entity-ref         error    a feature view names an entity the repo does not define (Feast
                            applies it, and every read and materialization of it then fails)
feast              error    Feast itself refused the repo (its message)
entity-owner       warning  an entity whose owner is missing or not a tenant owner
feature-doc        warning  features without a description (not on on-demand views: Feast
                            refuses their fields' descriptions)
service-doc        warning  a feature service without a description
unsupported        warning  an on-demand feature view the gateway refuses to serve (one line
                            each: write_to_online_store, aggregations, renamed sources)
source-path        warning  a file source outside ``<data>/offline/<project>/`` (use
                            ``featureplane.sources.parquet_source``)
=================  =======  ==========================================================
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from featureplane.settings import Settings
from featureplane.sources import offline_dir
from featureplane.tenancy.spec import TenantSpec
from featureplane.transform.support import batch_refusal, refusal

if TYPE_CHECKING:
    from featureplane.registry.feast_plan import FeastPlan, RepoModule, RepoObject

Severity = Literal["error", "warning"]

_VIEWS = frozenset({"feature_view", "stream_feature_view", "on_demand_feature_view"})
_NAMESPACES = {"feature_service": "feature service", "data_source": "data source"}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity  # effective: the tenant's (tenant.yaml `lint:`), else the platform's
    file: str
    object_type: str | None
    name: str | None
    message: str  # names the file and the object
    default: Severity | None = None  # the platform's severity, once the tenant's is applied


def lint_repo(settings: Settings, spec: TenantSpec, plan: FeastPlan) -> list[Finding]:
    repo = settings.feature_repo_path / spec.name
    findings = [
        *lint_modules(repo, plan.modules),
        *lint_unique_names(repo, plan.objects),
        *lint_entity_refs(repo, plan.objects),
        *lint_objects(settings, spec, repo, plan.objects),
    ]
    if plan.error:
        where = display(repo)
        message = f"{where}: Feast refused the repo: {plan.error}"
        findings.append(Finding("feast", "error", where, None, None, message))
    effective = []
    for finding in findings:  # the tenant's severities (tenant.yaml `lint:`)
        level = spec.lint.level(finding.rule, finding.severity)
        if level != "off":
            effective.append(replace(finding, severity=level, default=finding.severity))
    return sorted(effective, key=lambda f: f.severity != "error")  # errors first, else stable


def display(path: Path) -> str:
    """A path as the user typed it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@functools.cache
def installed_top_level_names() -> dict[str, list[str]]:
    """Importable top-level names of installed distributions -> the distributions."""
    return dict(importlib.metadata.packages_distributions())


def shadowed(module: str) -> str | None:
    """What a repo module of this bare name would resolve to instead, if anything."""
    top = module.split(".", 1)[0]
    if top in sys.stdlib_module_names:
        return f"the standard library's {top!r}"
    dists = installed_top_level_names().get(top)
    if dists:
        return f"{top!r} of the installed {', '.join(sorted(set(dists)))}"
    return None


def lint_modules(repo: Path, modules: list[RepoModule]) -> Iterator[Finding]:
    for entry in modules:
        path = repo / entry.file
        other = shadowed(entry.module)
        if other is None and entry.resolved not in (None, str(path)):
            other = f"{entry.resolved}"
        if other is None:
            continue
        where = display(path)
        yield Finding(
            "module-name",
            "error",
            where,
            None,
            entry.module,
            f"{where}: module {entry.module!r} resolves to {other}: Feast imports repo modules "
            f"by bare name, so this file's definitions vanish; rename it "
            f"(prefix it with the tenant, e.g. {repo.name}_{Path(entry.file).stem}.py)",
        )


def _namespace(object_type: str) -> str:
    return "feature view" if object_type in _VIEWS else _NAMESPACES.get(object_type, object_type)


def _where(repo: Path, obj: RepoObject) -> str:
    return f"{display(repo / obj.file)} ({obj.variable})"


def lint_unique_names(repo: Path, objects: list[RepoObject]) -> Iterator[Finding]:
    groups: dict[tuple[str, str], list[RepoObject]] = defaultdict(list)
    for obj in objects:
        groups[_namespace(obj.object_type), obj.name.lower()].append(obj)
    for (namespace, _), same in groups.items():
        if len(same) < 2:
            continue
        places = " and ".join(_where(repo, o) for o in same)
        for obj in same[1:]:
            yield Finding(
                "unique-name",
                "error",
                display(repo / obj.file),
                obj.object_type,
                obj.name,
                f"{_where(repo, obj)}: {namespace} {obj.name!r} is defined more than once "
                f"in project {repo.name!r}: {places}; one would silently replace the other",
            )


_DUMMY_ENTITY = "__dummy"  # feast.feature_view.DUMMY_ENTITY_NAME: a view without entities


def lint_entity_refs(repo: Path, objects: list[RepoObject]) -> Iterator[Finding]:
    defined = {o.name for o in objects if o.object_type == "entity"}
    for obj in objects:
        if obj.object_type not in _VIEWS:
            continue
        unknown = [
            e for e in obj.spec.get("entities", []) if e not in defined and e != _DUMMY_ENTITY
        ]
        if unknown:
            known = ", ".join(sorted(defined)) or "none"
            yield Finding(
                "entity-ref",
                "error",
                display(repo / obj.file),
                obj.object_type,
                obj.name,
                f"{_where(repo, obj)}: feature view {obj.name!r} uses entities {unknown} that "
                f"the repo does not define (defined: {known}); define each Entity at module "
                "level",
            )


def lint_objects(
    settings: Settings, spec: TenantSpec, repo: Path, objects: list[RepoObject]
) -> Iterator[Finding]:
    offline_root = offline_dir(settings.data_path, spec.feast_project, "").resolve()
    for obj in objects:
        yield from _object_findings(spec, repo, obj, offline_root)


def _object_findings(
    spec: TenantSpec, repo: Path, obj: RepoObject, offline_root: Path
) -> Iterator[Finding]:
    where = display(repo / obj.file)
    subject = f"{_where(repo, obj)}: {_namespace(obj.object_type)} {obj.name!r}"

    def finding(rule: str, severity: Severity, problem: str) -> Finding:
        return Finding(rule, severity, where, obj.object_type, obj.name, f"{subject} {problem}")

    body = obj.spec
    is_view = obj.object_type in _VIEWS
    refused = refusal(body) if obj.object_type == "on_demand_feature_view" else None
    if refused:
        yield finding("unsupported", "warning", f"is not served by the gateway: {refused}")
    unmaterialized = batch_refusal(body) if obj.object_type == "feature_view" else None
    if unmaterialized:
        yield finding("unsupported", "warning", f"is not materialized: {unmaterialized}")
    if (is_view or obj.object_type == "entity") and not _text(body.get("description")):
        yield finding("description", "error", "has no description")
    if is_view or obj.object_type == "entity":
        problem = _owner_problem(spec, body)
        if problem and is_view:
            yield finding("owner", "error", problem)
        elif problem:
            yield finding("entity-owner", "warning", problem)
    if obj.object_type in {"feature_view", "stream_feature_view"} and _ttl_is_zero(body):
        yield finding("ttl", "error", "has no ttl: set ttl=timedelta(...) (not 0)")
    # Not for ODFVs: Feast 0.67 refuses an ODFV whose schema fields have descriptions.
    if is_view and obj.object_type != "on_demand_feature_view":
        join_keys = {c.get("name") for c in body.get("entity_columns", [])}
        bare = [
            f["name"]
            for f in body.get("features", [])
            if f.get("name") not in join_keys and not _text(f.get("description"))
        ]
        if bare:
            yield finding("feature-doc", "warning", f"has features without a description: {bare}")
    if obj.object_type == "feature_service" and not _text(body.get("description")):
        yield finding("service-doc", "warning", "has no description")
    uri = (body.get("file_options") or {}).get("uri")
    if uri and not Path(str(uri)).resolve().is_relative_to(offline_root):
        yield finding(
            "source-path",
            "warning",
            f"reads {uri}, outside {offline_root}: use featureplane.sources.parquet_source "
            "so that it reads what materialization writes",
        )


def _text(value: object) -> str:
    return str(value or "").strip()


def _ttl_is_zero(spec: dict[str, Any]) -> bool:
    return float(str(spec.get("ttl") or "0s").removesuffix("s")) == 0


def _owner_problem(spec: TenantSpec, body: dict[str, Any]) -> str | None:
    """Why the object's owner is not acceptable: it must be an owner email of the tenant, given
    as Feast's ``owner`` field or as ``tags["owner"]`` (both, if both are set)."""
    allowed = ", ".join(o.email for o in spec.owners)
    tags = body.get("tags") or {}
    declared = {_text(v) for v in (body.get("owner"), tags.get("owner")) if _text(v)}
    if not declared:
        return f"has no owner: set owner= (or tags['owner']) to one of {allowed}"
    emails = {o.email.lower() for o in spec.owners}
    foreign = sorted(v for v in declared if v.lower() not in emails)
    if foreign:
        return (
            f"has owner {', '.join(foreign)}, not an owner of tenant {spec.name!r} "
            f"(tenants/{spec.name}/tenant.yaml owners: {allowed})"
        )
    return None
