"""The wire between the gateway and a tenant's transform worker: length-prefixed frames on pipes.

The gateway trusts what it sends, so a message is pickled: a :class:`WorkerLoad` once, then
batches of :class:`TransformCall` (the calls that were waiting when the worker became free), or
for materialization :class:`FrameTransform` (answered with one Arrow IPC frame).
The worker runs tenant code, so nothing it sends back is ever unpickled: it answers a batch
with one frame holding a frame per call, each one tag byte, then either Feast's own
``GetOnlineFeaturesResponse`` message (the computed feature names and values, parsed by
protobuf) or a UTF-8 error line.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, NamedTuple

HEADER = struct.Struct(">I")
MAX_REPLY_BYTES = 64 * 2**20  # a worker answering more than this is broken or hostile

READY, OUTPUT, ERROR = b"R", b"O", b"E"


class Column(NamedTuple):
    """One input column of a transformation, as Feast puts it in the response before the
    transformation runs: a join key, a request field, or a source view's feature."""

    name: str
    kind: str  # "value" (join keys, request data: Python values) | "feature" (stored bytes)
    values: list[Any]  # Python values, or serialized ValueProtos (None where absent)
    value_type: (
        int  # Feast ValueType of "value" columns (0: inferred, as Feast does for request data)
    )


class TransformCall(NamedTuple):
    """On-demand feature views to compute for one request."""

    views: tuple[str, ...]  # the ODFVs requested, by name
    feature_refs: tuple[str, ...]  # "odfv:feature" for every ODFV feature requested
    full_feature_names: bool
    columns: tuple[Column, ...]


class FrameTransform(NamedTuple):
    """A stored on-demand view (``write_to_online_store=True``) computed over a frame of its
    source's rows, for materialization; answered with the output frame as an Arrow IPC stream
    (parsed by pyarrow, never unpickled)."""

    view: str
    join_keys: dict[str, str]  # the view's entities by name -> their join keys
    frame: Any  # pandas.DataFrame: the join keys, event timestamp and source features


class WorkerLoad(NamedTuple):
    """What a worker loads once at start: the tenant's ODFVs as registry protos."""

    project: str
    repo: str | None  # the tenant's repo folder, for UDFs that import its modules
    views: tuple[bytes, ...]  # serialized OnDemandFeatureViewProto
    version: str = ""  # changes when a view changes (the bytes alone may vary between reads)


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


Batch = tuple[TransformCall, ...]


Message = Batch | FrameTransform | WorkerLoad


def encode_request(message: Message) -> bytes:
    return frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def decode_request(payload: bytes) -> Message:
    message = pickle.loads(payload)  # from the gateway, never from a worker
    if isinstance(message, WorkerLoad | FrameTransform):
        return message
    if isinstance(message, tuple) and all(isinstance(c, TransformCall) for c in message):
        return message
    raise TypeError(f"unexpected message {type(message).__name__}")


def split_frames(payload: bytes) -> list[bytes]:
    """The frames ``payload`` is made of (a worker's answers to a batch)."""
    parts, at = [], 0
    while at < len(payload):
        if at + HEADER.size > len(payload):
            raise ConnectionError("a truncated answer")
        (size,) = HEADER.unpack_from(payload, at)
        at += HEADER.size
        if at + size > len(payload):
            raise ConnectionError("a truncated answer")
        parts.append(payload[at : at + size])
        at += size
    return parts
