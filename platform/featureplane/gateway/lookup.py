"""Answering one get-online-features request: validate and plan (:func:`prepare`), one
pipelined read (the caller's, so it can add its own commands), decode (``answer``).

The answer equals Feast SDK ``get_online_features`` value for value. Two deliberate differences
in statuses: an entity absent from the store is ``NOT_FOUND`` (Feast's Redis path says
``PRESENT`` with null values and a 1970 timestamp), and a stored null is ``NULL_VALUE``. A view
whose owner turned on ``serving.ttl_check`` answers a row older than the view's ttl as null with
``OUTSIDE_MAX_AGE`` and its event time (Feast's Redis path does not check ttl).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

from featureplane.errors import BadRequestError, TransformFailedError
from featureplane.gateway.plans import ReadPlans, TransformRead, ViewRead
from featureplane.gateway.quotas import too_large
from featureplane.gateway.reader import HashRead
from featureplane.online import codec
from featureplane.tenancy.spec import TenantSpec
from featureplane.transform.protocol import Column, TransformCall

PRESENT, NULL_VALUE, NOT_FOUND = "PRESENT", "NULL_VALUE", "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
# What ``answer`` counts for the status metric: (feature view, status, entity rows).
Tally = list[tuple[str, str, int]]


class FeatureRequest(NamedTuple):
    """A get-online-features request as :func:`prepare` needs it (see models.py for the wire
    model; a NamedTuple because building a pydantic model per request costs more)."""

    entities: dict[str, list[Any]]
    features: list[str]
    feature_service: str | None = None
    project: str | None = None
    full_feature_names: bool = False


def _output_names(reads: Sequence[ViewRead | TransformRead], full_feature_names: bool) -> list[str]:
    names = [f"{r.prefix}__{f}" if full_feature_names else f for r in reads for f in r.features]
    if len(set(names)) == len(names):
        return names
    collided = sorted(n for n, count in Counter(names).items() if count > 1)
    if collided:
        hint = "" if full_feature_names else "; set full_feature_names to tell them apart"
        raise BadRequestError(
            f"feature names requested more than once: {', '.join(collided)}{hint}"
        )
    return names


def _entity_columns(
    reads: Sequence[ViewRead],
    entities: dict[str, list[Any]],
    tenant: TenantSpec,
    request_fields: Sequence[str] = (),
) -> tuple[list[str], int, dict[str, list[Any]], dict[tuple[str, int], list[bytes]]]:
    """Join keys in request order, the row count, echoed values and key bytes per join key and
    key type (a label view may type a join key as a string where a feature view has an int).
    ``request_fields`` (of on-demand views) count as columns too: they must be present and as
    long as the rest."""
    types: dict[str, list[int]] = {}  # the first is the one echoed
    needed_by: dict[str, str] = {}
    for r in reads:
        for join_key in r.plan.join_keys:
            typed = types.setdefault(join_key, [])
            if r.plan.key_types[join_key] not in typed:
                typed.append(r.plan.key_types[join_key])
            needed_by.setdefault(join_key, r.plan.name)
    missing = [k for k in needed_by if k not in entities]
    if missing:
        detail = ", ".join(f"{k!r} (feature view {needed_by[k]!r})" for k in missing)
        got = ", ".join(repr(k) for k in entities) or "none"
        raise BadRequestError(f"missing join key values for {detail}; the request has {got}")
    absent = [f for f in request_fields if f not in entities]
    if absent:
        raise BadRequestError(
            f"missing request data {', '.join(map(repr, absent))} in 'entities' (on-demand "
            "feature views need it)"
        )
    join_keys = [k for k in entities if k in needed_by]
    columns = join_keys + [f for f in request_fields if f not in needed_by]
    lengths = {len(entities[k]) for k in columns}
    if len(lengths) != 1:
        sizes = ", ".join(f"{k}={len(entities[k])}" for k in columns)
        raise BadRequestError(f"every join key needs the same number of values ({sizes})")
    rows = lengths.pop()
    if rows == 0:
        raise BadRequestError("entities hold no values: send at least one entity row")
    limit = tenant.quotas.max_entities_per_request
    if rows > limit:
        raise too_large(
            tenant.name,
            "max_entities_per_request",
            limit,
            f"{rows} entity rows; the limit is {limit}",
        )
    echoed: dict[str, list[Any]] = {}
    key_bytes: dict[tuple[str, int], list[bytes]] = {}
    for join_key in join_keys:
        for value_type in types[join_key]:
            coerced = [codec.coerce_key_value(join_key, value_type, v) for v in entities[join_key]]
            echoed.setdefault(join_key, [c[0] for c in coerced])
            key_bytes[join_key, value_type] = [c[1] for c in coerced]
    return join_keys, rows, echoed, key_bytes


@dataclass(frozen=True)
class Computation:
    """On-demand feature views of one project to compute for a request, by its owner's workers."""

    project: str
    call: TransformCall
    expected: Mapping[str, str]  # the output names the answer may contain -> their view
    label: str  # names the views, for errors


@dataclass(frozen=True)
class PreparedLookup:
    """A validated request: the reads to send, and how to turn their replies into the answer."""

    commands: list[HashRead]
    reads: Sequence[ViewRead]  # answered first, then the inputs of on-demand views
    answered: int  # how many of ``reads`` the answer shows
    slots: list[list[int]]  # per read: the command index of each entity row
    names: list[str]
    join_keys: list[str]
    echoed: dict[str, list[Any]]
    rows: int
    transforms: Sequence[TransformRead] = ()
    request_data: dict[str, list[Any]] = field(default_factory=dict)
    key_types: dict[str, int] = field(default_factory=dict)
    full_feature_names: bool = False

    def computations(self, replies: Sequence[Sequence[bytes | None]]) -> list[Computation]:
        """The transform calls of this request, one per project, with the stored inputs (as
        Feast would have them in its response before transforming) taken from ``replies``."""
        by_project: dict[str, list[tuple[TransformRead, list[Column]]]] = {}
        inputs = iter(zip(self.reads[self.answered :], self.slots[self.answered :], strict=True))
        for t in self.transforms:
            columns = []
            for _ in t.plan.sources:
                r, row_slots = next(inputs)
                hashes = [replies[slot] for slot in row_slots]
                # A checked view's stale rows reach the transformation as null, as answered.
                live = _live(hashes, len(r.features), r.plan.max_age) if r.plan.max_age else None
                for j, feature in enumerate(r.features):
                    name = f"{r.prefix}__{feature}" if self.full_feature_names else feature
                    values = [h[j] for h in hashes]
                    if live is not None:
                        values = [v if ok else None for v, ok in zip(values, live, strict=True)]
                    columns.append(Column(name, "feature", values, 0))
            by_project.setdefault(t.plan.project, []).append((t, columns))
        computations = []
        for project, parts in by_project.items():
            columns = [
                Column(k, "value", self.echoed[k], self.key_types[k]) for k in self.join_keys
            ]
            fields = {f for t, _ in parts for f in t.plan.request_fields}
            columns += [
                Column(f, "value", v, 0) for f, v in self.request_data.items() if f in fields
            ]
            seen = {c.name for c in columns}
            for _, features in parts:
                for column in features:
                    if column.name not in seen:
                        seen.add(column.name)
                        columns.append(column)
            views = tuple(t.plan.name for t, _ in parts)
            refs = tuple(f"{t.plan.name}:{f}" for t, _ in parts for f in t.features)
            call = TransformCall(views, refs, self.full_feature_names, tuple(columns))
            names = _output_names([t for t, _ in parts], self.full_feature_names)
            owners = [t.plan.name for t, _ in parts for _ in t.features]
            expected = dict(zip(names, owners, strict=True))
            label = ", ".join(f"on-demand feature view {v!r}" for v in views)
            computations.append(Computation(project, call, expected, label))
        return computations

    def answer(
        self,
        replies: Sequence[Sequence[bytes | None]],
        computed: Sequence[tuple[Computation, GetOnlineFeaturesResponse]] = (),
        tally: Tally | None = None,
    ) -> dict[str, Any]:
        """The answer. ``tally`` receives the entity rows of each answered view by status: a
        row's status is its worst value's (NOT_FOUND, OUTSIDE_MAX_AGE, then NULL_VALUE if any
        requested feature is null), else PRESENT."""
        rows = self.rows
        results: list[dict[str, Any]] = [
            {
                "values": self.echoed[k],
                "statuses": [PRESENT] * rows,
                "event_timestamps": [codec.EPOCH] * rows,
            }
            for k in self.join_keys
        ]
        reads = zip(self.reads[: self.answered], self.slots[: self.answered], strict=True)
        for r, row_slots in reads:
            n = len(r.features)
            hashes = [replies[slot] for slot in row_slots]
            # A row is found when the view's event time is stored; its values may be null. A
            # stale row of a view that checks its ttl shows its event time, and no values.
            stamps = [codec.EPOCH if h[n] is None else codec.timestamp_text(h[n]) for h in hashes]
            found = [h[n] is not None for h in hashes]
            live = _live(hashes, n, r.plan.max_age) if r.plan.max_age else found
            everywhere = all(live)
            if not everywhere:
                absent = [OUTSIDE_MAX_AGE if f else NOT_FOUND for f in found]
            nullable: list[list[str]] = []  # the status columns that hold a NULL_VALUE
            types = r.plan.value_types
            for j, feature in enumerate(r.features):
                if rows == 1:  # the column machinery only pays off for several rows
                    values = [codec.decode_value(hashes[0][j])]
                else:
                    values = codec.decode_column([h[j] for h in hashes], types[feature])
                if everywhere:
                    if None in values:
                        statuses = [NULL_VALUE if v is None else PRESENT for v in values]
                        nullable.append(statuses)
                    else:
                        statuses = [PRESENT] * rows
                else:
                    values = [v if ok else None for v, ok in zip(values, live, strict=True)]
                    statuses = [
                        (NULL_VALUE if v is None else PRESENT) if ok else why
                        for v, ok, why in zip(values, live, absent, strict=True)
                    ]
                    if NULL_VALUE in statuses:
                        nullable.append(statuses)
                results.append({"values": values, "statuses": statuses, "event_timestamps": stamps})
            if tally is not None:
                answered = rows
                if not everywhere:
                    answered = live.count(True)
                    held = found.count(True)
                    _count(tally, r.plan.name, NOT_FOUND, rows - held)
                    _count(tally, r.plan.name, OUTSIDE_MAX_AGE, held - answered)
                nulls = _null_rows(nullable)
                _count(tally, r.plan.name, NULL_VALUE, nulls)
                _count(tally, r.plan.name, PRESENT, answered - nulls)
        names = self.names[: sum(len(r.features) for r in self.reads[: self.answered])]
        for computation, response in computed:
            names += _computed(computation, response, rows, results, tally)
        return {"metadata": {"feature_names": self.join_keys + names}, "results": results}


def _live(hashes: Sequence[Sequence[bytes | None]], n: int, max_age: int) -> list[bool]:
    """Which rows hold an event time (field ``n``) at most ``max_age`` seconds old: Feast's own
    check, stale when now - event time > ttl, nanoseconds included."""
    oldest, seconds = time.time() - max_age, codec.timestamp_seconds
    return [(raw := h[n]) is not None and seconds(raw) >= oldest for h in hashes]


def _null_rows(columns: list[list[str]]) -> int:
    """The rows with a NULL_VALUE in any of ``columns``, one view's status columns."""
    if not columns:
        return 0
    if len(columns) == 1:
        return columns[0].count(NULL_VALUE)
    return sum(NULL_VALUE in row for row in zip(*columns, strict=True))


def _count(tally: Tally, view: str, status: str, rows: int) -> None:
    if rows:
        tally.append((view, status, rows))


def _computed(
    computation: Computation,
    response: GetOnlineFeaturesResponse,
    rows: int,
    results: list[dict[str, Any]],
    tally: Tally | None = None,
) -> list[str]:
    """Adds a worker's answer to ``results``, in Feast's order (the UDF's), after checking it:
    a worker runs tenant code, so its answer is data to verify, not to trust. On-demand views
    have no ttl: their rows are PRESENT or NULL_VALUE."""
    names = list(response.metadata.feature_names.val)
    wrong = [n for n in names if n not in computation.expected]
    if wrong or len(set(names)) != len(names) or len(response.results) != len(names):
        raise TransformFailedError(
            f"{computation.label}: the transformation answered features that were not "
            f"requested ({', '.join(map(repr, wrong)) or 'duplicates'})"
        )
    nullable: dict[str, list[list[str]]] = {}  # per view, the status columns with NULL_VALUE
    for name, vector in zip(names, response.results, strict=True):
        if len(vector.values) != rows:
            raise TransformFailedError(
                f"{computation.label}: the transformation answered {len(vector.values)} rows "
                f"for {rows} entity rows"
            )
        values = [codec.native(v) for v in vector.values]
        columns = nullable.setdefault(computation.expected[name], [])
        if None in values:
            statuses = [NULL_VALUE if v is None else PRESENT for v in values]
            columns.append(statuses)
        else:
            statuses = [PRESENT] * rows
        results.append(
            {"values": values, "statuses": statuses, "event_timestamps": [codec.EPOCH] * rows}
        )
    if tally is not None:
        for view, columns in nullable.items():
            nulls = _null_rows(columns)
            _count(tally, view, NULL_VALUE, nulls)
            _count(tally, view, PRESENT, rows - nulls)
    return names


def prepare(plans: ReadPlans, tenant: TenantSpec, request: FeatureRequest) -> PreparedLookup:
    """Check the request against the read plans, the grants and the size quotas; plan its reads."""
    limit = tenant.quotas.max_features_per_request
    if len(request.features) > limit:
        raise too_large(
            tenant.name, "max_features_per_request", limit,
            f"{len(request.features)} features; the limit is {limit}",
        )  # fmt: skip
    resolution = plans.resolve(tenant, request.features, request.feature_service, request.project)
    answered: list[ViewRead | TransformRead] = [*resolution.reads, *resolution.transforms]
    requested = sum(len(r.features) for r in answered)
    if requested > limit:  # a feature service can name more than the limit
        raise too_large(
            tenant.name,
            "max_features_per_request",
            limit,
            f"{requested} features; the limit is {limit}",
        )
    names = _output_names(answered, request.full_feature_names)
    reads = [*resolution.reads, *resolution.inputs]
    request_fields = [f for t in resolution.transforms for f in t.plan.request_fields]
    join_keys, rows, echoed, key_bytes = _entity_columns(
        reads, request.entities, tenant, request_fields
    )

    # One HMGET per distinct (view, entity key), all sent in one pipeline.
    commands: list[HashRead] = []
    slots: list[list[int]] = []
    for r in reads:
        plan = r.plan
        fields = [plan.fields[f] for f in r.features]
        fields.append(plan.ts_field)
        seen: dict[bytes, int] = {}
        row_slots = []
        columns = [key_bytes[k, plan.key_types[k]] for k in plan.join_keys]
        for i in range(rows):
            key = plan.key_prefix + b"".join(c[i] for c in columns) + plan.key_suffix
            slot = seen.get(key)
            if slot is None:
                slot = seen[key] = len(commands)
                commands.append((key, fields))
            row_slots.append(slot)
        slots.append(row_slots)
    if not resolution.transforms:
        return PreparedLookup(commands, reads, len(reads), slots, names, join_keys, echoed, rows)
    key_types = {k: t for r in reads for k, t in r.plan.key_types.items()}
    request_data = {k: v for k, v in request.entities.items() if k in request_fields}
    return PreparedLookup(
        commands,
        reads,
        len(resolution.reads),
        slots,
        names,
        join_keys,
        echoed,
        rows,
        resolution.transforms,
        request_data,
        key_types,
        request.full_feature_names,
    )
