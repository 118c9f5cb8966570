"""Settings for a test: the repository's tenants/ and feature_repo/, a given data dir and Redis."""

from __future__ import annotations

from pathlib import Path

from featureplane.settings import Settings
from tests.support.paths import ROOT


def make_settings(data_dir: Path, redis_url: str, **overrides: object) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        tenants_dir=ROOT / "tenants",
        feature_repo_dir=ROOT / "feature_repo",
        **overrides,  # type: ignore[arg-type]
    )
