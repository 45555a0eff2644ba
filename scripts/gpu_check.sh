#!/usr/bin/env bash
# The GPU check of issue 12, one script, at most 8 minutes on an H100-class machine:
#   1. installs SpikingJelly 2.0.0 and 0.0.0.0.14 (each into its own --target folder, as setup_env.sh does for
#      0.0.0.0.14) and the pure-Python packages SpikingJelly 2.x imports (loguru, SciencePlots) from the wheels
#      in .whl/ (no package index needed; fill .whl/ beforehand with scripts/fetch_gpu_wheels.sh);
#   2. runs tests/test_cuda.py (the `cuda` tests and their CPU parts, sj_sew's own Triton kernels included:
#      backend='fused' against the CPU, in a CUDA graph, under torch.compile) on both lines, and
#      tests/test_triton_kernels.py and tests/test_triton_pack.py (the neuron kernels with their fused BN and
#      connect function, and the spike bit-packing kernels: under Triton's interpreter and compiled) on 2.x;
#   3. runs `scripts/benchmark.py --device cuda --sections cuda` on both lines at a reduced setting;
#   4. writes logs and summary.json to $OUT (or --out DIR; default gpu_check_out/).
# Usage:
#   bash scripts/gpu_check.sh                      # on a GPU machine (python3 with torch, triton, cupy)
#   bash scripts/gpu_check.sh --device cpu         # dry run of the same steps on a CPU machine (a few minutes)
#   bash scripts/gpu_check.sh --tests-only         # steps 1, 2 and 4: a rerun after a fix (about 2 minutes)
# Options: --device cuda|cpu, --out DIR, --python PY, --tests-only. Exit status 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEVICE=cuda
OUTDIR=${OUT:-$ROOT/gpu_check_out}
PY=""
TESTS_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --out) OUTDIR=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --tests-only) TESTS_ONLY=1; shift ;;
        -h|--help) sed -n 2,15p "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (valid: --device cuda|cpu, --out DIR, --python PY, --tests-only)" >&2
           exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
if [ -z "$PY" ]; then
    if [ "$DEVICE" = cpu ] && [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/gpu_check.log
: > "$LOG"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-470}  # seconds for the whole script; each step gets at most what is left
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# Per-step results: name rc seconds, for summary.json
RESULTS=$OUTDIR/.steps
: > "$RESULTS"
step() {  # step NAME MAX_SECONDS LOGFILE -- command...
    local name=$1 max=$2 logfile=$3; shift 4
    local budget; budget=$(left)
    [ "$budget" -lt "$max" ] && max=$budget
    if [ "$max" -lt 15 ]; then
        say "$name: skipped, no time left"; echo "$name 124 0" >> "$RESULTS"; return
    fi
    say "$name (at most ${max}s): $*"
    local t0; t0=$(date +%s)
    timeout -k 10 "$max" "$@" > "$logfile" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    tail -n 5 "$logfile" | sed 's/^/    /' | tee -a "$LOG"
    say "$name: exit $rc in ${dt}s"
    echo "$name $rc $dt" >> "$RESULTS"
}

# 1. SpikingJelly from wheels -------------------------------------------------------------------------------
SITE=$(mktemp -d /tmp/gpu_check_site.XXXXXX)
SJ2=$SITE/sj2
SJ014=$SITE/sj014
install_ok=1
. scripts/_sj_wheels.sh
sj_wheels_install "$PY" "$SJ2" 2 >> "$LOG" 2>&1 || install_ok=0
sj_wheels_install "$PY" "$SJ014" 014 >> "$LOG" 2>&1 || install_ok=0
PP2=$SJ2${PYTHONPATH:+:$PYTHONPATH}
PP014=$SJ014:$SJ2${PYTHONPATH:+:$PYTHONPATH}  # 0.0.0.0.14 first; loguru etc. stay reachable
for line in "2 $PP2" "014 $PP014"; do
    set -- $line
    if ! PYTHONPATH=$2 "$PY" -c "import sj_sew; print('sj_sew on SpikingJelly', sj_sew.SJ_VERSION)" >> "$LOG" 2>&1; then
        install_ok=0
    fi
done
echo "install $(( 1 - install_ok )) $(( $(date +%s) - START ))" >> "$RESULTS"
say "install: $([ $install_ok = 1 ] && echo ok || echo FAILED, see $LOG)"
{
    echo "--- environment"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    "$PY" -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -1
    "$PY" -c "import cupy; print('cupy', cupy.__version__)" 2>&1 | tail -1
} >> "$LOG" 2>&1
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    say "--device cuda but torch.cuda.is_available() is False here; use --device cpu for a dry run"
    exit 2
fi

# 2. tests/test_cuda.py on both lines -----------------------------------------------------------------------
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -rfEs --durations=8 tests/test_cuda.py)
step tests_sj2 170 "$OUTDIR/tests_sj2.log" -- env PYTHONPATH="$PP2" "${PYTEST[@]}"
step tests_sj014 120 "$OUTDIR/tests_sj014.log" -- env PYTHONPATH="$PP014" "${PYTEST[@]}"
step kernels_sj2 150 "$OUTDIR/kernels_sj2.log" -- env PYTHONPATH="$PP2" "$PY" -m pytest -q -p no:cacheprovider -rfEs \
    --durations=5 tests/test_triton_kernels.py tests/test_triton_pack.py

# 3. the GPU benchmark on both lines (reduced setting) -------------------------------------------------------
if [ "$DEVICE" = cuda ]; then
    BENCH2=(--device cuda --N 16 --size 64 --cuda-depths 18 50 --cuda-Ts 4 16 --reps 5 --warmup 2)
    BENCH014=(--device cuda --N 16 --size 64 --cuda-depths 18 --cuda-Ts 4 16 --reps 5 --warmup 2)
else  # dry run: the same code on CPU at a toy size
    BENCH2=(--device cpu --N 2 --size 32 --cuda-depths 18 --cuda-Ts 2 --reps 1 --warmup 1)
    BENCH014=("${BENCH2[@]}")
fi
[ "$TESTS_ONLY" = 1 ] && say "--tests-only: no benchmark"
[ "$TESTS_ONLY" = 1 ] || step bench_sj2 150 "$OUTDIR/bench_sj2.log" -- env PYTHONPATH="$PP2" "$PY" scripts/benchmark.py --sections cuda \
    "${BENCH2[@]}" --json "$OUTDIR/bench_sj2.json" --note "scripts/gpu_check.sh, device $DEVICE"
[ "$TESTS_ONLY" = 1 ] || step bench_sj014 90 "$OUTDIR/bench_sj014.log" -- env PYTHONPATH="$PP014" "$PY" scripts/benchmark.py --sections cuda \
    "${BENCH014[@]}" --json "$OUTDIR/bench_sj014.json" --note "scripts/gpu_check.sh, device $DEVICE"

# 4. summary.json ------------------------------------------------------------------------------------------
"$PY" - "$OUTDIR" "$DEVICE" "$(( $(date +%s) - START ))" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, re, sys
out, device, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = {}
for line in open(os.path.join(out, ".steps")):
    name, rc, sec = line.split()
    steps[name] = {"rc": int(rc), "seconds": int(sec), "ok": rc == "0"}
for name in ("tests_sj2", "tests_sj014", "kernels_sj2"):
    path = os.path.join(out, name + ".log")
    if name in steps and os.path.exists(path):
        text = open(path).read()
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text[-2000:])}
        steps[name]["counts"] = counts
        steps[name]["failures"] = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)[:40]
for name in ("bench_sj2", "bench_sj014"):
    path = os.path.join(out, name + ".json")
    if name in steps and os.path.exists(path):
        steps[name]["results"] = json.load(open(path))
summary = {"device": device, "total_seconds": total, "ok": all(s["ok"] for s in steps.values()), "steps": steps}
try:
    import torch
    summary["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    summary["torch"] = torch.__version__
except Exception as e:
    summary["gpu"] = f"unknown ({e})"
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
brief = {k: {kk: vv for kk, vv in v.items() if kk in ("rc", "seconds", "counts", "failures")} for k, v in steps.items()}
print(json.dumps({"ok": summary["ok"], "total_seconds": total, "gpu": summary.get("gpu"), "steps": brief}, indent=1))
sys.exit(0 if summary["ok"] else 1)
EOF
status=${PIPESTATUS[0]}
rm -rf "$SITE" "$RESULTS"
say "done in $(( $(date +%s) - START ))s; logs and summary.json in $OUTDIR"
exit "$status"
