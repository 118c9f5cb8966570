"""Governed apply: the one way tenants' definitions reach the shared registry.

The rule (docs/governance.md), for `featureplane apply` and the demo's deployment alike:

1. The registry is checked first: an unreachable one is one line naming it and the cause
   (:class:`~featureplane.errors.RegistryError`), before any plan; Feast's plan would report it
   as a lint error of the tenant.
2. Every named tenant goes through the gate (:mod:`.gate`: lint, and Feast's plan classified
   safe / breaking). Nothing is applied unless every one passes: otherwise one
   :class:`~featureplane.errors.PlanError` lists each refused tenant and why.
3. Each tenant's accepted breaking changes (``--allow-breaking "<reason>"``) are recorded in its
   audit trail, then each tenant is applied (:func:`.apply.apply_tenant`) in the order named. A
   failed apply re-checks the registry, so a registry lost on the way is one line too rather
   than Feast's traceback.

`featureplane plan` shows the same gate (:func:`gate_tenants`) without applying. Callers print:
the functions here report through callbacks and return what they did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from featureplane.errors import ApplyError, PlanError
from featureplane.feast_config import check_registry
from featureplane.registry.apply import ApplyResult, apply_tenant
from featureplane.registry.gate import GateResult, record_acceptance, run_gate
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


def _ignore(_: object) -> None:
    return None


def gate_tenants(
    settings: Settings, specs: Sequence[TenantSpec], allow_breaking: str | None
) -> list[GateResult]:
    """Check the registry (:class:`~featureplane.errors.RegistryError` when unreachable), then
    run each tenant's gate, in order. Records nothing: see
    :func:`~featureplane.registry.gate.record_acceptance`."""
    check_registry(settings)
    return [run_gate(settings, spec, allow_breaking) for spec in specs]


def governed_apply(
    settings: Settings,
    specs: Sequence[TenantSpec],
    allow_breaking: str | None,
    *,
    on_gate: Callable[[GateResult], None] = _ignore,
    on_accepted: Callable[[GateResult], None] = _ignore,
    on_apply: Callable[[TenantSpec], None] = _ignore,
    on_applied: Callable[[ApplyResult], None] = _ignore,
) -> list[ApplyResult]:
    """Apply ``specs`` under the rule above; their results, in order.

    Callbacks, in this order: ``on_gate`` with every tenant's gate result once all have run
    (refused or not); ``on_accepted`` with each one after its acceptance was recorded (its
    ``audit_file`` is set when breaking changes were accepted); then ``on_apply`` before and
    ``on_applied`` after each tenant's apply.

    Raises :class:`~featureplane.errors.RegistryError` when the registry is unreachable (before
    the gate, or after a failed apply), :class:`~featureplane.errors.PlanError` when a tenant
    is refused (nothing applied, nothing recorded) or ``allow_breaking`` is blank, and
    :class:`~featureplane.errors.ApplyError` when `feast apply` fails (the tenants before it
    stay applied; see :mod:`.apply` for what one interrupted apply leaves).
    """
    gates = gate_tenants(settings, specs, allow_breaking)
    for gate in gates:
        on_gate(gate)
    refused = [f"{g.plan.tenant}: {'; '.join(g.refusals)}" for g in gates if not g.passed]
    if refused:
        raise PlanError(f"apply refused, nothing applied: {' | '.join(refused)}")
    for gate in gates:
        on_accepted(record_acceptance(settings, gate, "apply"))
    results = []
    for spec in specs:
        on_apply(spec)
        try:
            result = apply_tenant(settings, spec)
        except ApplyError:
            check_registry(settings)  # lost on the way: say so in one line, not Feast's tail
            raise
        on_applied(result)
        results.append(result)
    return results
