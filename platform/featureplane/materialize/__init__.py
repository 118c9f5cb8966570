"""Materialization: landing batches into offline Parquet and the online store."""

from featureplane.materialize.runner import MaterializeReport, materialize_tenant

__all__ = ["MaterializeReport", "materialize_tenant"]
