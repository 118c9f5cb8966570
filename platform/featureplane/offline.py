"""Atomic, content-addressed Parquet parts.

A part is written to a hidden temporary file (Parquet readers skip names starting with ``.``),
fsynced, renamed into place and the rename made durable (the folder fsynced), so a reader or a
crash — SIGKILL or power loss — never sees half a file. Its name is the SHA-256 of its bytes, or
a caller-given ``key`` (ingest passes the digest of the landing batch, so a batch re-ingested
after a crash maps to the same part whatever the Parquet writer does): writing the same batch
twice leaves one part, so reruns cannot duplicate rows. A killed writer can leave a
``.tmp-*`` file behind; readers never see it and :func:`sweep_temporaries` removes it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"


def part_path(directory: Path, key: str, prefix: str = "part") -> Path:
    return directory / f"{prefix}-{key}.parquet"


def write_part(
    table: pa.Table, directory: Path, prefix: str = "part", key: str | None = None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with tmp.open("rb") as fh:
            digest = key or hashlib.file_digest(fh, "sha256").hexdigest()[:32]
            os.fsync(fh.fileno())
        final = part_path(directory, digest, prefix)
        os.replace(tmp, final)
        fsync_dir(directory)  # the rename itself must survive a crash, not just the bytes
    finally:
        tmp.unlink(missing_ok=True)
    return final


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporaries(directory: Path) -> int:
    """Remove temporary files a killed writer left behind (invisible to readers anyway)."""
    removed = 0
    for tmp in directory.glob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def read_parts(directory: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every visible part of ``directory`` as one table, or None when there is none."""
    parts = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not parts:
        return None
    return pa.concat_tables(pq.read_table(p, columns=columns) for p in parts)
