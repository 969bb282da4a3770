#!/usr/bin/env bash
# `make test`: the in-process tests (tests/unit) and the real-stack ones (tests/integration, tests/e2e) run as two
# pytest processes side by side. The real-stack tests spend most of their time waiting for services, so the
# two together fit a 2-core machine in far less time than one after the other. With arguments, one pytest runs
# them as given (`make test PYTEST_ARGS=tests/unit/test_x.py`).
#   scripts/run-tests.sh BIN_DIR [PYTEST ARGS...]
set -uo pipefail
bin="$1"
shift
if [ "$#" -gt 0 ]; then
    exec "$bin/pytest" "$@"
fi
unit_log="$(mktemp -t ai-suite-unit-tests.XXXXXX)"
trap 'rm -f "$unit_log"' EXIT
"$bin/pytest" tests/unit >"$unit_log" 2>&1 &
unit=$!
"$bin/pytest" tests/integration tests/e2e
stacks=$?
wait "$unit"
units=$?
echo "================================ tests/unit ================================"
cat "$unit_log"
echo "tests/unit: exit $units; tests/integration and tests/e2e: exit $stacks"
[ "$units" -eq 0 ] && [ "$stacks" -eq 0 ]
