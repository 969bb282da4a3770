#!/usr/bin/env bash
# Installs the Debian packages the suite uses from the system, each only when its program is missing.
#   scripts/install-debian-packages.sh /usr/bin/chromium=chromium /usr/bin/bwrap=bubblewrap ...
# Each argument is PATH=PACKAGE: the package is installed when PATH (a program or a library) does not exist.
set -euo pipefail
missing=()
for pair in "$@"; do
    program="${pair%%=*}"
    package="${pair#*=}"
    [ -e "$program" ] || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages (${missing[*]}) and apt-get is not available: install them with your package manager." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "missing system packages: run 'apt-get update && apt-get install -y ${missing[*]}' as root." >&2
    exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}"
for pair in "$@"; do
    program="${pair%%=*}"
    [ -e "$program" ] || { echo "${pair#*=} was installed but $program does not exist" >&2; exit 1; }
done
