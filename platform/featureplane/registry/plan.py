"""A tenant's plan: Feast's changes to its project, each classified safe or breaking.

Feast computes which objects it would create, delete or update (:mod:`.feast_plan`; it also
classifies nothing, feast issue #2728). Here each update is broken down into the fields that
changed, as dotted paths into the object's protobuf spec (snake_case; ``features``,
``entity_columns`` and feature-service projections keyed by name, e.g.
``features.price.value_type``), and every change gets a classification and a reason:

==================  ======================================================  =========
object              change                                                  class
==================  ======================================================  =========
any                 created; description, owner or tags changed             safe
feature view        deleted                                                 breaking
feature view        feature added / feature description or tags changed     safe
feature view        feature removed; feature ``value_type`` changed         breaking
feature view        ``entities`` or ``entity_columns`` (join keys) changed  breaking
feature view        ``batch_source`` or ``stream_source`` changed           breaking
feature view        ``ttl`` grown (or set to 0 = never expire)              safe
feature view        ``ttl`` shrunk, or set where it was 0                   breaking
feature view        ``online``/``offline`` turned on / off                  safe / breaking
entity              deleted; ``join_key`` or ``value_type`` changed         breaking
feature service     deleted; a view or feature removed from it              breaking
feature service     a view or feature added; ``logging_config`` changed     safe
data source         deleted (its views are classified on their own)         safe
data source         any other field (path, table, query, timestamp, ...)    breaking
any                 a field no rule above knows                             breaking
==================  ======================================================  =========

Unknown changes are breaking on purpose: the gate only waves through what is known to be safe.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from featureplane.errors import PlanError
from featureplane.registry.feast_plan import FeastPlan, ObjectDiff, decode
from featureplane.registry.lint import Finding, lint_repo
from featureplane.registry.sandbox import run_sandboxed
from featureplane.registry.staging import stage
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

Classification = Literal["safe", "breaking"]
Kind = Literal["added", "removed", "changed"]

VIEW_TYPES = frozenset({"feature_view", "stream_feature_view", "on_demand_feature_view"})
# Repeated message fields compared element by element, keyed by this field of each element
# (a feature service's ``features`` are projections, keyed by the view they project).
_KEYED = {
    "features": "name",
    "entity_columns": "name",
    "feature_columns": "name",
}
_KEYED_IN_SERVICE = {"features": "feature_view_name", "feature_columns": "name"}
_METADATA = re.compile(r"(^|\.)(description|owner|tags(\.[^.]+)?)$")
_META = re.compile(r"(^|\.)meta(\.|$)")


@dataclass(frozen=True)
class Change:
    """One classified change; ``field`` is None when the whole object is added or removed."""

    kind: Kind
    object_type: str
    name: str
    field: str | None
    before: Any
    after: Any
    classification: Classification
    reason: str

    @property
    def breaking(self) -> bool:
        return self.classification == "breaking"


@dataclass(frozen=True)
class Plan:
    tenant: str
    project: str
    changes: list[Change]
    lint: list[Finding] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        return any(c.breaking for c in self.changes)

    @property
    def breaking_changes(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def lint_errors(self) -> list[Finding]:
        return [f for f in self.lint if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        """The documented `featureplane plan --json` document (docs/ci.md)."""
        return {
            "tenant": self.tenant,
            "project": self.project,
            "changes": [asdict(c) for c in self.changes],
            "breaking": self.breaking,
            "lint": [asdict(f) for f in self.lint],
        }


def plan_tenant(settings: Settings, spec: TenantSpec) -> Plan:
    """Lint the tenant's repo and classify Feast's plan for its project."""
    feast_plan = run_feast_plan(settings, spec)
    return build_plan(settings, spec, feast_plan)


def run_feast_plan(settings: Settings, spec: TenantSpec) -> FeastPlan:
    """Feast's plan of ``feature_repo/<tenant>`` against the tenant's project in the registry
    (read, never written: only ``SELECT`` on its tables)."""
    repo = settings.feature_repo_path / spec.name
    if not repo.is_dir():
        raise PlanError(f"{repo}: no Feast definitions for tenant {spec.name!r}")
    with tempfile.TemporaryDirectory(prefix=f"featureplane-plan-{spec.name}-") as folder:
        staged = Path(folder) / "registry.db"
        stage(settings, spec.feast_project, staged)
        finished = run_sandboxed(settings, spec, "plan", staged, PlanError)
    try:
        return decode(finished.document)
    except (KeyError, TypeError) as exc:
        raise PlanError(f"feast plan for tenant {spec.name!r} ({repo}) printed no plan") from exc


def build_plan(settings: Settings, spec: TenantSpec, feast_plan: FeastPlan) -> Plan:
    changes = [change for diff in feast_plan.diffs for change in classify(diff)]
    changes.sort(key=_order)  # Feast's diff comes out of sets; CI output must be stable
    lint = lint_repo(settings, spec, feast_plan)
    return Plan(spec.name, feast_plan.project, changes, lint)


# -- classification ---------------------------------------------------------------------------


def classify(diff: ObjectDiff) -> list[Change]:
    """The classified changes one object diff from Feast amounts to."""
    object_type, name = diff.object_type, diff.name
    if diff.transition == "create":
        reason = f"new {_label(object_type)}"
        return [Change("added", object_type, name, None, None, None, "safe", reason)]
    if diff.transition == "delete":
        if object_type == "data_source":
            reason = "unused by the repo's views; a view that read it is classified on its own"
            return [Change("removed", object_type, name, None, None, None, "safe", reason)]
        reason = _DELETED.get(object_type, f"{_label(object_type)} deleted")
        return [Change("removed", object_type, name, None, None, None, "breaking", reason)]
    keyed = _KEYED_IN_SERVICE if object_type == "feature_service" else _KEYED
    before = _flatten(diff.before or {}, keyed)
    after = _flatten(diff.after or {}, keyed)
    return list(_field_changes(object_type, name, before, after))


_TYPE_ORDER = [
    "project", "data_source", "entity", "feature_view", "on_demand_feature_view",
    "stream_feature_view", "feature_service",
]  # fmt: skip


def _order(change: Change) -> tuple[int, str, str]:
    known = change.object_type in _TYPE_ORDER
    rank = _TYPE_ORDER.index(change.object_type) if known else len(_TYPE_ORDER)
    return rank, change.name, change.field or ""


_DELETED = {
    "feature_view": "feature view deleted: requests for it fail; Feast drops its online data",
    "stream_feature_view": "view deleted: requests for it fail; Feast drops its online data",
    "on_demand_feature_view": "view deleted: requests for it fail",
    "entity": "entity deleted: lookups by its join key fail",
    "feature_service": "feature service deleted: clients requesting it fail",
    "permission": "permission deleted: access changes",
}


def _label(object_type: str) -> str:
    return object_type.replace("_", " ")


def _flatten(spec: dict[str, Any], keyed: dict[str, str], prefix: str = "") -> dict[str, Any]:
    """Leaf values by dotted path. Keyed repeated fields become ``<field>.<key>`` entries, with
    the entry itself at that path (``...`` marks it) so additions and removals show as one."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        path = f"{prefix}{key}"
        if _META.search(path):
            continue
        if key in keyed and isinstance(value, list):
            for item in value:
                item_path = f"{path}.{item.get(keyed[key], '?')}"
                flat[item_path] = ...
                rest = {k: v for k, v in item.items() if k != keyed[key]}
                flat.update(_flatten(rest, keyed, f"{item_path}."))
        elif isinstance(value, dict) and value:
            flat.update(_flatten(value, keyed, f"{path}."))
        else:
            flat[path] = value
    return flat


def _field_changes(
    object_type: str, name: str, before: dict[str, Any], after: dict[str, Any]
) -> Iterator[Change]:
    units = {p for p, v in (before | after).items() if v is ...}
    gone_or_new = {p for p in units if (p in before) != (p in after)}
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old == new or any(path.startswith(f"{unit}.") for unit in gone_or_new):
            continue  # unchanged, or inside an element reported as added or removed
        if path in gone_or_new:
            kind: Kind = "added" if path in after else "removed"
            value = _describe_element(after if path in after else before, path)
            classification, reason = _element_rule(object_type, path, kind)
            yield Change(
                kind,
                object_type,
                name,
                path,
                None if kind == "added" else value,
                value if kind == "added" else None,
                classification,
                reason,
            )
            continue
        verdict = _field_rule(object_type, path, old, new)
        if verdict is None:
            continue
        yield Change("changed", object_type, name, path, old, new, *verdict)


def _describe_element(flat: dict[str, Any], path: str) -> Any:
    """What an added or removed element was: a feature's type, a projection's features."""
    if f"{path}.value_type" in flat:
        return flat[f"{path}.value_type"]
    prefix = f"{path}.feature_columns."
    columns = [p.removeprefix(prefix) for p, v in flat.items() if p.startswith(prefix)]
    return sorted(c for c in columns if "." not in c) or None


def _element_rule(object_type: str, path: str, kind: Kind) -> tuple[Classification, str]:
    top = path.split(".", 1)[0]
    if top == "entity_columns":
        return "breaking", "join keys of the view changed: lookups by the old keys break"
    if object_type == "feature_service":
        what = "feature" if ".feature_columns." in path else "feature view"
        if kind == "added":
            return "safe", f"{what} added to the service"
        return "breaking", f"{what} removed from the service: its consumers lose it"
    if kind == "added":
        return "safe", "new feature"
    return "breaking", "feature removed: requests naming it fail"


# A rule gets the old and new value and the field's path; None drops the change.
_Rule = Callable[[Any, Any, str], tuple[Classification, str] | None]


def _ttl_seconds(value: Any) -> float:
    return float(str(value).removesuffix("s")) if value else 0.0


def _ttl_rule(old: Any, new: Any, path: str) -> tuple[Classification, str]:
    before, after = _ttl_seconds(old), _ttl_seconds(new)
    if after == 0:
        return "safe", "ttl removed: rows never expire"
    if before == 0:
        return "breaking", f"ttl newly set to {_span(after)}: older rows stop being served"
    if after > before:
        return "safe", "ttl grown"
    return "breaking", f"ttl shrunk to {_span(after)}: rows older than that stop being served"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _switch_rule(what: str) -> _Rule:
    def rule(old: Any, new: Any, path: str) -> tuple[Classification, str]:
        if new:
            return "safe", f"{what} turned on"
        return "breaking", f"{what} turned off: readers of it break"

    return rule


def _breaking(reason: str) -> _Rule:
    return lambda old, new, path: ("breaking", reason)


def _source_rule(old: Any, new: Any, path: str) -> tuple[Classification, str]:
    field = path.rsplit(".", 1)[-1]
    if field in {"uri", "path", "table", "query", "name"}:
        return "breaking", f"batch source changed ({field}): the view reads other data"
    if field == "timestamp_field":
        return "breaking", "event timestamp column changed: point-in-time results shift"
    return "breaking", f"batch source changed ({field}): the view reads data differently"


_DERIVED = re.compile(r"^features\.[^.]+\.(feature_columns|batch_source)\.")
_RULES: list[tuple[frozenset[str] | None, re.Pattern[str], _Rule]] = [
    # A service's projections copy their view's columns and source; the view reports those.
    (frozenset({"feature_service"}), _DERIVED, lambda old, new, path: None),
    (None, _METADATA, lambda old, new, path: ("safe", "metadata only")),
    (VIEW_TYPES, re.compile(r"^ttl$"), _ttl_rule),
    (VIEW_TYPES, re.compile(r"^online$"), _switch_rule("online serving")),
    (VIEW_TYPES, re.compile(r"^offline$"), _switch_rule("offline retrieval")),
    (VIEW_TYPES, re.compile(r"^features\.[^.]+\.value_type$"), _breaking("feature dtype changed")),
    (VIEW_TYPES, re.compile(r"^(entities|entity_columns)(\.|$)"),
     _breaking("the view's entities or join keys changed: lookups by the old keys break")),
    (VIEW_TYPES, re.compile(r"^batch_source\."), _source_rule),
    (VIEW_TYPES, re.compile(r"^stream_source\."), _breaking("stream source changed")),
    (frozenset({"entity"}), re.compile(r"^join_key$"),
     _breaking("entity join key changed: every view keyed by it changes its keys")),
    (frozenset({"entity"}), re.compile(r"^value_type$"),
     _breaking("entity value type changed: stored keys no longer match lookups")),
    (frozenset({"feature_service"}), re.compile(r"^logging_config(\.|$)"),
     lambda old, new, path: ("safe", "logging configuration only")),
    (frozenset({"data_source"}), re.compile(r""), _source_rule),
]  # fmt: skip


def _field_rule(
    object_type: str, path: str, old: Any, new: Any
) -> tuple[Classification, str] | None:
    """The first matching rule's verdict; None drops the change (reported elsewhere)."""
    for types, pattern, rule in _RULES:
        if (types is None or object_type in types) and pattern.search(path):
            return rule(old, new, path)
    return "breaking", "no rule knows this change to be safe: review it"
