"""Loading compose projects: include, overlays, normalisation and variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.stack.compose import ComposeError, compose_variables, load_project, merge, resolve


def write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def service(port_var: str, **extra: object) -> dict:
    return {"image": "x", "command": ["python", "-m", "x"],
            "ports": [f"127.0.0.1:${{{port_var}:-1}}:${{{port_var}:-1}}"], **extra}


def test_include_resolves_relative_to_the_including_file(tmp_path: Path) -> None:
    write(tmp_path / "base" / "p1.yml", {"services": {"a": service("A_PORT")}, "x-native": {"paths": {"/a": "1"}}})
    top = write(tmp_path / "p2.yml", {
        "include": ["base/p1.yml"],
        "services": {"b": service("B_PORT", depends_on=["a"])},
        "x-native": {"paths": {"/b": "2"}},
    })
    project = load_project([top])
    assert list(project.services) == ["a", "b"]
    assert "include" not in project.doc
    assert project.service_dirs == {"a": tmp_path / "base", "b": tmp_path}
    assert project.doc["x-native"]["paths"] == {"/a": "1", "/b": "2"}
    assert set(project.files) == {top.resolve(), (tmp_path / "base" / "p1.yml").resolve()}
    # the short depends_on form is kept visible as "started", which our rules reject
    assert project.services["b"]["depends_on"] == {"a": {"condition": "service_started"}}


def test_include_long_form_with_project_directory(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "inc.yml", {"services": {"a": service("A_PORT")}})
    top = write(tmp_path / "top.yml", {"include": [{"path": "sub/inc.yml", "project_directory": "elsewhere"}]})
    assert load_project([top]).service_dirs == {"a": tmp_path / "elsewhere"}


def test_include_conflict_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "inc.yml", {"services": {"a": service("A_PORT")}})
    top = write(tmp_path / "top.yml", {"include": ["inc.yml"], "services": {"a": service("B_PORT")}})
    with pytest.raises(ComposeError, match=r"services \['a'\] are defined both here and in an included file"):
        load_project([top])


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "one.yml", {"include": ["two.yml"]})
    write(tmp_path / "two.yml", {"include": ["one.yml"]})
    with pytest.raises(ComposeError, match="include cycle"):
        load_project([tmp_path / "one.yml"])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="compose file not found"):
        load_project([tmp_path / "absent.yml"])
    (tmp_path / "bad.yml").write_text("services: [unclosed", encoding="utf-8")
    with pytest.raises(ComposeError, match="invalid YAML"):
        load_project([tmp_path / "bad.yml"])
    (tmp_path / "list.yml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ComposeError, match="must be a mapping"):
        load_project([tmp_path / "list.yml"])


def test_overlay_merges_like_compose(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yml", {"services": {"a": {
        "image": "x", "command": ["python", "-m", "a"], "environment": ["N_GPU_LAYERS=0", "KEEP=1"],
        "ports": ["127.0.0.1:1:1"], "build": {"context": "..", "target": "cpu"},
    }}})
    gpu = write(tmp_path / "gpu.yml", {"services": {"a": {
        "command": ["python", "-m", "a", "--gpu"], "environment": {"N_GPU_LAYERS": "99"},
        "ports": ["127.0.0.1:2:2"], "build": {"target": "cuda"},
        "deploy": {"resources": {"reservations": {"devices": [{"driver": "nvidia", "capabilities": ["gpu"]}]}}},
    }}})
    merged = load_project([base, gpu]).services["a"]
    assert merged["command"] == ["python", "-m", "a", "--gpu"]  # replaced, not appended
    assert merged["environment"] == {"N_GPU_LAYERS": "99", "KEEP": "1"}
    assert merged["ports"] == ["127.0.0.1:1:1", "127.0.0.1:2:2"]
    assert merged["build"] == {"context": "..", "target": "cuda"}
    assert merged["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_merge_keeps_base_untouched() -> None:
    base = {"a": {"b": [1]}}
    assert merge(base, {"a": {"b": [1, 2], "c": 3}}) == {"a": {"b": [1, 2], "c": 3}}
    assert base == {"a": {"b": [1]}}


def test_compose_variables_cover_includes_and_overlays(tmp_path: Path) -> None:
    write(tmp_path / "inc.yml", {"services": {"a": service("A_PORT", environment={"M": "${MODEL:-x}"})}})
    top = write(tmp_path / "top.yml", {"include": ["inc.yml"], "services": {"b": service("B_PORT")}})
    overlay = write(tmp_path / "gpu.yml", {"services": {"b": {"environment": {"L": "${LAYERS:-${FALLBACK}}"}}}})
    assert compose_variables(top) == {"A_PORT", "MODEL", "B_PORT"}
    assert compose_variables(top, overlay) == {"A_PORT", "MODEL", "B_PORT", "LAYERS", "FALLBACK"}


def test_resolve_interpolates_the_whole_project(tmp_path: Path) -> None:
    top = write(tmp_path / "top.yml", {"services": {"a": service("A_PORT")}})
    doc = resolve(load_project([top]), {"A_PORT": "7001"})
    assert doc["services"]["a"]["ports"] == ["127.0.0.1:7001:7001"]
