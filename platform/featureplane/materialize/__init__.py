"""Materialization: :mod:`.runner` (a tenant's run: ingest, then each feature view online),
:mod:`.engine` (the Feast batch-engine plugin,
``featureplane.materialize.engine.FeatureplaneEngine``) and :mod:`.filesource` (the Parquet
scan that finds each entity's latest row)."""

__all__: list[str] = []
