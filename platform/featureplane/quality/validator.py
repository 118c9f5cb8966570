"""Checking a batch (an Arrow table) against expectation suites with Great Expectations 1.x.

One ephemeral GX context per validator (no files, no progress bars), one pandas batch per
table, every applicable suite validated against it. Failures come back as plain, JSON-ready
values: the expectation as declared, what GX observed, and a few of the failing rows.
"""

from __future__ import annotations

import base64
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa

from featureplane.quality.suite import ENTRY_META, Entry, Suite

SAMPLE_ROWS = 5
# What a report keeps of GX's result (SUMMARY format): enough to see why, never the whole batch.
_RESULT_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "partial_unexpected_list",
)


@dataclass(frozen=True)
class Failure:
    """One expectation a batch did not meet."""

    suite: Suite
    entry: Entry
    result: dict[str, Any]
    sample_rows: list[dict[str, Any]]
    exception: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "file": str(self.suite.path),
            "entry": self.entry.index,
            "line": self.entry.line,
            "expectation": self.entry.expectation,
            "kwargs": plain(self.entry.kwargs),
            **self.result,
            "exception": self.exception,
            "sample_rows": self.sample_rows,
        }


@dataclass(frozen=True)
class SuiteResult:
    suite: Suite
    evaluated: int
    failures: tuple[Failure, ...]

    @property
    def success(self) -> bool:
        return not self.failures


class Validator:
    """Suites built once (imports GX: a :class:`SuiteError` for a bad entry), then any number of
    tables checked against them."""

    def __init__(self, suites: Iterable[Suite]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self._suites = {suite.name: (suite, suite.to_gx()) for suite in suites}
        config = DataContextConfig(
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(),
        )
        context = gx.get_context(mode="ephemeral", project_config=config)
        asset = context.data_sources.add_pandas("featureplane").add_dataframe_asset("batch")
        self._batches = asset.add_batch_definition_whole_dataframe("whole")

    def validate(self, table: pa.Table, names: Iterable[str]) -> list[SuiteResult]:
        """``table`` against the named suites."""
        batch = self._batches.get_batch(batch_parameters={"dataframe": table.to_pandas()})
        results = []
        for name in names:
            suite, expectations = self._suites[name]
            run = batch.validate(
                expectations,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS},
            )
            failures = sorted(
                (_failure(suite, table, r) for r in run.results if not r.success),
                key=lambda f: f.entry.index,
            )
            results.append(SuiteResult(suite, len(run.results), tuple(failures)))
        return results


def _failure(suite: Suite, table: pa.Table, result: Any) -> Failure:
    entry = suite.entries[result.expectation_config.meta[ENTRY_META]]
    raw: Mapping[str, Any] = result.result or {}
    kept = {key: plain(raw[key]) for key in _RESULT_KEYS if key in raw}
    indices = [int(i) for i in raw.get("partial_unexpected_index_list") or () if _is_int(i)][
        :SAMPLE_ROWS
    ]
    rows = plain(table.take(pa.array(indices, pa.int64())).to_pylist()) if indices else []
    return Failure(suite, entry, kept, rows, _exception(result.exception_info))


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _exception(info: Any) -> str | None:
    """GX's message when checking raised (a missing column, a wrong type), else None."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    # Per-metric form: {metric id: {"raised_exception": ..., "exception_message": ...}}
    messages = [_exception(value) for value in info.values()]
    return "; ".join(dict.fromkeys(m for m in messages if m)) or None


def plain(value: Any) -> Any:
    """``value`` as JSON: NaN (pandas' null) as null, infinities as strings, times as ISO 8601,
    NumPy as Python."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None if math.isnan(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    item = getattr(value, "item", None)  # NumPy scalars (and 0-d arrays)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return plain(item())
    tolist = getattr(value, "tolist", None)  # NumPy arrays
    if callable(tolist):
        return plain(tolist())
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp and NaT-free friends
    if callable(isoformat):
        return plain(isoformat())
    return str(value)
