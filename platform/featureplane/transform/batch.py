"""Stored on-demand views (``write_to_online_store=True``) computed for materialization, in a
sealed worker of their tenant forked by a zygote of its own, as the gateway computes the others:
the materializing process holds the platform's Redis and registry credentials, so it never runs
(nor unpickles) tenant code itself. The worker answers with Arrow IPC, never a pickle."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from featureplane.errors import TransformFailedError, TransformTimeoutError
from featureplane.transform.pool import NICE, WorkerProcess, describe
from featureplane.transform.protocol import OUTPUT, FrameTransform, WorkerLoad, encode_request
from featureplane.transform.zygote import Zygote

CHUNK_ROWS = 10_000  # rows per message: bounded memory in both processes


def transform_frame(
    load: WorkerLoad,
    view: str,
    join_keys: dict[str, str],
    frame: Any,
    memory_mb: int,
    timeout_seconds: float,
) -> Any:
    """``view`` (one of ``load``'s) computed over ``frame`` (a pandas DataFrame of its source's
    rows); the output frame. ``timeout_seconds`` bounds each chunk of :data:`CHUNK_ROWS`."""
    if len(frame) == 0:
        return frame
    table = asyncio.run(_transform(load, view, join_keys, frame, memory_mb, timeout_seconds))
    return table.to_pandas()


async def _transform(
    load: WorkerLoad,
    view: str,
    join_keys: dict[str, str],
    frame: Any,
    memory_mb: int,
    timeout: float,
) -> pa.Table:
    zygote = Zygote()
    try:
        worker = await WorkerProcess.start(zygote, load, memory_mb, NICE)
        try:
            parts = []
            for start in range(0, len(frame), CHUNK_ROWS):
                chunk = frame.iloc[start : start + CHUNK_ROWS]
                message = encode_request(FrameTransform(view, join_keys, chunk))
                try:
                    reply = await worker.call(message, timeout)
                except TimeoutError:
                    raise TransformTimeoutError(
                        f"on-demand feature view {view!r}: no answer within {timeout:g} s "
                        f"for {len(chunk)} rows"
                    ) from None
                except (ConnectionError, OSError):
                    code = await worker.exit_code()
                    raise TransformFailedError(
                        f"on-demand feature view {view!r}: the transform worker {describe(code)}"
                    ) from None
                if reply[:1] != OUTPUT:
                    raise TransformFailedError(reply[1:].decode("utf-8", "replace"))
                parts.append(pa.ipc.open_stream(reply[1:]).read_all())
        finally:
            worker.kill()
            await worker.exit_code()
    finally:
        await zygote.aclose()
    return pa.concat_tables(parts)
