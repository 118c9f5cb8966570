"""Ingest: data entering the offline store. Batches landed in ``landing/`` are checked
(:mod:`featureplane.quality`) and written as Parquet parts (:mod:`.landing`)."""

__all__: list[str] = []
