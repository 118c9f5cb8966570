"""The quality check of ingest: every landed batch is checked before any of it is written.

A batch of source ``S`` is checked against the suite named ``S`` (if any) and the suite of each
feature view that reads ``S`` (``feature_repo/<tenant>/expectations/``). A failed suite applies
the policy (tenant.yaml ``quality:``) of the view it names, or of every view reading the source
for a source suite:

- ``strict``: the batch is quarantined with its report (:mod:`.quarantine`); no offline part is
  written for it, so no feature view ever materializes or serves it. The run's other batches go
  through, and the run's report lists it (``MaterializeReport.quarantined``).
- ``warn``: the report is kept under ``quarantine/.../warned/`` and the batch is ingested.

A batch belongs to one offline part shared by all views of its source, so one strict failure
holds it back for all of them. Each failure (per view and policy) is counted in the run records
(:mod:`featureplane.observability.runs`), which the gateway exports as
``featureplane_quality_failures_total``. Suites are read and built (GX imported) when the gate
loads, before anything is ingested, so a malformed suite fails the run with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import redis

from featureplane.errors import FeatureplaneError, MaterializationError, SuiteError, TenantSpecError
from featureplane.observability import runs
from featureplane.quality.quarantine import Quarantine, quarantine_dir
from featureplane.quality.suite import Suite, read_suites, suite_dir
from featureplane.settings import Settings
from featureplane.tenancy.spec import QualityPolicy, TenantSpec

if TYPE_CHECKING:
    from feast import FeatureView

    from featureplane.quality.validator import SuiteResult, Validator

Outcome = Literal["passed", "warned", "quarantined"]


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for one landed batch."""

    source: str
    batch: str  # file name as landed
    outcome: Outcome
    failed: dict[str, QualityPolicy] = field(default_factory=dict)  # feature view -> policy
    report: Path | None = None

    @property
    def admitted(self) -> bool:
        return self.outcome != "quarantined"


class BatchChecker:
    """One tenant's suites and policies for one materialization run."""

    def __init__(
        self,
        settings: Settings,
        spec: TenantSpec,
        suites: dict[str, Suite],
        readers: dict[str, list[str]],
        control: redis.Redis,
    ) -> None:
        self._settings = settings
        self._control = control  # the run's client: failures are counted in its run records
        self._spec = spec
        self._suites = suites
        self._readers = readers  # source -> the feature views reading it
        self._validator: Validator | None = None
        if suites:
            from featureplane.quality.validator import Validator  # imports GX: only when needed

            self._validator = Validator(suites.values())
        self.verdicts: list[Verdict] = []

    @classmethod
    def load(
        cls,
        settings: Settings,
        spec: TenantSpec,
        views: Iterable[FeatureView],
        control: redis.Redis,
    ) -> BatchChecker:
        """Read and build the tenant's suites; every suite and policy must name a known feature
        view (or, for a suite, a batch source) of the project."""
        readers: dict[str, list[str]] = {}
        for fv in views:
            readers.setdefault(fv.batch_source.name, []).append(fv.name)
        view_names = {v for names in readers.values() for v in names}
        project = spec.feast_project
        suites = read_suites(suite_dir(settings.feature_repo_path, spec.name))
        for suite in suites.values():
            if suite.name not in view_names and suite.name not in readers:
                known = ", ".join(sorted(view_names | set(readers)))
                problem = f"names no feature view or source of project {project!r} (known: {known})"
                raise SuiteError(suite.path, [("<file>", problem)])
        unknown = [
            (f"quality.{name}", f"no feature view {name!r} in project {project!r}")
            for name in spec.quality.views
            if name not in view_names
        ]
        if unknown:
            raise TenantSpecError(settings.tenants_path / spec.name / "tenant.yaml", unknown)
        return cls(settings, spec, suites, readers, control)

    def admit(self, source: str, batch: Path, table: pa.Table) -> bool:
        """Check ``batch`` (read as ``table``); False when it was quarantined."""
        applicable = self._applicable(source)
        if not applicable or self._validator is None:
            return True
        try:
            results = self._validator.validate(table, [suite.name for suite, _ in applicable])
        except FeatureplaneError:
            raise
        except Exception as exc:  # GX failing outright (not an expectation failing): fail closed
            raise MaterializationError(
                f"{self._spec.name}/{source}: checking {batch.name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        failed: dict[str, QualityPolicy] = {}
        for result, (_, views) in zip(results, applicable, strict=True):
            if not result.success:
                failed.update({view: self._spec.quality.policy(view) for view in views})
        if not failed:
            self.verdicts.append(Verdict(source, batch.name, "passed"))
            return True
        outcome: Outcome = "quarantined" if "strict" in failed.values() else "warned"
        document = self._report(source, batch, table, outcome, results, applicable)
        quarantine = Quarantine(
            quarantine_dir(self._settings.data_path, self._spec.feast_project, source)
        )
        if outcome == "quarantined":
            _, report = quarantine.hold(batch, document)
        else:
            report = quarantine.warn(batch, document)
        for view, policy in failed.items():
            runs.record_quality_failure(self._control, self._spec.name, view, policy)
        self.verdicts.append(Verdict(source, batch.name, outcome, failed, report))
        return outcome != "quarantined"

    def _applicable(self, source: str) -> list[tuple[Suite, list[str]]]:
        """The suites for a batch of ``source``, each with the views whose policy it carries."""
        views = self._readers.get(source, [])
        found: dict[str, tuple[Suite, list[str]]] = {}
        if source in self._suites:
            found[source] = (self._suites[source], views)
        for view in views:
            if view in self._suites and view not in found:
                found[view] = (self._suites[view], [view])
        return list(found.values())

    def _report(
        self,
        source: str,
        batch: Path,
        table: pa.Table,
        outcome: Outcome,
        results: list[SuiteResult],
        applicable: list[tuple[Suite, list[str]]],
    ) -> dict[str, Any]:
        suites: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for result, (suite, views) in zip(results, applicable, strict=True):
            policies = {view: self._spec.quality.policy(view) for view in views}
            suites.append(
                {
                    "name": suite.name,
                    "file": str(suite.path),
                    "feature_views": policies,
                    "evaluated": result.evaluated,
                    "failed": len(result.failures),
                }
            )
            failures.extend({**f.to_dict(), "feature_views": policies} for f in result.failures)
        return {
            "tenant": self._spec.name,
            "project": self._spec.feast_project,
            "source": source,
            "batch": batch.name,
            "outcome": outcome,
            "checked_at": datetime.now(UTC).isoformat(),
            "rows": table.num_rows,
            "landed": str(batch),
            "data": None,  # the quarantined copy, when held
            "suites": suites,
            "failures": failures,
        }
