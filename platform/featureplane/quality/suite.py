"""Expectation suite files: ``feature_repo/<tenant>/expectations/<name>.yaml`` (or ``.json``).

``<name>`` is a feature view (checks the batches of its source) or a batch source. The file
lists GX 1.x expectations by name (``expect_column_values_to_be_between`` or the class name
``ExpectColumnValuesToBeBetween``) with their keyword arguments::

    description: Rolling transaction statistics must be plausible.   # optional
    expectations:
      - expect_column_values_to_not_be_null: {column: account_id}
      - expect_column_values_to_be_between: {column: txn_amount_avg_7d, min_value: 0}

Reading a file checks its shape only; :meth:`Suite.to_gx` (which imports GX) resolves each
name and validates its arguments. Every problem names the file and the entry (index and line).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from featureplane.errors import SuiteError

SUITE_DIR = "expectations"
SUFFIXES = (".yaml", ".yml", ".json")
# Where a result comes from: each GX expectation carries its entry's index in ``meta``
# (GX reorders results, and this survives whatever ``meta`` the author adds).
ENTRY_META = "featureplane_entry"
_KEYS = ("description", "expectations")
_EXAMPLE = "e.g. `- expect_column_values_to_not_be_null: {column: id}`"


def suite_dir(feature_repo: Path, tenant: str) -> Path:
    return feature_repo / tenant / SUITE_DIR


@dataclass(frozen=True)
class Entry:
    """One expectation as declared: its position, GX type (snake case) and arguments."""

    index: int
    line: int | None
    expectation: str
    kwargs: dict[str, Any]

    @property
    def where(self) -> str:
        line = f" (line {self.line})" if self.line is not None else ""
        return f"expectations[{self.index}]{line}"


@dataclass(frozen=True)
class Suite:
    """One suite file: ``name`` is its stem, a feature view or a batch source."""

    name: str
    path: Path
    entries: tuple[Entry, ...]
    description: str = ""

    def to_gx(self) -> Any:
        """A ``gx.ExpectationSuite``; a :class:`SuiteError` names every unknown expectation and
        every bad argument."""
        import great_expectations as gx

        expectations, problems = [], []
        for entry in self.entries:
            try:
                cls = _expectation_class(entry.expectation)
                meta = entry.kwargs.get("meta", {})
                kwargs = entry.kwargs
                if isinstance(meta, dict):
                    kwargs = {**kwargs, "meta": {**meta, ENTRY_META: entry.index}}
                expectations.append(cls(**kwargs))
            except _UnknownExpectationError as exc:
                problems.append((entry.where, str(exc)))
            except (ValueError, TypeError) as exc:  # GX validates arguments with pydantic (v1)
                problems.append((f"{entry.where} ({entry.expectation})", _describe(exc)))
        if problems:
            raise SuiteError(self.path, problems)
        return gx.ExpectationSuite(name=self.name, expectations=expectations)


def read_suites(directory: Path) -> dict[str, Suite]:
    """Every suite file in ``directory`` by name (none when the folder does not exist)."""
    suites: dict[str, Suite] = {}
    if not directory.is_dir():
        return suites
    files = (p for p in directory.iterdir() if p.suffix in SUFFIXES and p.name[:1] != ".")
    for path in sorted(files):
        suite = read_suite(path)
        if suite.name in suites:
            other = suites[suite.name].path.name
            raise SuiteError(path, [("<file>", f"suite {suite.name!r} is also in {other}")])
        suites[suite.name] = suite
    return suites


def read_suite(path: Path) -> Suite:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SuiteError(path, [("<file>", f"cannot be read: {exc.strerror}")]) from exc
    raw, lines = _parse(path, text)
    if not isinstance(raw, dict):
        raise SuiteError(path, [("<file>", "must be a mapping with an `expectations:` list")])
    problems = [(str(key), "unknown key") for key in raw if key not in _KEYS]
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", "must be a string"))
    listed = raw.get("expectations")
    if not isinstance(listed, list) or not listed:
        problems.append(("expectations", f"must be a non-empty list of expectations, {_EXAMPLE}"))
        listed = []
    entries = []
    for index, item in enumerate(listed):
        line = lines.get(index)
        where = Entry(index, line, "", {}).where
        if not isinstance(item, dict) or len(item) != 1:
            problems.append((where, f"must map one expectation to its arguments, {_EXAMPLE}"))
            continue
        ((name, kwargs),) = item.items()
        if kwargs is None:
            kwargs = {}
        if not isinstance(name, str):
            problems.append((where, f"must map one expectation to its arguments, {_EXAMPLE}"))
            continue
        if not isinstance(kwargs, dict):
            problems.append((where, f"the arguments of {name!r} must be a mapping"))
            continue
        if not all(isinstance(k, str) for k in kwargs):
            problems.append((where, "argument names must be strings"))
            continue
        entries.append(Entry(index, line, _snake(name), kwargs))
    if problems:
        raise SuiteError(path, problems)
    return Suite(path.stem, path, tuple(entries), description)


def _parse(path: Path, text: str) -> tuple[Any, dict[int, int]]:
    """The document, and the line of each ``expectations`` item (YAML only)."""
    if path.suffix == ".json":
        try:
            return json.loads(text), {}
        except json.JSONDecodeError as exc:
            raise SuiteError(path, [(f"line {exc.lineno}", f"not valid JSON: {exc.msg}")]) from exc
    try:
        raw = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        raise SuiteError(path, [(where, f"not valid YAML: {exc}")]) from exc
    lines: dict[int, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "expectations" and isinstance(value, yaml.SequenceNode):
                lines = {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return raw, lines


def _snake(name: str) -> str:
    """GX's expectation type for a class name (``ExpectColumnToExist``); snake case as is."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if name[:1].isupper() else name


class _UnknownExpectationError(Exception):
    pass


def _expectation_class(name: str) -> Any:
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    try:
        return get_expectation_impl(name)
    except Exception:  # GX raises its ExpectationNotFoundError
        known = list_registered_expectation_implementations()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"not one of GX's {len(known)}"
        raise _UnknownExpectationError(f"unknown expectation {name!r} ({hint})") from None


def _describe(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        # pydantic v1 lists every member of a union it tried: the first says enough.
        first: dict[str, str] = {}
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
            first.setdefault(loc, str(err.get("msg")))
        return "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in first.items())
    return str(exc)
