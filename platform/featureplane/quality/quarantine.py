"""The quarantine: batches that failed a strict expectation suite, and every quality report.

::

    <data>/quarantine/<project>/<source>/<batch>.parquet                the batch, as it landed
    <data>/quarantine/<project>/<source>/<batch>.report.json            why it was held
    <data>/quarantine/<project>/<source>/warned/<batch>.report.json     a warn-policy failure
                                                                        (the batch was ingested)

A report is written atomically (hidden temporary file, then rename) before its batch moves, so
a held batch always has its report. A name already taken (another batch landed under the same
file name) gets a numeric suffix: nothing held is ever overwritten. To release a batch after
fixing the data or the suite, move it back to ``landing/``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_SUFFIX = ".report.json"
WARNED = "warned"


def quarantine_dir(data_dir: Path, project: str, source: str) -> Path:
    return data_dir / "quarantine" / project / source


@dataclass(frozen=True)
class Quarantine:
    """One source's quarantine folder."""

    directory: Path

    def hold(self, batch: Path, report: dict[str, Any]) -> tuple[Path, Path]:
        """Move ``batch`` here beside its report; the paths of both."""
        stem = _free_stem(self.directory, batch.stem, (".parquet", REPORT_SUFFIX))
        data = self.directory / f"{stem}.parquet"
        path = _write_json(self.directory / f"{stem}{REPORT_SUFFIX}", {**report, "data": str(data)})
        shutil.move(batch, data)
        return data, path

    def warn(self, batch: Path, report: dict[str, Any]) -> Path:
        """Keep the report of a batch that goes on to be ingested."""
        directory = self.directory / WARNED
        stem = _free_stem(directory, batch.stem, (REPORT_SUFFIX,))
        return _write_json(directory / f"{stem}{REPORT_SUFFIX}", report)


def _free_stem(directory: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    candidate, n = stem, 0
    while any((directory / f"{candidate}{suffix}").exists() for suffix in suffixes):
        n += 1
        candidate = f"{stem}.{n}"
    return candidate


def _write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}.json"
    try:
        tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
