"""The repository layout the brief mandates, and the package's public surface."""

from __future__ import annotations

import importlib
import platform
import sysconfig
from pathlib import Path

import featureplane

ROOT = Path(__file__).resolve().parent.parent


def test_platform_is_still_the_standard_library() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert callable(platform.python_version)


def test_top_level_folders_exist() -> None:
    for name in (
        "feature_repo",
        "platform",
        "tenants",
        "tests",
        "pyproject.toml",
        "Makefile",
        "README.md",
    ):
        assert (ROOT / name).exists(), name


def test_exported_members_are_exact() -> None:
    assert featureplane.__all__ == sorted(featureplane.__all__)
    assert set(featureplane.__all__) == {"FeatureplaneError", "Settings", "__version__"}
    for subpackage in ("tenancy", "registry", "materialize", "embedded"):
        module = importlib.import_module(f"featureplane.{subpackage}")
        assert module.__all__ == sorted(module.__all__), subpackage
        for name in module.__all__:
            assert hasattr(module, name), f"featureplane.{subpackage}.{name}"


def test_package_root_does_not_import_feast() -> None:
    import subprocess
    import sys

    code = (
        "import sys, featureplane, featureplane.cli; "
        "print('feast' in sys.modules, 'prometheus_client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
