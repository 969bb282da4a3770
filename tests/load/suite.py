"""A supervised native p3 suite on moved loopback ports in a throw-away DATA_DIR, seeded for the load scenarios."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.stack.runner import ROOT, Stack
from tests.support.procs import free_port

PORTS = ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT", "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT",
         "MCP_PORT")
DOCUMENTS = {
    "mars.md": "# Mars\nPhobos is the larger moon of Mars; Deimos is the smaller one.\n",
    "ops.md": "# Operations\nDatabase backups run every night at 02:00 and are kept for 30 days.\n",
    "python.md": "# Files in Python\nOpen a file with `open(path)` and read it with `.read()` inside a `with` block.\n",
    "france.md": "# France\nParis is the capital of France.\n",
}


@dataclass
class Suite:
    env: dict[str, str]
    stack: Stack
    data: Path
    work: Path
    mcp_key: str

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.env[port]}"

    def pids(self) -> dict[str, int]:
        return {row.name: row.pid for row in self.stack.status() if row.pid and row.state == "running"}

    def load_env(self, profile: str, result: Path, **extra: str) -> dict[str, str]:
        return {**os.environ, "LOAD_GATEWAY_URL": self.url("API_GATEWAY_PORT"), "LOAD_RAG_URL": self.url("RAG_PORT"),
                "LOAD_MCP_URL": self.url("MCP_PORT"), "LOAD_MCP_KEY": self.mcp_key, "LOAD_MCP_DIR": str(self.work),
                "LOAD_COLLECTION": "load", "LOAD_PROFILE": profile, "LOAD_RESULT_FILE": str(result), **extra}


def ai_suite(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, "-m", "services.stack", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"ai-suite {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextmanager
def p3_suite(base: Path | None = None, **settings: str) -> Iterator[Suite]:
    """`ai-suite up p3` (with its supervisor), documents indexed into `load`, a developer MCP key; down after."""
    with tempfile.TemporaryDirectory(prefix="ai-suite-load-", dir=base) as tmp:
        data, work = Path(tmp) / "data", Path(tmp) / "work"
        (data / "documents").mkdir(parents=True)
        work.mkdir()
        for name, text in DOCUMENTS.items():
            (data / "documents" / name).write_text(text)
        (work / "readme.md").write_text("Files the load test reads through MCP.\n")
        models = os.environ.get("MODELS_DIR", str(ROOT / "models"))
        env = {**{name: str(free_port()) for name in PORTS}, "DATA_DIR": str(data), "MODELS_DIR": models,
               "LOG_JSON": "false", "MCP_ALLOWED_ROOTS": str(work), "RAG_LLM_TIMEOUT": "120", **settings}
        ai_suite(env, "up", "p3")
        stack = Stack("p3", env=env)
        try:
            indexed = httpx.post(f"http://127.0.0.1:{env['RAG_PORT']}/index", json={"collection": "load"},
                                 timeout=600, trust_env=False)
            indexed.raise_for_status()
            key = ai_suite(env, "mcp", "user", "add", "loader", "--role", "developer").strip().splitlines()[-1]
            yield Suite(env, stack, data, work, key)
        finally:
            ai_suite(env, "down", timeout=120)


def run_locust(env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Locust headless with the suite's locustfile; the shape (LOAD_PROFILE) decides users and duration."""
    argv = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "30"]
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
