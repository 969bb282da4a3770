"""llama.cpp's own tools (llama-server, llama-batched-bench), built from the locked llama-cpp-python sdist.

The sdist vendors the llama.cpp that the suite runs, so the comparison is engine against engine at one
version. The build takes about 10 minutes on 2 cores and is cached under DATA_DIR/cache.
`python -m tests.bench.llamacpp` builds it (or finds it) and prints the folder of the binaries.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from tests.support.procs import ROOT

PACKAGE = "llama-cpp-python"
TARGETS = ("llama-server", "llama-batched-bench")
# The same flags as the locked llama-cpp-python build (pyproject, ADR 0005): llama.cpp's AMX kernels crash
# on Q4_1 models on Sapphire Rapids, and -march=native turns them on there.
CMAKE_FLAGS = ["-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DCMAKE_C_FLAGS=-U__AMX_INT8__",
               "-DCMAKE_CXX_FLAGS=-U__AMX_INT8__", "-DCMAKE_BUILD_TYPE=Release"]


def locked_sdist() -> tuple[str, str, str]:
    """(version, file name, sha256) of the llama-cpp-python sdist that uv.lock pins."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    for package in lock["package"]:
        if package["name"] == PACKAGE:
            sdist = package["sdist"]
            return package["version"], sdist["url"].rsplit("/", 1)[1], sdist["hash"].removeprefix("sha256:")
    raise LookupError(f"{PACKAGE} is not in uv.lock")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(folder: Path) -> Path:
    """The locked sdist in `folder`, downloaded with pip when absent, and always hash-checked."""
    version, name, sha256 = locked_sdist()
    path = folder / name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--no-binary", ":all:", f"{PACKAGE}=={version}", "-d", str(folder)], check=True)
    actual = sha256_of(path)
    if actual != sha256:
        path.unlink()
        raise RuntimeError(f"{name}: sha256 {actual} does not match uv.lock ({sha256}); removed it")
    return path


def build_dir(data_dir: Path) -> Path:
    version, _, _ = locked_sdist()
    return data_dir / "cache" / f"llama.cpp-{version}"


def build_tools(data_dir: Path, jobs: int = 2) -> Path:
    """The folder holding llama-server and llama-batched-bench, built once per locked version."""
    root = build_dir(data_dir)
    bin_dir = root / "build" / "bin"
    if all((bin_dir / target).exists() for target in TARGETS):
        return bin_dir
    sdist = fetch_sdist(root / "sdist")
    source = root / "src"
    if not (source / "CMakeLists.txt").exists():
        shutil.rmtree(source, ignore_errors=True)
        prefix = sdist.name.removesuffix(".tar.gz") + "/vendor/llama.cpp/"
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(source, members=members, filter="data")
    build = root / "build"
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS], check=True)
    subprocess.run(["cmake", "--build", str(build), f"-j{jobs}", "--target", *TARGETS], check=True)
    return bin_dir


def main() -> None:
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()
    print(build_tools(data_dir))  # noqa: T201 - the command's answer


if __name__ == "__main__":
    main()
