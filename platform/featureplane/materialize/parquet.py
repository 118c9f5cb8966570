"""Atomic, content-addressed Parquet parts.

A part is written to a hidden temporary file (Parquet readers skip names starting with ``.``)
and renamed into place, so a reader or a crash never sees half a file. Its name is the SHA-256
of its bytes, so writing the same batch twice leaves one part: reruns cannot duplicate rows.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_part(table: pa.Table, directory: Path, prefix: str = "part") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with tmp.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()[:32]
            os.fsync(fh.fileno())
        final = directory / f"{prefix}-{digest}.parquet"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def read_parts(directory: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every visible part of ``directory`` as one table, or None when there is none."""
    parts = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not parts:
        return None
    return pa.concat_tables(pq.read_table(p, columns=columns) for p in parts)
