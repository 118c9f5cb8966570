"""The repository layout the brief mandates, and the package's public surface."""

from __future__ import annotations

import ast
import importlib
import platform
import sysconfig
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

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


SUBPACKAGES = sorted(
    p.parent.name for p in (ROOT / "platform" / "featureplane").glob("*/__init__.py")
)


def _public_names(module: ModuleType) -> set[str]:
    """What a package's namespace binds that is neither private nor one of its submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }


def _imported_from(package: str) -> set[str]:
    """Names imported as ``from <package> import name`` anywhere outside the package itself
    (its console script counts as a use of ``main``)."""
    found = set()
    inside = ROOT / "platform" / Path(*package.split("."))
    for path in [
        *ROOT.glob("platform/**/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *ROOT.glob("feature_repo/**/*.py"),
    ]:
        if inside in path.parents:
            continue
        tree = ast.parse(path.read_text())
        parent, _, leaf = package.rpartition(".")
        aliases = set()  # local names bound to the package itself
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == package:
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == parent:
                aliases |= {a.asname or a.name for a in node.names if a.name == leaf}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname for a in node.names if a.name == package and a.asname}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                found.add(node.attr)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    found |= {ref.split(":")[1] for ref in scripts.values() if ref.split(":")[0] == package}
    return found


def test_the_root_exports_exactly_the_public_api() -> None:
    assert featureplane.__all__ == sorted(featureplane.__all__)
    assert set(featureplane.__all__) == {
        "FeatureplaneError",
        "Settings",
        "__version__",
        "parquet_source",
    }
    assert _public_names(featureplane) | {"__version__"} == set(featureplane.__all__)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_a_subpackage_exports_exactly_what_others_import_from_it(name: str) -> None:
    """``__all__`` is sorted, names everything the package binds, and nothing nobody imports."""
    package = importlib.import_module(f"featureplane.{name}")
    exported = package.__all__
    assert exported == sorted(exported)
    assert set(exported) == _public_names(package), "bound but not in __all__, or the reverse"
    modules = {p.stem for p in Path(package.__file__ or "").parent.glob("*.py")}
    assert set(exported) == _imported_from(package.__name__) - modules, "exported but unused"


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
