"""Feast's own plan of one tenant's repo, computed in the sandbox and returned as JSON.

Feast imports every module of a repo by bare name and runs tenant code doing so, so parsing a
tenant's definitions happens in a child process of its own, sealed and bounded
(:mod:`.sandbox`). The child
(``python -P -m featureplane.registry.feast_plan plan|apply <repo> <feature_store.yaml>``) runs
against a private SQLite registry holding only the tenant's project (:mod:`.staging`):

- ``plan`` does what `feast plan` does: ``parse_repo``, the project check, data-source
  validation and ``FeatureStore.plan`` (inference, then ``diff_between`` against the staged
  registry). It prints one JSON document: every object diff with both sides as protobuf JSON
  (``MessageToDict`` of ``to_proto()``), and every Feast object the repo's modules define, with
  the file and variable that define it, for lint. Classification happens in the parent
  (:mod:`featureplane.registry.plan`).
- ``apply`` does what `feast apply` does, into the staged registry, except that it leaves the
  online store alone: the parent deletes removed views' online rows and swaps the project's
  rows into the shared registry (:mod:`.apply`).

Either reports each step on stderr for the parent's messages (:data:`PROGRESS`):
``importing <file>`` before each module, ``inferring <file> <view>`` (tab-separated) before
each on-demand view's UDF runs on sample inputs, ``planning``/``applying``. The parent's side,
which stages the registry and runs this child, is
:func:`featureplane.registry.plan.run_feast_plan`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS = "featureplane-sandbox: "  # a step line the child writes on stderr
OUT_OF_MEMORY = "out of memory"  # the step a child reports when an allocation failed
REFUSED = "refused"  # the step after the child explained, on stderr, why the repo was refused


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


def decode(doc: dict[str, Any]) -> FeastPlan:
    """The plan document the child printed."""
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


def _report(step: str) -> None:
    """One step line for the parent, written straight to fd 2 (tenant code may have replaced
    sys.stderr; after a MemoryError, nothing may allocate much)."""
    os.write(2, f"\n{PROGRESS}{step}\n".encode())


def _import_modules(repo: Path) -> None:
    """Import the repo's modules in Feast's order, reporting each; ``parse_repo`` then finds
    them imported."""
    import importlib

    from feast.repo_operations import get_repo_files, py_path_to_module

    for path in get_repo_files(repo):
        _report(f"importing {path.relative_to(repo)}")
        importlib.import_module(py_path_to_module(path))


def _report_inference(objects: list[RepoObject]) -> None:
    """Report each on-demand view before Feast runs its UDF on sample inputs."""
    from feast import OnDemandFeatureView

    files = {o.name: o.file for o in objects if o.object_type == "on_demand_feature_view"}
    infer = OnDemandFeatureView.infer_features

    def reported(view: Any) -> None:
        _report(f"inferring {files.get(view.name, '')}\t{view.name}")
        infer(view)

    OnDemandFeatureView.infer_features = reported


def _load(repo: Path, fs_yaml: Path) -> tuple[Any, Any, list[RepoModule], list[RepoObject]]:
    """The repo's config and contents (as ``feast`` parses them), modules and objects."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import _get_repo_contents

    config = load_repo_config(repo, fs_yaml)
    os.chdir(repo)
    sys.path.append(str(repo))  # last, as Feast's CLI does: installed modules win
    sys.dont_write_bytecode = True
    _import_modules(repo)
    contents = _get_repo_contents(repo, config.project, config)
    modules = _repo_modules(repo)
    objects = _repo_objects(repo, modules)
    _report_inference(objects)
    return config, contents, modules, objects


def _plan(repo: Path, fs_yaml: Path) -> dict[str, Any]:
    from feast import FeatureStore
    from feast.diff.property_diff import TransitionType
    from feast.feature_view import DUMMY_ENTITY_NAME

    config, contents, modules, objects = _load(repo, fs_yaml)
    _report("planning")
    diffs: list[dict[str, Any]] = []
    error: str | None = None
    try:
        store = FeatureStore(repo_path=str(repo), config=config)
        provider = store._get_provider()
        for view in contents.feature_views:
            if view.batch_source is not None:
                provider.validate_data_source(store.config, view.batch_source)
        registry_diff, _, _ = store.plan(contents)
    except MemoryError:
        raise  # the limit, not Feast refusing the repo
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


def _apply(repo: Path, fs_yaml: Path) -> dict[str, Any]:
    """`feast apply` (``apply_total``) into the staged registry, the online store untouched."""
    from feast import FeatureStore
    from feast.infra.passthrough_provider import PassthroughProvider
    from feast.repo_operations import apply_total_with_repo_instance, is_valid_name

    config, contents, _, _ = _load(repo, fs_yaml)
    if not is_valid_name(config.project):
        print(f"project name {config.project!r} is not valid for Feast", file=sys.stderr)
        raise SystemExit(1)
    # Feast deletes removed views' online rows here; the parent does it instead (no Redis in
    # reach of tenant code), from the rows this apply leaves in the staged registry.
    PassthroughProvider.update_infra = lambda self, *args, **kwargs: None
    store = FeatureStore(repo_path=str(repo), config=config)
    _report("applying")
    apply_total_with_repo_instance(
        store, config.project, store.registry, contents, skip_source_validation=False
    )
    return {"project": config.project}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in {"plan", "apply"}:
        print("usage: python -P -m featureplane.registry.feast_plan plan|apply REPO YAML")
        return 2
    mode, repo, fs_yaml = argv[0], Path(argv[1]).resolve(), Path(argv[2]).resolve()
    try:
        # Tenant modules and Feast print to stdout; only the JSON document may go there.
        with contextlib.redirect_stdout(sys.stderr):
            doc = _plan(repo, fs_yaml) if mode == "plan" else _apply(repo, fs_yaml)
    except MemoryError:
        _report(OUT_OF_MEMORY)
        os._exit(1)  # at once: the frames still hold what filled the memory
    except SystemExit as exc:
        if _raised_in(repo, exc):  # the tenant's own sys.exit: the parent names its file
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        print(f"feast refused {repo} (exit {exc.code})", file=sys.stderr)  # after saying why
        _report(REFUSED)
        return 1
    except Exception as exc:
        print(_where_it_failed(repo, exc), file=sys.stderr)
        _report(REFUSED)
        return 1
    sys.stdout.write(f"\n{json.dumps(doc)}\n")  # on a line of its own, last
    return 0


def _raised_in(repo: Path, exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is in a file of the repo."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).is_relative_to(repo)


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
