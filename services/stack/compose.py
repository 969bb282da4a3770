"""Load compose files the way `docker compose` does: top-level `include`, overlays (`-f a -f b`), variables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.stack.interpolate import interpolate, referenced_variables

# Resources an included file contributes; a name defined twice is an error, as in compose.
RESOURCE_KEYS = ("services", "volumes", "networks", "configs", "secrets")
# Sequences that an overlay replaces instead of extending (compose merge rules).
REPLACED_SEQUENCES = {"command", "entrypoint", "test"}
NATIVE_KEY = "x-native"


class ComposeError(ValueError):
    """A compose file is missing, malformed or uses something the native runner cannot honour."""


@dataclass
class Project:
    """A compose project after include and overlay resolution, not yet interpolated."""

    doc: dict[str, Any]
    files: list[Path]
    base_dir: Path
    service_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.doc.get("services") or {}


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one compose file into a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ComposeError(f"compose file not found: {path}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ComposeError(f"{path}: invalid YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ComposeError(f"{path}: the top level must be a mapping")
    return doc


def _normalise_service(service: dict[str, Any]) -> dict[str, Any]:
    """Turn list forms into mappings so that merging and the runner see one shape."""
    env = service.get("environment")
    if isinstance(env, list):
        pairs = (str(item).split("=", 1) for item in env)
        service["environment"] = {p[0]: (p[1] if len(p) > 1 else None) for p in pairs}
    deps = service.get("depends_on")
    if isinstance(deps, list):
        # the short form means "started", which is what our rules forbid; keep that visible
        service["depends_on"] = {name: {"condition": "service_started"} for name in deps}
    return service


def merge(base: Any, overlay: Any, key: str = "") -> Any:
    """Merge an overlay document onto a base one (mappings recurse, most sequences extend)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for name, value in overlay.items():
            out[name] = merge(base[name], value, name) if name in base else value
        return out
    if isinstance(base, list) and isinstance(overlay, list) and key not in REPLACED_SEQUENCES:
        return base + [item for item in overlay if item not in base]
    return overlay


def _include_entries(doc: dict[str, Any], path: Path) -> list[tuple[list[Path], Path | None]]:
    entries = []
    for item in doc.get("include") or []:
        spec = {"path": item} if isinstance(item, str) else dict(item)
        unsupported = set(spec) - {"path", "project_directory"}
        if unsupported:
            raise ComposeError(f"{path}: include keys {sorted(unsupported)} are not supported")
        paths = spec["path"] if isinstance(spec["path"], list) else [spec["path"]]
        if any("$" in str(p) for p in paths):
            raise ComposeError(f"{path}: include paths must be literal (no variables)")
        files = [(path.parent / str(p)).resolve() for p in paths]
        project_dir = spec.get("project_directory")
        entries.append((files, (path.parent / str(project_dir)).resolve() if project_dir else None))
    return entries


def _load_one(path: Path, chain: tuple[Path, ...]) -> Project:
    path = path.resolve()
    if path in chain:
        raise ComposeError(f"include cycle: {' -> '.join(str(p) for p in (*chain, path))}")
    doc = read_yaml(path)
    for name, service in (doc.get("services") or {}).items():
        if not isinstance(service, dict):
            raise ComposeError(f"{path}: service {name!r} must be a mapping")
        _normalise_service(service)
    project = Project(doc={k: v for k, v in doc.items() if k != "include"}, files=[path], base_dir=path.parent,
                      service_dirs={name: path.parent for name in doc.get("services") or {}})
    for files, project_dir in _include_entries(doc, path):
        included = _load_many(files, (*chain, path))
        if project_dir is not None:
            included.service_dirs = {name: project_dir for name in included.service_dirs}
        _absorb(project, included, path)
    return project


def _absorb(project: Project, included: Project, path: Path) -> None:
    for key in RESOURCE_KEYS:
        ours = project.doc.get(key) or {}
        theirs = included.doc.get(key) or {}
        clash = sorted(set(ours) & set(theirs))
        if clash:
            raise ComposeError(f"{path}: {key} {clash} are defined both here and in an included file")
        if theirs:
            project.doc[key] = {**theirs, **ours}
    if NATIVE_KEY in included.doc:
        project.doc[NATIVE_KEY] = merge(included.doc[NATIVE_KEY], project.doc.get(NATIVE_KEY, {}))
    project.service_dirs = {**included.service_dirs, **project.service_dirs}
    project.files += [f for f in included.files if f not in project.files]


def _load_many(files: Sequence[Path], chain: tuple[Path, ...]) -> Project:
    project = _load_one(files[0], chain)
    for overlay_path in files[1:]:
        overlay = _load_one(overlay_path, chain)
        project.doc = merge(project.doc, overlay.doc)
        # compose resolves an overlay's relative paths against the first file's folder
        project.service_dirs = {**{n: project.base_dir for n in overlay.service_dirs}, **project.service_dirs}
        project.files += [f for f in overlay.files if f not in project.files]
    return project


def load_project(files: Sequence[Path | str]) -> Project:
    """Load a base compose file plus overlays, with every `include` resolved."""
    if not files:
        raise ComposeError("no compose file given")
    return _load_many([Path(f) for f in files], ())


def compose_variables(path: Path | str, *overlays: Path | str) -> set[str]:
    """Every variable that a compose file, its overlays and what they include refer to."""
    return referenced_variables(load_project([path, *overlays]).doc)


def resolve(project: Project, variables: Mapping[str, str], native: bool = False) -> dict[str, Any]:
    """The project document with every variable expanded.

    `native` leaves out what services that do not run natively (`x-native.disabled`) say, so a variable that
    only such a service requires (`${GRAFANA_ADMIN_PASSWORD:?...}`) does not stop the native runner.
    """
    doc = project.doc
    if native:
        services = {name: ({NATIVE_KEY: service[NATIVE_KEY]} if (service.get(NATIVE_KEY) or {}).get("disabled")
                           else service) for name, service in (doc.get("services") or {}).items()}
        doc = {**doc, "services": services}
    result: dict[str, Any] = interpolate(doc, variables)
    return result
