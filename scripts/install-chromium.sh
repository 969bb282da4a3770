#!/usr/bin/env bash
# Installs Debian's chromium for the MCP web tools (Playwright drives the system browser; it downloads none).
set -euo pipefail
target="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$target" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is missing at $target and apt-get is not available: install Chromium and set CHROMIUM_PATH." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "Chromium is missing: run 'apt-get update && apt-get install -y chromium' as root." >&2
    exit 1
fi
echo "Installing Debian's chromium for the web tools..."
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y chromium
test -x "$target" || { echo "chromium was installed but $target does not exist: set CHROMIUM_PATH" >&2; exit 1; }
