"""`ai --index PATH` and `ai --rag QUESTION`: talk to the RAG service (POST /index, POST /query)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from services.cli.client import error_message, normalise_base_url
from services.cli.config import SUITE_ENV_FILE
from services.cli.exitcodes import ExitCode
from services.cli.render import Notes, render_answer

DEFAULT_RAG_PORT = "8002"
# The repository's docker/ folder: relative DATA_DIR values count from there, as in compose.
DOCKER_DIR = SUITE_ENV_FILE.parent / "docker"


class RagUnreachable(Exception):
    """Nothing answers at the RAG URL."""


class RagError(Exception):
    """The RAG service answered with an error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def rag_url(env: Mapping[str, str]) -> str:
    """AI_RAG_URL, else the local RAG port from the environment or .env."""
    return env.get("AI_RAG_URL") or f"http://127.0.0.1:{env.get('RAG_PORT', DEFAULT_RAG_PORT)}"


def documents_root(env: Mapping[str, str]) -> Path:
    """The host folder the RAG service indexes from: DOCUMENTS_DIR, else ${DATA_DIR}/documents."""
    if env.get("DOCUMENTS_DIR"):
        return Path(env["DOCUMENTS_DIR"]).expanduser().resolve()
    data_dir = Path(env.get("DATA_DIR", "../data")).expanduser()
    return ((data_dir if data_dir.is_absolute() else DOCKER_DIR / data_dir) / "documents").resolve()


def files_to_index(path: Path) -> list[Path]:
    """`path` itself, or the files under it in a stable order; hidden files and folders are left out."""
    if path.is_file():
        return [path]
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in sorted(files) if not name.startswith(".")]
    return found


class RagClient:
    """Synchronous client for the RAG service's JSON API."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = normalise_base_url(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, trust_env=False,
                                  timeout=httpx.Timeout(timeout, connect=5.0))

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.post(path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise RagUnreachable(f"cannot reach the RAG service at {self.base_url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise RagError(f"the RAG service did not answer {path} in time", 504) from exc
        except httpx.TransportError as exc:
            raise RagError(f"the RAG service closed the connection ({exc})", 502) from exc
        if response.status_code >= 400:
            raise RagError(f"RAG service answered {response.status_code}: {error_message(response)}",
                           response.status_code)
        body = response.json()
        return body if isinstance(body, dict) else {}

    def index_paths(self, collection: str, paths: list[str]) -> dict[str, Any]:
        """Index files that the service can read itself (under its DOCUMENTS_DIR)."""
        return self._post("/index", json={"collection": collection, "paths": paths})

    def index_upload(self, collection: str, path: Path) -> dict[str, Any]:
        """Send a file's bytes (it lies outside the service's DOCUMENTS_DIR)."""
        with path.open("rb") as handle:
            return self._post("/index", data={"collection": collection}, files={"files": (path.name, handle)})

    def query(self, question: str, collection: str) -> dict[str, Any]:
        return self._post("/query", json={"query": question, "collection": collection})


@dataclass
class IndexTally:
    """What the per-file /index answers add up to."""

    statuses: dict[str, int] = field(default_factory=dict)
    chunks_added: int = 0
    chunks_removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, report: Mapping[str, Any]) -> None:
        for document in report.get("documents") or []:
            status = str(document.get("status", "indexed"))
            self.statuses[status] = self.statuses.get(status, 0) + 1
        self.chunks_added += int(report.get("chunks_added") or 0)
        self.chunks_removed += int(report.get("chunks_removed") or 0)
        self.skipped += [(str(s.get("path")), str(s.get("reason"))) for s in report.get("skipped") or []]

    def summary(self) -> str:
        documents = sum(self.statuses.values())
        detail = ", ".join(f"{count} {status}" for status, count in sorted(self.statuses.items()))
        text = f"{documents} document{'s' if documents != 1 else ''}"
        text += f" ({detail})" if detail else ""
        return (f"{text}; {self.chunks_added} chunks added, {self.chunks_removed} removed; "
                f"{len(self.skipped)} skipped, {len(self.failed)} failed")


def _plan(target: Path, root: Path) -> tuple[list[Path], bool]:
    """The files to send, and whether the service can read them itself (they lie under its root)."""
    files = files_to_index(target)
    inside = target == root or root in target.parents
    if not inside:
        names: dict[str, Path] = {}
        for path in files:
            if path.name in names:
                # uploads keep only their file name, so the second would replace the first
                raise ValueError(f"{names[path.name]} and {path} would both be uploaded as {path.name!r}; "
                                 f"copy the folder under {root} to index it with its folder names")
            names[path.name] = path
    return files, inside


def _index_one(client: RagClient, collection: str, path: Path, root: Path, inside: bool) -> dict[str, Any]:
    if inside:
        return client.index_paths(collection, [path.relative_to(root).as_posix()])
    return client.index_upload(collection, path)


def run_index(client: RagClient, target: Path, collection: str, root: Path, notes: Notes,
              out: TextIO | None = None) -> ExitCode:
    """Index `target` file by file with a progress bar; print a summary and what was skipped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    target = target.expanduser().resolve()
    if not target.exists():
        notes.error(f"{target} does not exist")
        return ExitCode.USAGE
    try:
        files, inside = _plan(target, root)
    except ValueError as exc:
        notes.error(str(exc))
        return ExitCode.USAGE
    if not files:
        notes.warn(f"no files to index under {target}")
        return ExitCode.OK
    console = Console(file=out or sys.stderr)
    console.quiet = not console.is_terminal  # a bar is for people; a pipe or log gets the summary only
    tally = IndexTally()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[name]}"))
    # transient: the bar gives way to the summary line (and to a one-line error if the service is down)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"indexing into {collection}", total=len(files), name="")
        for path in files:
            progress.update(task, name=path.name)
            try:
                tally.add(_index_one(client, collection, path, root, inside))
            except RagError as exc:
                if exc.status in (401, 403) or exc.status >= 500:
                    progress.stop()
                    notes.error(str(exc))  # the service or a store is down: later files would fail the same way
                    return ExitCode.API_ERROR
                tally.failed.append((str(path), str(exc)))
            progress.advance(task)
    _print_tally(tally, notes)
    return ExitCode.API_ERROR if tally.failed else ExitCode.OK


def _print_tally(tally: IndexTally, notes: Notes) -> None:
    notes.say(tally.summary(), "green" if not tally.failed else "yellow")
    for path, reason in tally.skipped:
        notes.say(f"  skipped {path}: {reason}", "yellow")
    for path, reason in tally.failed:
        notes.say(f"  failed {path}: {reason}", "red")


def format_sources(sources: list[Mapping[str, Any]]) -> Iterator[str]:
    """Numbered source lines, in the order the answer cites them as [n]."""
    for number, source in enumerate(sources, start=1):
        score = source.get("score")
        score_text = f"{score:.3f}" if isinstance(score, int | float) else "?"
        yield f"[{number}] {source.get('document', '?')} (chunk {source.get('chunk', '?')}, score {score_text})"


def run_query(client: RagClient, question: str, collection: str, markdown: bool, notes: Notes,
              out: TextIO | None = None) -> ExitCode:
    """Ask the RAG service; print the answer, then its numbered sources."""
    stream = out or sys.stdout
    if markdown:
        from rich.console import Console

        with Console(file=sys.stderr).status(f"searching {collection} and writing the answer..."):
            body = client.query(question, collection)
    else:
        body = client.query(question, collection)
    render_answer([str(body.get("answer", ""))], markdown, stream)
    sources = body.get("sources") or []
    stream.write("\nSources:\n" if sources else "\n(no sources found in this collection)\n")
    for line in format_sources(sources):
        stream.write(line + "\n")
    stream.flush()
    return ExitCode.OK
