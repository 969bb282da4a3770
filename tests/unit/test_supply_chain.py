"""The install is the lock: hashes for every package, the venv equal to uv.lock, audits that never pass silently."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.procs import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import audit  # noqa: E402

LOCK = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
PROJECT = "local-ai-suite"


def _uv() -> str:
    try:
        return audit.find_uv()
    except audit.AuditError:
        pytest.fail("uv is missing: `make install` puts the locked uv into .tools/bin")


def _locked(name: str) -> list[dict]:
    return [p for p in LOCK["package"] if p["name"] == name]


def test_the_lock_matches_pyproject() -> None:
    result = subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "uv.lock is out of date with pyproject.toml; run `make lock`:\n" + result.stderr


def test_the_installed_environment_is_exactly_the_lock() -> None:
    exported = subprocess.run(
        [_uv(), "export", "--frozen", "--quiet", "--format", "requirements-txt", "--no-hashes", "--no-header",
         "--no-annotate", "--no-emit-project", "--extra", "all", "--extra", "desktop", "--extra", "test"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    expected = {}
    for line in exported.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            expected[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) != PROJECT
    }
    assert len(expected) > 150
    assert installed == expected


def test_every_locked_package_from_the_registry_carries_a_sha256() -> None:
    registry = [p for p in LOCK["package"] if "registry" in p.get("source", {})]
    assert len(registry) > 150
    for package in registry:
        artifacts = [package["sdist"]] if "sdist" in package else []
        artifacts += package.get("wheels", [])
        assert artifacts, package["name"]
        assert all(a["hash"].startswith("sha256:") and len(a["hash"]) == 71 for a in artifacts), package["name"]


def test_known_bad_releases_are_kept_out_of_the_lock() -> None:
    (lxml,) = _locked("lxml")
    assert tuple(int(part) for part in lxml["version"].split(".")[:2]) < (6, 2), "lxml 6.2 breaks .docx reading"
    (litellm,) = _locked("litellm")
    assert litellm["version"] not in {"1.82.7", "1.82.8"}, "compromised litellm release"


def test_the_source_builds_stay_pinned_in_the_lock() -> None:
    (llama,) = _locked("llama-cpp-python")
    assert llama["version"] == "0.3.36" and llama["sdist"]["hash"].startswith("sha256:")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    build_pins = pyproject["tool"]["uv"]["build-constraint-dependencies"]
    assert all("==" in pin for pin in build_pins)
    assert {Requirement(pin).name for pin in build_pins} >= {"setuptools", "scikit-build-core"}


def test_audit_fails_plainly_when_the_vulnerability_service_cannot_be_reached() -> None:
    # Port 9 on loopback refuses connections: the same as a machine with no internet.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "could not reach its vulnerability service" in result.stderr
    assert "nothing was checked" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_ignored_vulnerability_needs_a_reason(tmp_path: Path) -> None:
    reviewed = tmp_path / "ok.toml"
    reviewed.write_text('[[ignore]]\nid = "GHSA-1"\npackage = "x"\nreason = "not reachable from the suite"\n')
    assert audit.load_ignored(reviewed) == [audit.Ignored("GHSA-1", "x", "not reachable from the suite")]
    unexplained = tmp_path / "bad.toml"
    unexplained.write_text('[[ignore]]\nid = "GHSA-2"\npackage = "y"\nreason = " "\n')
    with pytest.raises(audit.AuditError, match="no reason"):
        audit.load_ignored(unexplained)
    assert audit.load_ignored(ROOT / "pip-audit-ignore.toml") == []
