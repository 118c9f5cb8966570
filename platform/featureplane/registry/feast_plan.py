"""Feast's own plan for one tenant's repo, computed in a subprocess and returned as JSON.

Feast imports every module of a repo by bare name, so parsing a tenant's definitions must happen
in a process of its own (as `feast apply` does). The child
(``python -P -m featureplane.registry.feast_plan <repo> <feature_store.yaml>``) does what
`feast plan` does: ``parse_repo``, the project check, data-source validation and
``FeatureStore.plan`` (inference, then ``diff_between`` against the registry). It prints one JSON
document: every object diff with both sides as protobuf JSON (``MessageToDict`` of
``to_proto()``), and every Feast object the repo's modules define, with the file and variable
that define it, for lint. Classification happens in the parent (:mod:`featureplane.registry.plan`).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureplane.errors import PlanError
from featureplane.feast_config import feast_env, template_path
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

# Redis is never contacted by a plan, but the shared template names it; any URL will do.
_PLACEHOLDER_REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class ObjectDiff:
    """One object Feast would create, delete or update; ``before``/``after`` are spec dicts."""

    object_type: str  # feature_view, entity, feature_service, data_source, project, ...
    name: str
    transition: str  # create | delete | update
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class RepoObject:
    """A Feast object as the repo defines it: where, and its spec dict (for lint)."""

    object_type: str
    name: str
    file: str  # relative to the repo
    variable: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class RepoModule:
    """A repo file Feast imports, the bare module name it imports it by, and the file that name
    actually resolved to (another module's when the name shadows one)."""

    file: str  # relative to the repo
    module: str
    resolved: str | None


@dataclass(frozen=True)
class FeastPlan:
    project: str
    diffs: list[ObjectDiff]
    objects: list[RepoObject]
    modules: list[RepoModule]
    error: str | None  # Feast refused the repo (e.g. two views with one name); lint explains


def run_feast_plan(settings: Settings, spec: TenantSpec) -> FeastPlan:
    """Feast's plan of ``feature_repo/<tenant>`` against the tenant's project in the registry."""
    repo = settings.feature_repo_path / spec.name
    if not repo.is_dir():
        raise PlanError(f"{repo}: no Feast definitions for tenant {spec.name!r}")
    if not settings.redis_url:
        settings = settings.model_copy(update={"redis_url": _PLACEHOLDER_REDIS})
    env = os.environ | feast_env(settings, spec.feast_project)
    # -P: no script folder on sys.path; the child appends the repo last, as `feast` does.
    command = [sys.executable, "-P", "-m", __name__, str(repo), str(template_path(settings))]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise PlanError(f"feast plan failed for tenant {spec.name!r} ({repo}):\n{tail}")
    try:  # the document is the last line; anything a library wrote to fd 1 comes before it
        return _decode(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"feast plan for tenant {spec.name!r} ({repo}) printed no plan") from exc


def _decode(doc: dict[str, Any]) -> FeastPlan:
    return FeastPlan(
        project=doc["project"],
        diffs=[ObjectDiff(**d) for d in doc["diffs"]],
        objects=[RepoObject(**o) for o in doc["objects"]],
        modules=[RepoModule(**m) for m in doc["modules"]],
        error=doc["error"],
    )


# -- the child process ------------------------------------------------------------------------


def _type_name(feast_object_type: Any) -> str:
    return str(feast_object_type.value).replace(" ", "_")


def _spec(obj: Any) -> dict[str, Any]:
    from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
    from google.protobuf.json_format import MessageToDict

    proto = obj.to_proto()
    if not isinstance(proto, DataSourceProto):  # data sources have no spec/meta split
        proto = proto.spec
    spec: dict[str, Any] = MessageToDict(proto, preserving_proto_field_name=True)
    spec.pop("meta", None)
    spec.pop("project", None)
    return spec


def _object_type(obj: Any) -> str | None:
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
    from feast.data_source import DataSource
    from feast.stream_feature_view import StreamFeatureView

    # StreamFeatureView subclasses FeatureView: test it first.
    for cls, name in (
        (StreamFeatureView, "stream_feature_view"),
        (FeatureView, "feature_view"),
        (OnDemandFeatureView, "on_demand_feature_view"),
        (Entity, "entity"),
        (FeatureService, "feature_service"),
        (DataSource, "data_source"),
    ):
        if isinstance(obj, cls):
            return name
    return None


def _assigned_names(path: Path) -> set[str]:
    """Module-level names a file assigns (as opposed to imports), to tell where it is defined."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _module_file(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _repo_modules(repo: Path) -> list[RepoModule]:
    from feast.repo_operations import get_repo_files, py_path_to_module

    modules = []
    for path in get_repo_files(repo):
        name = py_path_to_module(path)
        resolved = _module_file(sys.modules[name]) if name in sys.modules else None
        modules.append(
            RepoModule(str(path.relative_to(repo)), name, str(resolved) if resolved else None)
        )
    return modules


def _repo_objects(repo: Path, modules: list[RepoModule]) -> list[RepoObject]:
    """Every Feast object the repo's modules hold, located at the module that assigns it (an
    object imported into other modules is still one object). Sources declared inline in a view
    are located at the view."""
    found: dict[int, tuple[Any, RepoObject, bool]] = {}  # id -> (object, where, assigned there)
    for entry in modules:
        path = repo / entry.file
        if entry.resolved != str(path):
            continue  # shadowed by another module of that name: lint reports the file
        assigned = _assigned_names(path)
        for variable, obj in sorted(vars(sys.modules[entry.module]).items()):
            object_type = _object_type(obj)
            known = found.get(id(obj))
            if object_type is None or (known and (known[2] or variable not in assigned)):
                continue
            located = RepoObject(object_type, obj.name, entry.file, variable, _spec(obj))
            found[id(obj)] = (obj, located, variable in assigned)
    for obj, located, _ in list(found.values()):
        source = getattr(obj, "batch_source", None)
        if source is not None and id(source) not in found:
            where = f"{located.variable}.batch_source"
            inline = RepoObject("data_source", source.name, located.file, where, _spec(source))
            found[id(source)] = (source, inline, False)
    return [located for _, located, _ in found.values()]


def _plan(repo: Path, fs_yaml: Path) -> dict[str, Any]:
    from feast import FeatureStore
    from feast.diff.property_diff import TransitionType
    from feast.feature_view import DUMMY_ENTITY_NAME
    from feast.repo_config import load_repo_config
    from feast.repo_operations import _get_repo_contents

    config = load_repo_config(repo, fs_yaml)
    os.chdir(repo)
    sys.path.append(str(repo))  # last, as Feast's CLI does: installed modules win
    sys.dont_write_bytecode = True
    contents = _get_repo_contents(repo, config.project, config)
    modules = _repo_modules(repo)
    objects = _repo_objects(repo, modules)
    diffs: list[dict[str, Any]] = []
    error: str | None = None
    try:
        store = FeatureStore(repo_path=str(repo), config=config)
        provider = store._get_provider()
        for view in contents.feature_views:
            if view.batch_source is not None:
                provider.validate_data_source(store.config, view.batch_source)
        registry_diff, _, _ = store.plan(contents)
    except Exception as exc:  # Feast's own refusal, reported beside lint's explanation
        error = f"{type(exc).__name__}: {exc}"
    else:
        transitions = {
            TransitionType.CREATE: "create",
            TransitionType.DELETE: "delete",
            TransitionType.UPDATE: "update",
        }
        for d in registry_diff.feast_object_diffs:
            if d.name == DUMMY_ENTITY_NAME or d.transition_type not in transitions:
                continue
            current, new = d.current_feast_object, d.new_feast_object
            diffs.append(
                {
                    "object_type": _type_name(d.feast_object_type),
                    "name": d.name,
                    "transition": transitions[d.transition_type],
                    "before": None if current is None else _spec(current),
                    "after": None if new is None else _spec(new),
                }
            )
    return {
        "project": config.project,
        "diffs": diffs,
        "objects": [vars(o) for o in objects],
        "modules": [vars(m) for m in modules],
        "error": error,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -P -m featureplane.registry.feast_plan REPO FEATURE_STORE_YAML")
        return 2
    repo, fs_yaml = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    try:
        # Tenant modules and Feast print to stdout; only the JSON document may go there.
        with contextlib.redirect_stdout(sys.stderr):
            doc = _plan(repo, fs_yaml)
    except SystemExit as exc:  # Feast's repo checks exit after printing why
        print(f"feast refused {repo} (exit {exc.code})", file=sys.stderr)
        return 1
    except Exception as exc:
        print(_where_it_failed(repo, exc), file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout)
    return 0


def _where_it_failed(repo: Path, exc: BaseException) -> str:
    """An exception raised while Feast imported the tenant's modules, as the tenant's file,
    line and problem (no traceback: the frames of importlib and Feast say nothing to a tenant)."""
    problem = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        where, line, text = exc.filename, exc.lineno, exc.text
        problem = f"{type(exc).__name__}: {exc.msg}"
    else:
        frames = [
            f
            for f in traceback.extract_tb(exc.__traceback__)
            if Path(f.filename).is_relative_to(repo)
        ]
        if not frames:  # raised by Feast itself, not in a tenant file
            return f"{repo}: {problem}"
        where, line, text = frames[-1].filename, frames[-1].lineno, frames[-1].line
    source = f"\n    {text.strip()}" if text and text.strip() else ""
    return f"{where}, line {line}: {problem}{source}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
