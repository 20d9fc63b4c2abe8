#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then pytest. Integration tests read the CIFAR-10 copy in
# $HARNESS_DATA_DIR (CI sets it to ../shared/data). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
set +e
"${HARNESS_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$status"
