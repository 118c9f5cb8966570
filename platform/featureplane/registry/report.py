"""How a gate result is shown: a rich table for people, one JSON document for CI.

The JSON document is `featureplane plan --json` (schema in docs/ci.md):
``{"tenant", "project", "changes": [{"kind", "object_type", "name", "field", "before", "after",
"classification", "reason"}], "breaking", "lint": [{"rule", "severity", "file", "object_type",
"name", "message", "default"}], "allow_breaking", "passed"}`` (a finding's ``severity`` is the
effective one, after tenant.yaml ``lint:``; ``default`` is the platform's).
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from featureplane.registry.gate import GateResult

_KIND = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}
_CLASS = {"safe": "[green]safe[/]", "breaking": "[bold red]breaking[/]"}
_SEVERITY = {"error": "[bold red]error[/]", "warning": "[yellow]warning[/]"}


def report_document(result: GateResult) -> dict[str, Any]:
    return result.plan.to_dict() | {
        "allow_breaking": result.allow_breaking,
        "passed": result.passed,
    }


def report_json(result: GateResult) -> str:
    return json.dumps(report_document(result), indent=2, default=str)


def _value(value: Any) -> str:
    if value is None:
        return ""
    return escape(value if isinstance(value, str) else json.dumps(value, default=str))


def _transition(before: Any, after: Any) -> str:
    if before is None and after is None:
        return ""
    return f"{_value(before) or '-'} -> {_value(after) or '-'}"


def print_report(console: Console, result: GateResult) -> None:
    plan = result.plan
    title = f"plan for tenant {plan.tenant} (project {plan.project})"
    if plan.changes:
        table = Table(title=title, title_justify="left")
        table.add_column("")
        table.add_column("object", overflow="fold")
        table.add_column("field", overflow="fold")  # paths and URIs must be read whole
        table.add_column("before -> after", overflow="fold")
        table.add_column("class", no_wrap=True)
        table.add_column("reason", ratio=1)
        for c in plan.changes:
            table.add_row(
                _KIND[c.kind],
                escape(f"{c.object_type.replace('_', ' ')} {c.name}"),
                escape(c.field or ""),
                _transition(c.before, c.after),
                _CLASS[c.classification],
                escape(c.reason),
            )
        console.print(table)
    elif any(f.rule == "feast" for f in plan.lint):
        console.print(f"{title}: Feast could not plan the repo (see the feast error below)")
    else:
        console.print(f"{title}: no changes to the registry")
    for finding in plan.lint:
        changed = finding.default not in (None, finding.severity)
        by_tenant = f" (tenant.yaml lint; {finding.default} by default)" if changed else ""
        console.print(
            f"{_SEVERITY[finding.severity]} {escape(f'[{finding.rule}]')} "
            f"{escape(finding.message)}{escape(by_tenant)}",
            highlight=False,
            soft_wrap=True,
        )
    breaking = len(plan.breaking_changes)
    errors = len(plan.lint_errors)
    console.print(
        f"{len(plan.changes)} change(s), {breaking} breaking; lint: {errors} error(s), "
        f"{len(plan.lint) - errors} warning(s)",
        highlight=False,
    )
    if result.audit_file is not None:
        console.print(
            f"[yellow]breaking changes accepted[/] ({escape(result.allow_breaking or '')}); "
            f"recorded in {escape(str(result.audit_file))}",
            highlight=False,
        )
