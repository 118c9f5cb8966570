"""Tenants as data: :mod:`.spec` (the tenant.yaml model), :mod:`.catalog` (loading and cross
checks, the JSON schema) and :mod:`.credentials` (bearer tokens, stored as HMACs)."""

__all__: list[str] = []
