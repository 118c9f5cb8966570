"""Loading and cross-checking every ``tenants/<name>/tenant.yaml``.

Onboarding a tenant is adding two folders; this module is what discovers them. Errors name
the file and the field (``tenants/fraud/tenant.yaml: quotas.burst: ...``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from featureplane.errors import TenantSpecError
from featureplane.tenancy.spec import TenantSpec

SPEC_FILE = "tenant.yaml"
SCHEMA_FILE = "tenant.schema.json"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently: a second ``burst:`` would quietly win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)  # resolve `<<: *anchor` merges first, as SafeLoader does
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_spec(path: Path) -> TenantSpec:
    """Parse and validate one tenant.yaml; the folder name must equal ``name``."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except OSError as exc:
        raise TenantSpecError(path, [("<file>", f"cannot be read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise TenantSpecError(
            path, [("<file>", f"not UTF-8 text (byte {exc.start}: {exc.reason})")]
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        raise TenantSpecError(path, [(where, f"not valid YAML: {exc}")]) from exc
    if not isinstance(raw, dict):
        raise TenantSpecError(path, [("<file>", "must be a YAML mapping")])
    try:
        spec = TenantSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in err["loc"]) or "<root>", err["msg"]) for err in exc.errors()
        ]
        raise TenantSpecError(path, problems) from exc
    if spec.name != path.parent.name:
        raise TenantSpecError(
            path, [("name", f"is {spec.name!r} but the folder is {path.parent.name!r}")]
        )
    return spec


@dataclass(frozen=True)
class TenantCatalog(Mapping[str, TenantSpec]):
    """Every tenant, by name, validated individually and against each other."""

    tenants: dict[str, TenantSpec]
    root: Path

    @classmethod
    def load(cls, tenants_dir: Path, feature_repo_dir: Path | None = None) -> TenantCatalog:
        specs: dict[str, TenantSpec] = {}
        files = sorted(tenants_dir.glob(f"*/{SPEC_FILE}"))
        errors: list[str] = []
        broken: set[str] = set()  # folders whose spec failed: not "unknown" to the cross checks
        for path in files:
            try:
                spec = load_spec(path)
            except TenantSpecError as exc:
                errors.append(str(exc))
                broken.add(path.parent.name)
                continue
            specs[spec.name] = spec
        catalog = cls(specs, tenants_dir)
        errors.extend(catalog._cross_check(feature_repo_dir, broken))
        if errors:
            raise TenantSpecError(tenants_dir, [("<catalog>", e) for e in errors])
        return catalog

    def _cross_check(
        self, feature_repo_dir: Path | None, broken: set[str] | None = None
    ) -> Iterator[str]:
        seen_projects: dict[str, str] = {}
        seen_namespaces: dict[str, str] = {}
        for spec in self.tenants.values():
            path = self.root / spec.name / SPEC_FILE
            other = seen_projects.setdefault(spec.feast_project, spec.name)
            if other != spec.name:
                yield f"{path}: project: {spec.feast_project!r} is already tenant {other!r}'s"
            other = seen_namespaces.setdefault(spec.namespace, spec.name)
            if other != spec.name:
                yield f"{path}: kubernetes.namespace: {spec.namespace!r} is already {other!r}'s"
            for i, grant in enumerate(spec.sharing):
                for grantee in grant.tenants:
                    if grantee == spec.name:
                        yield f"{path}: sharing.{i}.tenants: a tenant cannot share with itself"
                    elif grantee not in self.tenants and grantee not in (broken or ()):
                        yield f"{path}: sharing.{i}.tenants: unknown tenant {grantee!r}"
            if feature_repo_dir is not None and not (feature_repo_dir / spec.name).is_dir():
                yield f"{path}: name: no Feast definitions at {feature_repo_dir / spec.name}/"

    def __getitem__(self, name: str) -> TenantSpec:
        return self.tenants[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)

    def get_tenant(self, name: str) -> TenantSpec:
        """The named tenant, or a TenantSpecError listing the known ones."""
        try:
            return self.tenants[name]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "none"
            raise TenantSpecError(
                self.root / name / SPEC_FILE, [("<file>", f"no such tenant (known: {known})")]
            ) from None

    def by_project(self) -> Mapping[str, TenantSpec]:
        """Tenants by Feast project (built once: the gateway asks per request)."""
        return self._by_project

    @cached_property
    def _by_project(self) -> Mapping[str, TenantSpec]:
        return MappingProxyType({spec.feast_project: spec for spec in self.tenants.values()})


def schema_document() -> dict[str, Any]:
    schema = TenantSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = "Generated by `featureplane tenants schema`; do not edit."
    return schema


def render_schema() -> str:
    return json.dumps(schema_document(), indent=2, sort_keys=True) + "\n"
