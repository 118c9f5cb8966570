"""The gateway-worker wire (featureplane.transform.protocol): what a worker accepts, and how
the gateway splits a batch's answer, which is tenant-controlled bytes."""

from __future__ import annotations

import pickle

import pytest

from featureplane.transform.protocol import (
    HEADER,
    Column,
    TransformCall,
    WorkerLoad,
    decode_request,
    encode_request,
    frame,
    split_frames,
)

CALL = TransformCall(("v",), ("v:f",), False, (Column("x", "value", [1, 2], 0),))


def test_a_batch_and_a_load_round_trip() -> None:
    batch = (CALL, CALL._replace(full_feature_names=True))
    assert decode_request(encode_request(batch)[HEADER.size :]) == batch
    load = WorkerLoad("p", None, (b"proto",), "v1")
    assert decode_request(encode_request(load)[HEADER.size :]) == load


@pytest.mark.parametrize("message", [("not a call",), {"views": ()}, 42])
def test_anything_else_is_refused(message: object) -> None:
    with pytest.raises(TypeError, match="unexpected message"):
        decode_request(pickle.dumps(message))


def test_a_batch_answer_splits_into_its_frames() -> None:
    answers = [b"Oone", b"", b"Ethree"]
    assert split_frames(b"".join(frame(a) for a in answers)) == answers
    assert split_frames(b"") == []


@pytest.mark.parametrize("cut", [1, 3, 6])
def test_a_truncated_answer_is_a_connection_error(cut: int) -> None:
    whole = frame(b"Oabcdef") + frame(b"Oxyz")
    with pytest.raises(ConnectionError, match="truncated"):
        split_frames(whole[: len(whole) - cut])
