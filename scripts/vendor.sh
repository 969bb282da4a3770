#!/usr/bin/env bash
# `make vendor`: fetch the pinned browser libraries from the npm registry into desktop-app/vendor/ and
# rewrite desktop-app/vendor/SHA256SUMS. Review the diff before committing it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/desktop-app/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent marked@18.3.0 dompurify@3.5.0 @highlightjs/cdn-assets@11.12.0 axe-core@4.14.1 uplot@1.6.32 >/dev/null
unpack() { mkdir -p "$1"; tar -xzf "$2" -C "$1" --strip-components=1; }
unpack marked marked-18.3.0.tgz
unpack dompurify dompurify-3.5.0.tgz
unpack highlight highlightjs-cdn-assets-11.12.0.tgz
unpack axe axe-core-4.14.1.tgz
unpack uplot uplot-1.6.32.tgz
mkdir -p "$vendor"/{marked,dompurify,highlight,axe-core,uplot}
cp marked/lib/marked.esm.js marked/LICENSE "$vendor/marked/"
cp dompurify/dist/purify.es.mjs "$vendor/dompurify/purify.es.js"
cp dompurify/LICENSE "$vendor/dompurify/"
cp highlight/es/highlight.min.js highlight/styles/github-dark.min.css highlight/styles/github.min.css \
    highlight/LICENSE "$vendor/highlight/"
cp axe/axe.min.js axe/LICENSE "$vendor/axe-core/"
cp uplot/dist/uPlot.esm.js uplot/dist/uPlot.min.css uplot/LICENSE "$vendor/uplot/"
cd "$vendor" && sha256sum marked/* dompurify/* highlight/* axe-core/* uplot/* | sort -k2 > SHA256SUMS
echo "vendored into $vendor; SHA256SUMS rewritten"
