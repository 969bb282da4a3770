"""Small real HTTP servers wired into a compose file, for the native runner's and supervisor's tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psutil
import yaml

from tests.support.procs import free_port

SERVER = textwrap.dedent('''
    import http.server, os, signal, subprocess, sys, time
    port = int(sys.argv[1])
    ready_at = time.monotonic() + float(os.environ.get("READY_AFTER", "0"))
    if os.environ.get("CRASH_AFTER"):
        # serve until then, then die with exit code 3, as a crashing service would
        import threading
        threading.Timer(float(os.environ["CRASH_AFTER"]), lambda: os._exit(3)).start()
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("SPAWN_CHILD"):
        # one helper in the service's process group, one that leaves it
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = time.monotonic() >= ready_at
            body = os.environ.get("ANSWER", "ok").encode() if ok else b"loading"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    print("serving on", port, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
''')


def web(port_var: str, **extra: object) -> dict:
    return {
        "image": "x",
        "command": ["python", "${APP_DIR}/server.py", f"${{{port_var}}}"],
        "ports": [f"127.0.0.1:${{{port_var}}}:${{{port_var}}}"],
        "healthcheck": {"test": ["CMD", "python", "-m", "services.common.probe",
                                 f"http://127.0.0.1:${{{port_var}}}/health"]},
        **extra,
    }


HEALTHY = {"condition": "service_healthy"}


def make_stack(tmp_path: Path, services: dict, **native: object) -> tuple[Path, dict[str, str]]:
    """docker/compose.p1.yml under `tmp_path` with these services; returns it and the variables it needs."""
    (tmp_path / "server.py").write_text(SERVER, encoding="utf-8")
    doc = {"x-native": {"data_dir": "${DATA_DIR}", **native}, "services": services}
    compose = tmp_path / "docker" / "compose.p1.yml"
    compose.parent.mkdir(exist_ok=True)
    compose.write_text(yaml.safe_dump(doc), encoding="utf-8")
    env = {"APP_DIR": str(tmp_path), "DATA_DIR": str(tmp_path / "data"),
           "BACKEND_PORT": str(free_port()), "FRONT_PORT": str(free_port())}
    return compose, env


def tree(pid: int) -> list[int]:
    proc = psutil.Process(pid)
    return [pid, *(child.pid for child in proc.children(recursive=True))]


def all_gone(pids: list[int]) -> bool:
    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(pid) for pid in pids)
