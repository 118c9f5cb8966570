"""The governed-apply gate shared by `featureplane plan` and `featureplane apply`.

A tenant's plan passes when lint found no errors and it has no breaking change, or its breaking
changes were accepted with ``--allow-breaking "<reason>"`` (recorded in the audit trail).
:mod:`.governed` holds the rule that applies nothing unless every named tenant passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from featureplane.errors import PlanError
from featureplane.registry.audit import record_override
from featureplane.registry.plan import Plan, plan_tenant
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class GateResult:
    plan: Plan
    allow_breaking: str | None  # the reason given, if any
    audit_file: Path | None  # where the accepted breaking changes were recorded

    @property
    def refusals(self) -> list[str]:
        """Why the gate is closed; empty when it passes."""
        reasons = []
        if self.plan.lint_errors:
            reasons.append(f"{len(self.plan.lint_errors)} lint error(s)")
        if self.plan.breaking and self.allow_breaking is None:
            reasons.append(
                f"{len(self.plan.breaking_changes)} breaking change(s); "
                'pass --allow-breaking "<reason>" to accept them'
            )
        return reasons

    @property
    def passed(self) -> bool:
        return not self.refusals


def run_gate(settings: Settings, spec: TenantSpec, allow_breaking: str | None) -> GateResult:
    """Plan and lint the tenant, and say whether the gate passes."""
    if allow_breaking is not None and not allow_breaking.strip():
        raise PlanError("--allow-breaking needs a reason, e.g. --allow-breaking 'JIRA-123: ...'")
    return GateResult(plan_tenant(settings, spec), allow_breaking, None)


def record_acceptance(
    settings: Settings, result: GateResult, command: Literal["plan", "apply"]
) -> GateResult:
    """Write a passed gate's accepted breaking changes (if any) to the tenant's audit trail."""
    if not result.passed or not result.plan.breaking or result.allow_breaking is None:
        return result
    path = record_override(settings, result.plan, result.allow_breaking.strip(), command)
    return replace(result, audit_file=path)
