"""A tenant's transform worker, forked by the zygote (:mod:`featureplane.transform.zygote`).

It is the only place a tenant's on-demand feature views are unpickled and run. It has an empty
environment (no registry URL, Redis URL, pepper or token) and holds no connection to anything
but the socket to its gateway process: it reads calls on stdin and answers on what was stdout
(both that socket). Before it loads any tenant code it caps its own address space
(``RLIMIT_AS``: what it maps at the fork plus the tenant's budget), turns off core dumps, asks
to die with the gateway and lowers its CPU priority (further for a tenant whose workers have
failed), so a runaway transformation slows its own tenant first. The computation is Feast's:
Feast's steps (:mod:`featureplane.transform.compute`), with Feast's whole path
(``_augment_response_with_on_demand_transforms``) for what those do not cover — so values
equal stock Feast's.
"""

from __future__ import annotations

import os
import sys
import traceback
from types import SimpleNamespace
from typing import IO, Any

from featureplane.confine import die_with_parent, limit_address_space
from featureplane.transform.compute import compute
from featureplane.transform.protocol import (
    ERROR,
    HEADER,
    OUTPUT,
    READY,
    FrameTransform,
    TransformCall,
    WorkerLoad,
    decode_request,
    frame,
)


def _mapped_bytes() -> int:
    """What the fork maps already (Feast, pandas, pyarrow): the tenant's budget is on top."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the budget alone
        return 0


def _seal(memory_mb: int, nice: int) -> IO[bytes]:
    """Limits first, then the reply channel: a ``print`` in tenant code goes to stderr, never
    into the protocol."""
    limit_address_space(_mapped_bytes() + memory_mb * 2**20)
    die_with_parent()  # the zygote; it dies with the gateway process
    if os.getppid() == 1:  # the gateway died before the request to die with it was made
        sys.exit(0)
    os.nice(nice)
    replies = os.fdopen(os.dup(1), "wb")  # buffered: it finishes partial writes on a socket
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return replies


def _read(stream: IO[bytes]) -> bytes | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return stream.read(size)


def _load(message: WorkerLoad) -> dict[str, Any]:
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.protos.feast.core.OnDemandFeatureView_pb2 import OnDemandFeatureView as Proto

    if message.repo and message.repo not in sys.path:
        sys.path.append(message.repo)
    views = {}
    for raw in message.views:
        proto = Proto.FromString(raw)
        try:
            views[proto.spec.name] = OnDemandFeatureView.from_proto(proto)
        except Exception as exc:
            raise RuntimeError(f"on-demand feature view {proto.spec.name!r}: {exc}") from exc
    return views


def _compute(views: dict[str, Any], call: TransformCall) -> bytes:
    """The call's answer; a singleton ODFV row by row (Feast 0.67 computes only the first row of
    a singleton view and answers a one-value column for any number of entity rows)."""
    rows = len(call.columns[0].values) if call.columns else 0
    if rows <= 1 or not any(views[name].singleton for name in call.views):
        answer: bytes = _transform(views, call).SerializeToString()
        return answer
    parts = [
        _transform(views, call._replace(columns=tuple(
            c._replace(values=c.values[i : i + 1]) for c in call.columns
        )))
        for i in range(rows)
    ]  # fmt: skip
    merged = parts[0]
    for part in parts[1:]:
        for vector, more in zip(merged.results, part.results, strict=True):
            vector.values.extend(more.values)
            vector.statuses.extend(more.statuses)
            vector.event_timestamps.extend(more.event_timestamps)
    answer = merged.SerializeToString()
    return answer


def _transform(views: dict[str, Any], call: TransformCall) -> Any:
    computed = compute(views, call)
    return computed if computed is not None else _feast_transform(views, call)


def _feast_transform(views: dict[str, Any], call: TransformCall) -> Any:
    """Feast's whole path: the response it builds before it transforms, then its own
    ``_augment_response_with_on_demand_transforms``."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.utils import _augment_response_with_on_demand_transforms
    from feast.value_type import ValueType
    from google.protobuf.timestamp_pb2 import Timestamp

    response = GetOnlineFeaturesResponse(results=[])
    epoch = Timestamp()
    for column in call.columns:
        if column.kind == "feature":
            values = [Value() if v is None else Value.FromString(v) for v in column.values]
        else:
            values = python_values_to_proto_values(column.values, ValueType(column.value_type))
        response.metadata.feature_names.val.append(column.name)
        response.results.append(
            GetOnlineFeaturesResponse.FeatureVector(
                values=values,
                statuses=[FieldStatus.PRESENT] * len(values),
                event_timestamps=[epoch] * len(values),
            )
        )
    inputs = len(call.columns)
    requested = [views[name] for name in call.views]
    _augment_response_with_on_demand_transforms(
        response, list(call.feature_refs), requested, call.full_feature_names
    )
    out = GetOnlineFeaturesResponse()
    out.metadata.feature_names.val.extend(response.metadata.feature_names.val[inputs:])
    out.results.extend(response.results[inputs:])
    return out


# The functions whose loop over the requested views binds ``odfv_name``.
_VIEW_LOOPS = {
    ("feast.utils", "_augment_response_with_on_demand_transforms"),
    ("featureplane.transform.compute", "compute"),
}


def _failing_view(exc: BaseException) -> str | None:
    """The ODFV Feast was computing when ``exc`` was raised (its loop variable)."""
    for tb_frame, _ in traceback.walk_tb(exc.__traceback__):
        where = (tb_frame.f_globals.get("__name__"), tb_frame.f_code.co_name)
        if where in _VIEW_LOOPS:
            name = tb_frame.f_locals.get("odfv_name")
            return name if isinstance(name, str) else None
    return None


def _failure(exc: BaseException, view: str | None = None) -> bytes:
    view = view or _failing_view(exc)
    subject = f"on-demand feature view {view!r}" if view else "the transformation"
    if isinstance(exc, MemoryError):
        text = f"{subject} ran out of memory (the tenant's transforms.memory_mb limit)"
    else:
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" (line {last[0].lineno} of {last[0].name})" if last else ""
        text = f"{subject} raised {type(exc).__name__}: {exc}{where}"
    return ERROR + text[:1000].encode()


def main(argv: list[str]) -> int:
    replies = _seal(int(argv[0]), int(argv[1]))
    stdin = sys.stdin.buffer
    payload = _read(stdin)
    if payload is None:
        return 0
    load = decode_request(payload)
    if not isinstance(load, WorkerLoad):
        return 1
    try:
        views = _load(load)
    except Exception as exc:  # reported to the gateway, then exit
        replies.write(frame(ERROR + f"cannot load: {exc}"[:1000].encode()))
        replies.flush()
        return 1
    replies.write(frame(READY))
    replies.flush()
    while (payload := _read(stdin)) is not None:
        message = decode_request(payload)
        if isinstance(message, WorkerLoad):
            return 1
        if isinstance(message, FrameTransform):
            replies.write(frame(_stored(views, message)))
        else:
            replies.write(frame(b"".join(frame(_answer(views, call)) for call in message)))
        replies.flush()
    return 0


class _Entities:
    """What Feast's offline transformation asks its ``FeatureStore`` for: entities' join keys."""

    def __init__(self, join_keys: dict[str, str]) -> None:
        self._join_keys = join_keys

    def get_entity(self, name: str) -> Any:
        return SimpleNamespace(join_key=self._join_keys[name])


def _stored(views: dict[str, Any], message: FrameTransform) -> bytes:
    """A stored view computed over its source rows as Feast's materialization computes it
    (``FeatureStore._transform_on_demand_feature_view_df``), as an Arrow IPC stream."""
    import pyarrow as pa
    from feast import FeatureStore

    try:
        view, store = views[message.view], _Entities(message.join_keys)
        transform = FeatureStore._transform_on_demand_feature_view_df
        frame_ = transform(store, view, message.frame)
        # Feast's write path (write_to_online_store) transforms what it is given once more.
        frame_ = transform(store, view, frame_)
        table = pa.Table.from_pandas(frame_, preserve_index=False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        stream: bytes = sink.getvalue().to_pybytes()
    except Exception as exc:
        return _failure(exc, message.view)
    return OUTPUT + stream


def _answer(views: dict[str, Any], call: TransformCall) -> bytes:
    try:
        return OUTPUT + _compute(views, call)
    except Exception as exc:  # MemoryError too: the worker survives a refused allocation
        return _failure(exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
