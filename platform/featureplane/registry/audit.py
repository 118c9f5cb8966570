"""The audit trail of accepted breaking changes: one JSON line per `--allow-breaking` use.

``<FEATUREPLANE_DATA_DIR>/audit/<tenant>.jsonl``, append-only. Each line:
``{"time", "tenant", "project", "command", "reason", "commit", "breaking": [change, ...]}``
where ``commit`` is ``GIT_COMMIT`` or ``GITHUB_SHA`` when set (else null) and each change has
the shape of `featureplane plan --json` changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.settings import Settings

if TYPE_CHECKING:
    from featureplane.registry.plan import Plan

COMMIT_VARIABLES = ("GIT_COMMIT", "GITHUB_SHA")


def audit_path(settings: Settings, tenant: str) -> Path:
    return settings.data_path / "audit" / f"{tenant}.jsonl"


def record_override(settings: Settings, plan: Plan, reason: str, command: str) -> Path:
    """Append why ``plan``'s breaking changes were let through; returns the audit file."""
    commit = next((os.environ[v] for v in COMMIT_VARIABLES if os.environ.get(v)), None)
    record: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "tenant": plan.tenant,
        "project": plan.project,
        "command": command,
        "reason": reason,
        "commit": commit,
        "breaking": [asdict(c) for c in plan.breaking_changes],
    }
    path = audit_path(settings, plan.tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line in append mode: concurrent writers never interleave within a line.
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, default=str) + "\n")
    return path
