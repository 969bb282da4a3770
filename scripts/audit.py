"""`make audit`: check every package in uv.lock against known vulnerabilities with pip-audit.

pip-audit asks a vulnerability service (the PyPI JSON API, or OSV with `--service osv`) about each
package. Where that service cannot be reached, nothing was checked, so this script says so and fails:
an audit that could not run must never look like a clean one.

Exit codes: 0 no known vulnerability, 1 vulnerabilities found, 2 the audit could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ROOT / "pip-audit-ignore.toml"
EXTRAS = ("all", "desktop", "test")
# What pip-audit prints when it could not ask the service about a package.
UNREACHABLE_MARKERS = ("could not be audited", "ConnectionError", "ServiceError", "Max retries exceeded")


@dataclass(frozen=True)
class Ignored:
    """A reviewed vulnerability that does not apply to the suite."""

    id: str
    package: str
    reason: str


class AuditError(Exception):
    """The audit could not run (bad ignore file, no uv, no service)."""


def load_ignored(path: Path) -> list[Ignored]:
    """Read the reviewed ignore list; every entry needs an id, a package and a reason."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise AuditError(f"{path.name} is not valid TOML: {exc}") from exc
    entries = []
    for number, entry in enumerate(data.get("ignore", []), start=1):
        missing = [key for key in ("id", "package", "reason") if not str(entry.get(key, "")).strip()]
        if missing:
            raise AuditError(f"{path.name}: ignore entry {number} has no {', '.join(missing)}; "
                             "each ignored vulnerability needs the reason it does not apply")
        entries.append(Ignored(entry["id"], entry["package"], entry["reason"]))
    return entries


def find_uv() -> str:
    """The uv that installed the suite (.tools/bin/uv), else one on PATH."""
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        raise AuditError("uv is not installed; run `make install` first")
    return found


def export_lock(uv: str, dest: Path) -> None:
    """Write the locked tree, with hashes, as a requirements file that pip-audit reads without resolving."""
    extras = [arg for extra in EXTRAS for arg in ("--extra", extra)]
    cmd = [uv, "export", "--frozen", "--quiet", "--format", "requirements-txt", "--no-emit-project",
           *extras, "--output-file", str(dest)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise AuditError(f"uv export failed: {result.stderr.strip()}")


def run_pip_audit(requirements: Path, report: Path, ignored: list[Ignored], service: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip_audit", "--strict", "--disable-pip", "--require-hashes",
           "--requirement", str(requirements), "--vulnerability-service", service,
           "--format", "json", "--output", str(report), "--progress-spinner", "off"]
    for item in ignored:
        cmd += ["--ignore-vuln", item.id]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})


def vulnerabilities(report: Path) -> list[tuple[str, str, str, str]]:
    """(package, version, id, fixed versions) for every finding in pip-audit's JSON report."""
    if not report.exists() or not report.read_text().strip():
        return []
    found = []
    for dep in json.loads(report.read_text()).get("dependencies", []):
        for vuln in dep.get("vulns", []):
            found.append((dep["name"], dep.get("version", "?"), vuln["id"], ", ".join(vuln.get("fix_versions", []))))
    return found


def audit(service: str) -> int:
    ignored = load_ignored(IGNORE_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        requirements, report = Path(tmp) / "requirements.txt", Path(tmp) / "report.json"
        export_lock(find_uv(), requirements)
        count = sum(1 for line in requirements.read_text().splitlines() if line and line[0].isalnum())
        print(f"auditing {count} locked packages with pip-audit ({service})", flush=True)
        result = run_pip_audit(requirements, report, ignored, service)
        found = vulnerabilities(report)
        output = result.stdout + result.stderr
        if found:
            print(f"{len(found)} known vulnerabilities:")
            for name, version, vuln_id, fixes in found:
                print(f"  {name} {version}: {vuln_id} (fixed in: {fixes or 'no release yet'})")
            print("Upgrade them (make lock PACKAGE=name, make test), or list each one that does not apply, "
                  f"with the reason, in {IGNORE_FILE.name}.")
            return 1
        if result.returncode != 0:
            if any(marker in output for marker in UNREACHABLE_MARKERS):
                raise AuditError(
                    f"pip-audit could not reach its vulnerability service ({service}), so nothing was checked. "
                    "Run `make audit` on a machine that reaches the internet (pypi.org, or api.osv.dev with "
                    "AUDIT_SERVICE=osv).")
            raise AuditError(f"pip-audit failed:\n{output.strip()[-2000:]}")
    print(f"no known vulnerabilities ({len(ignored)} reviewed exceptions in {IGNORE_FILE.name})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", choices=("pypi", "osv"), default=os.environ.get("AUDIT_SERVICE", "pypi"),
                        help="the vulnerability service pip-audit asks (default: pypi; env AUDIT_SERVICE)")
    args = parser.parse_args(argv)
    try:
        return audit(args.service)
    except AuditError as exc:
        print(f"audit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
