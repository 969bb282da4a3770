#!/usr/bin/env bash
# Install the suite into a virtual environment and put `ai` and `ai-suite` on the PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
PREFIX="${HOME}/.local"
EXTRAS="all"
VENV="${ROOT}/.venv"
PYTHON=""
LINKS_ONLY=0
COMMANDS=(ai ai-suite)

usage() {
    cat <<USAGE
usage: ./install.sh [--prefix DIR] [--extras LIST] [--venv DIR] [--python PY] [--links-only]

Creates or reuses the virtual environment, installs the suite into it in editable mode with the
exact versions and hashes of uv.lock (uv sync --frozen --inexact --extra EXTRAS; uv itself comes from
requirements/uv.txt, hash-checked, into .tools/), then links the commands ${COMMANDS[*]} into
PREFIX/bin, so they work from any folder. Running it again is safe.

options:
  --prefix DIR    link the commands into DIR/bin (default: \$HOME/.local)
  --extras LIST   extras, comma separated (default: all; "cli" is enough for the ai command)
  --venv DIR      virtual environment to create or reuse (default: ${ROOT}/.venv)
  --python PY     Python 3.11+ used to create the venv (default: python3.13, python3.12, python3.11
                  or python3, the first that is 3.11+)
  --links-only    skip pip and only (re)create the links; the venv must already hold the commands
  -h, --help      show this help
USAGE
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

need_value() { [[ $# -ge 2 && -n "$2" ]] || { echo "install.sh: error: $1 needs a value" >&2; usage >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --extras) need_value "$@"; EXTRAS="$2"; shift 2 ;;
        --extras=*) EXTRAS="${1#*=}"; shift ;;
        --venv) need_value "$@"; VENV="$2"; shift 2 ;;
        --venv=*) VENV="${1#*=}"; shift ;;
        --python) need_value "$@"; PYTHON="$2"; shift 2 ;;
        --python=*) PYTHON="${1#*=}"; shift ;;
        --links-only) LINKS_ONLY=1; shift ;;
        *) echo "install.sh: error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

is_py311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }

find_python() {
    if [[ -n "$PYTHON" ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 || die "--python $PYTHON: not found"
        is_py311 "$PYTHON" || die "--python $PYTHON is older than Python 3.11"
        echo "$PYTHON"
        return
    fi
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    die "Python 3.11 or newer is needed; install it (e.g. apt-get install python3.11 python3.11-venv) or pass --python"
}

absolute() { mkdir -p "$1" && (cd "$1" && pwd -P); }

prepare_venv() {
    if [[ -x "$VENV/bin/python" ]]; then
        is_py311 "$VENV/bin/python" || die "$VENV uses a Python older than 3.11; remove it and run install.sh again"
        say "using the virtual environment $VENV"
        return
    fi
    [[ -e "$VENV" ]] && die "$VENV exists but holds no bin/python; remove it or pass --venv"
    local python
    python="$(find_python)"
    say "creating the virtual environment $VENV with $python"
    "$python" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
}

link_commands() {
    local bindir="$1" cmd target link
    mkdir -p "$bindir"
    for cmd in "${COMMANDS[@]}"; do
        target="$VENV/bin/$cmd"
        [[ -x "$target" ]] || die "$target is missing; run install.sh without --links-only"
        link="$bindir/$cmd"
        if [[ -e "$link" && ! -L "$link" ]]; then
            die "$link exists and is not a link; move it away or choose another --prefix"
        fi
        ln -sfn "$target" "$link"
        # Check from another folder, as a user would run it.
        (cd / && "$link" --help >/dev/null) || die "$link --help failed; the installation is broken"
        say "linked $link -> $target"
    done
}

path_hint() {
    local bindir="$1"
    case ":${PATH}:" in
        *":${bindir}:"*) ;;
        *)
            echo "install.sh: warning: $bindir is not on your PATH. Add this line to ~/.bashrc or ~/.zshrc:" >&2
            echo "    export PATH=\"$bindir:\$PATH\"" >&2
            ;;
    esac
}

if [[ "$LINKS_ONLY" -eq 0 ]]; then
    prepare_venv
fi
[[ -d "$VENV" ]] || die "$VENV does not exist; run install.sh without --links-only"
VENV="$(cd "$VENV" && pwd -P)"
ensure_uv() {
    local tools="$ROOT/.tools"
    if [[ ! -x "$tools/bin/uv" ]]; then
        [[ -x "$tools/bin/python" ]] || "$VENV/bin/python" -m venv "$tools" || die "could not create $tools"
        "$tools/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
            -r "$ROOT/requirements/uv.txt" || die "could not install uv from requirements/uv.txt"
    fi
    echo "$tools/bin/uv"
}

install_locked() {
    local uv extra
    local -a extras=()
    uv="$(ensure_uv)"
    IFS=',' read -ra names <<< "$EXTRAS"
    for extra in "${names[@]}"; do
        [[ -n "$extra" ]] && extras+=(--extra "$extra")
    done
    # --inexact: add what the extras need and never remove what another install put there.
    (cd "$ROOT" && UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON="$VENV/bin/python" UV_PYTHON_DOWNLOADS=never \
        "$uv" sync --frozen --inexact "${extras[@]}") || die "installing from uv.lock failed"
}

if [[ "$LINKS_ONLY" -eq 0 ]]; then
    say "installing the suite with extras [$EXTRAS] from uv.lock (llama-cpp-python builds from source the first time)"
    install_locked
fi
BINDIR="$(absolute "$PREFIX")/bin"
link_commands "$BINDIR"
path_hint "$BINDIR"
say "done: try \`ai --help\` or \`ai-suite --help\`"
