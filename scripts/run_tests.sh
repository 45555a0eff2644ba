#!/usr/bin/env bash
# Run the test suite on both SpikingJelly lines: 2.0.0 (the venv default) and 0.0.0.0.14.
# Extra arguments go to pytest (e.g. -k zoo, or -m slow for the long runs).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${SJ_SEW_VENV:-.venv}
# The tests' tensors are small: one thread each is as fast, and spinning OpenMP threads on a busy 2-core
# machine were seen to make them many times slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
status=0
echo "=== SpikingJelly 2.0.0 ==="
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@" || status=1
echo "=== SpikingJelly 0.0.0.0.14 ==="
PYTHONPATH="$VENV/sj014" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@" || status=1
exit $status
