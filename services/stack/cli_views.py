"""`ai-suite status`, `logs` and `monitoring config`: what the runner shows and writes about a running stack."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.stack.compose import resolve
from services.stack.figures import Figures, active_alerts, from_prometheus, from_services
from services.stack.logrotate import DEFAULT_BACKUPS, backups_of
from services.stack.monitoring import ALERTS, PROMETHEUS, config_files, metrics_path, write_config_files
from services.stack.procs import State, process_of, tail
from services.stack.runner import Stack

EXIT_OK, EXIT_FAILED = 0, 1
COLOURS = {"running": "green", "starting": "yellow", "restarting": "yellow", "exited": "red",
           "crash-loop": "red", "stopped": "dim"}


def _running(stack: Stack, name: str) -> bool:
    entry = State.load(stack.state_path).services.get(name)
    return entry is not None and process_of(entry) is not None


def _base_url(stack: Stack, name: str) -> str:
    port = stack.services[name].ports[0]
    return f"http://{port.host_ip}:{port.port}"


def service_figures(stack: Stack) -> tuple[dict[str, Figures], str]:
    """Figures per service and where they came from (Prometheus, or each service's /metrics)."""
    scraped = [n for n in stack.order if stack.services[n].ports and metrics_path(stack.doc["services"][n])]
    if PROMETHEUS in stack.services and _running(stack, PROMETHEUS):
        figures = from_prometheus(_base_url(stack, PROMETHEUS), scraped)
        if figures:
            return figures, "Prometheus, last 5 minutes"
    urls = {n: _base_url(stack, n) + str(metrics_path(stack.doc["services"][n])) for n in scraped
            if _running(stack, n)}
    return from_services(urls), "each service's /metrics, since it started"


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    return f"{value:.1f}"


def cmd_status(stack: Stack, console: Console) -> int:
    figures, source = service_figures(stack)
    # the three figure columns only when some service answered; a stopped stack keeps the narrow table
    measured = ("tok/s", "p95", "errors") if figures else ()
    table = Table(title=f"ai-suite ({stack.data_dir})", caption=f"tok/s, p95 and errors: {source}" if figures else None)
    for column in ("service", "state", "pid", "port", "health", *measured, "restarts", "last exit"):
        table.add_column(column)
    for row in stack.status():
        health_colour = "green" if row.health == "healthy" else "yellow"
        shown = figures.get(row.name, Figures())
        values = (_show(shown.tokens_per_s, "tok/s"), _show(shown.p95_s, "s"), _show(shown.error_ratio, "%"))
        table.add_row(row.name, f"[{COLOURS.get(row.state, 'white')}]{row.state}[/]",
                      str(row.pid or "-"), ", ".join(map(str, row.ports)) or "-",
                      f"[{health_colour}]{row.health}[/]", *(values if measured else ()), str(row.restarts),
                      escape(row.last_exit or "-"))
    console.print(table)
    _print_alerts(stack, console)
    supervisor = stack.supervisor()
    console.print(f"supervisor: pid {supervisor.pid}" if supervisor else
                  "supervisor: none (services that fail stay down until `ai-suite up`)")
    return EXIT_OK


def _print_alerts(stack: Stack, console: Console) -> None:
    if ALERTS not in stack.services or not _running(stack, ALERTS):
        console.print("alerts: not watched (start with `ai-suite up <phase> --monitoring`)")
        return
    active = active_alerts(_base_url(stack, ALERTS))
    if active is None:
        console.print("[yellow]alerts: the alert receiver does not answer[/]")
    elif not active:
        console.print("alerts: [green]none active[/]")
    else:
        console.print(f"[red]alerts: {len(active)} active[/]")
        for alert in active:
            where = alert["labels"].get("job") or alert["labels"].get("backend") or ""
            console.print(f"  [red]{escape(alert['name'])}[/] {escape(where)} since {escape(alert['starts_at'])}: "
                          f"{escape(alert.get('summary', ''))}")


# -- logs -----------------------------------------------------------------------------------------


def _matching(paths: list[Path], text: str) -> Iterator[str]:
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                if text in line:
                    yield line


def cmd_logs(stack: Stack, args: argparse.Namespace, console: Console) -> int:
    path = stack.data_dir / "logs" / f"{args.service}.log"
    if not path.exists():
        known = ", ".join(stack.order)
        console.print(f"[red]error:[/] no log at {escape(str(path))} (services: {escape(known)})")
        return EXIT_FAILED
    if args.grep is None:
        sys.stdout.write(tail(path, args.lines) + "\n")
    else:
        # the rotated files too, oldest first: a request id from an hour ago is usually in one of them
        rotated = [p for p in reversed(backups_of(path, DEFAULT_BACKUPS * 4)) if p.exists()]
        for line in deque(_matching([*rotated, path], args.grep), maxlen=args.lines):
            sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if args.follow:
        follow(path, args.grep)
    return EXIT_OK


def follow(path: Path, grep: str | None = None) -> None:
    """Print lines appended to `path` (those containing `grep`, if given) until interrupted."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        pending = b""
        while True:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", errors="replace")
                    if grep is None or grep in line:
                        sys.stdout.write(line + "\n")
                sys.stdout.flush()
            elif handle.tell() > path.stat().st_size:
                handle.seek(0)  # the log was truncated (rotated)
            else:
                time.sleep(0.5)


# -- monitoring config ----------------------------------------------------------------------------


def cmd_monitoring_config(stack: Stack, native: bool, console: Console) -> int:
    """Write prometheus.yml and alertmanager.yml: for Docker (service names) or natively (127.0.0.1)."""
    api_key = stack.variables.get("API_KEY") or None
    if native:
        written = stack.write_monitoring_config()
    else:
        # every service, Grafana's required password included: compose needs them all the same
        doc = resolve(stack.project, stack.variables)
        files = config_files(doc, stack.project.service_dirs, stack.project.base_dir, native=False, api_key=api_key)
        written = write_config_files(files, private=api_key is not None)
    for path in written:
        console.print(f"[green]✓[/] {escape(str(path))}")
    return EXIT_OK
