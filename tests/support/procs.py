"""Start suite services as real processes on free ports, for integration tests and benchmarks."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common.probe import probe
from services.stack.procs import stop_group

ROOT = Path(__file__).resolve().parents[2]


# Ports handed out by this process. Each test run gets a port once, so two services started
# together never share one. They come from below the kernel's ephemeral range, so an outgoing
# connection made between picking a port and binding it cannot take it either.
_HANDED_OUT: set[int] = set()
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A loopback TCP port that is free now and that no earlier call in this process returned."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE[0]}-{_PORT_RANGE[1]}")


def wait_healthy(url: str, deadline_s: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail fast if `proc` exits first."""
    end = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was healthy")
        healthy, last = probe(url, timeout=2.0)
        if healthy:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy within {deadline_s}s ({last})")


@dataclass
class Service:
    """One service process: started with `python -m <module>` and the given environment."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, deadline_s: float = 120.0) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env={**os.environ, **self.env}, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            wait_healthy(self.health_url, deadline_s, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} failed to start: {exc}\n{tail}") from exc
        return self

    def stop(self, deadline_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_group(self.proc.pid, deadline_s)
        self.proc.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
