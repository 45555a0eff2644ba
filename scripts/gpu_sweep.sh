#!/usr/bin/env bash
# One prepared call that runs a reproduction sweep's shards (`--shard K/N` of scripts/repro_*.py) as N parallel
# processes on the one GPU, within a time budget, resuming across calls:
#   1. installs SpikingJelly 2.0.0 from the wheels in .whl/ (scripts/_sj_wheels.sh, as gpu_check.sh does) when
#      the python has none; --dry-run uses this checkout's environment as it is;
#   2. runs rounds: the N shards side by side, each under `timeout` for what is left of the budget (less a reserve
#      for step 3). A finished run is read back and a killed one continues from its last checkpoint at the next
#      call (the sweeps do this). Another round starts, time permitting, when a shard printed a line starting
#      "pending:" (runs that wait on another shard's, e.g. on a rate chosen on a tuning seed) and the round
#      finished runs;
#   3. writes the sweep's report (the script with --report-only) and <log dir>/gpu_sweep.json: the device, the
#      budget, every shard's start, end and exit status, how many runs had finished before and after, whether
#      the budget stopped it. Each run's summary.json records the device it trained on (sweep.train_run).
# Usage:
#   bash scripts/gpu_sweep.sh --script scripts/repro_temporal.py --shards 8 --budget-s 480 -- \
#       --out results/temporal_gpu --seeds 5 --epochs 40
#   bash scripts/gpu_sweep.sh --device cpu --dry-run --shards 2 --budget-s 60 --script scripts/repro_temporal.py \
#       -- --out /tmp/sweep        # the same steps on CPU with the script's --quick setting (seconds)
# Options: --script PY (required), --shards N (default 4), --budget-s S (default 480: the whole call, install and
# report included; 20 to 60 s of it are kept for the report), --device cuda|cpu (cpu hides the GPU from the runs),
# --dry-run, --python PY, --log-dir DIR (default <the sweep's --out>/gpu_sweep). After `--`: the script's own
# arguments, which must include --out.
# Exit status: 0 when no shard failed (a shard stopped by the budget has not failed), 1 otherwise, 2 for a usage
# error or a missing GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$(date +%s)

SCRIPT="" SHARDS=4 BUDGET=480 DEVICE=cuda DRY=0 PY="" LOGDIR=""
usage() { echo "gpu_sweep.sh: $*" >&2; echo "see: bash scripts/gpu_sweep.sh --help" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --script) SCRIPT=$2; shift 2 ;;
        --shards) SHARDS=$2; shift 2 ;;
        --budget-s) BUDGET=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        --python) PY=$2; shift 2 ;;
        --log-dir) LOGDIR=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n "2,/^set -uo/p" "$0" | sed "$ d"; exit 0 ;;
        *) usage "unknown argument $1 (valid: --script, --shards, --budget-s, --device, --dry-run, --python, --log-dir, --)" ;;
    esac
done
ARGS=("$@")
[ -n "$SCRIPT" ] && [ -f "$SCRIPT" ] || usage "--script must name a sweep script, e.g. scripts/repro_temporal.py (got '${SCRIPT}')"
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || usage "--shards must be a positive integer, got $SHARDS"
[[ "$BUDGET" =~ ^[1-9][0-9]*$ ]] || usage "--budget-s must be a positive number of seconds, got $BUDGET"
case "$DEVICE" in cuda|cpu) ;; *) usage "--device must be cuda or cpu, got $DEVICE" ;; esac
OUTDIR=""
for ((i = 0; i < ${#ARGS[@]}; i++)); do [ "${ARGS[i]}" = --out ] && OUTDIR=${ARGS[i + 1]:-}; done
[ -n "$OUTDIR" ] || usage "pass the sweep's --out DIR after --, so that every call resumes the same runs"
if [ -z "$PY" ]; then
    if [ "$DRY" = 1 ] && [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
[ "$DRY" = 1 ] && ARGS+=(--quick)
[ "$DEVICE" = cpu ] && export CUDA_VISIBLE_DEVICES=""  # the runs pick cuda where they see one
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
LOGDIR=${LOGDIR:-$OUTDIR/gpu_sweep}
mkdir -p "$LOGDIR" "$OUTDIR"
LOG=$LOGDIR/gpu_sweep.log
EVENTS=$LOGDIR/.shards
: > "$EVENTS"
say() { echo "[gpu_sweep $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
finished() { find "$OUTDIR" -name summary.json -path '*seed*' 2>/dev/null | wc -l; }
say "call: $SCRIPT, $SHARDS shards, budget ${BUDGET}s, device $DEVICE$([ "$DRY" = 1 ] && echo ', dry run (--quick)'); args: ${ARGS[*]}"

# 1. SpikingJelly ----------------------------------------------------------------------------------------------
SITE=""
if [ "$DRY" = 0 ] && ! "$PY" -c "import spikingjelly" >/dev/null 2>&1; then
    SITE=$(mktemp -d /tmp/gpu_sweep_site.XXXXXX)
    . scripts/_sj_wheels.sh
    sj_wheels_install "$PY" "$SITE/sj2" 2 >> "$LOG" 2>&1 || { say "install of SpikingJelly failed, see $LOG"; exit 2; }
    export PYTHONPATH=$SITE/sj2${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    say "--device cuda but torch.cuda.is_available() is False here; use --device cpu"
    exit 2
fi

# 2. rounds of N shards side by side ------------------------------------------------------------------------------
RESERVE=$(( BUDGET / 5 < 20 ? 20 : (BUDGET / 5 > 60 ? 60 : BUDGET / 5) ))  # for the report: 20 to 60 s
BEFORE=$(finished)
STOPPED=0 FAILED=0 ROUND=0
while :; do
    budget=$(( $(left) - RESERVE ))
    if [ "$budget" -lt 5 ]; then STOPPED=1; say "no time left for another round"; break; fi
    ROUND=$(( ROUND + 1 ))
    had=$(finished)
    say "round $ROUND: $SHARDS shards, at most ${budget}s each; $had runs finished so far"
    pids=()
    for ((k = 0; k < SHARDS; k++)); do
        (
            t0=$(date +%s)
            timeout -k 15 "$budget" "$PY" "$SCRIPT" "${ARGS[@]}" --shard "$k/$SHARDS" \
                > "$LOGDIR/round${ROUND}_shard${k}.log" 2>&1
            rc=$?
            echo "$ROUND $k $t0 $(date +%s) $rc" >> "$EVENTS"
        ) &
        pids+=($!)
    done
    wait "${pids[@]}"
    round_rc=$(awk -v r="$ROUND" '$1 == r {print $5}' "$EVENTS" | sort -u | tr '\n' ' ')
    now=$(finished)
    say "round $ROUND done: exit statuses ${round_rc}; $now runs finished"
    for rc in $round_rc; do
        case "$rc" in 0) ;; 124|137) STOPPED=1 ;; *) FAILED=1 ;; esac
    done
    [ "$FAILED" = 1 ] && { say "a shard failed: see $LOGDIR/round${ROUND}_shard*.log"; break; }
    [ "$STOPPED" = 1 ] && { say "the budget stopped the shards; the next call resumes their runs"; break; }
    # another round only for runs a shard left waiting on another's (it prints a line starting "pending:")
    grep -qs '^pending:' "$LOGDIR"/round${ROUND}_shard*.log && [ "$now" -gt "$had" ] || break
done

# 3. report and gpu_sweep.json ------------------------------------------------------------------------------------
timeout -k 10 $(( $(left) > 20 ? $(left) : 20 )) "$PY" "$SCRIPT" "${ARGS[@]}" --report-only > "$LOGDIR/report.log" 2>&1
REPORT_RC=$?
tail -n 12 "$LOGDIR/report.log" | tee -a "$LOG"
"$PY" - "$LOGDIR" "$DEVICE" "$BUDGET" "$SHARDS" "$BEFORE" "$(finished)" "$STOPPED" "$FAILED" "$REPORT_RC" \
    "$(( $(date +%s) - START ))" "$SCRIPT" "${ARGS[*]}" <<'EOF'
import json, os, sys
logdir, device, budget, shards, before, after, stopped, failed, report_rc, total, script, args = sys.argv[1:]
rounds = {}
for line in open(os.path.join(logdir, ".shards")):
    r, k, t0, t1, rc = map(int, line.split())
    rounds.setdefault(r, []).append({"shard": k, "start": t0, "end": t1, "rc": rc})
gpu = None
if device == "cuda":
    import torch
    gpu = torch.cuda.get_device_name(0)
record = {"script": script, "args": args, "device": device, "gpu": gpu, "budget_s": int(budget),
          "shards": int(shards), "rounds": [sorted(rounds[r], key=lambda s: s["shard"]) for r in sorted(rounds)],
          "runs_finished_before": int(before), "runs_finished_after": int(after),
          "stopped_by_budget": stopped == "1", "shard_failed": failed == "1", "report_rc": int(report_rc),
          "total_seconds": int(total)}
json.dump(record, open(os.path.join(logdir, "gpu_sweep.json"), "w"), indent=1)
EOF
rm -f "$EVENTS"
[ -n "$SITE" ] && rm -rf "$SITE"
say "done in $(( $(date +%s) - START ))s: runs finished $BEFORE -> $(finished); budget stop: $STOPPED; log $LOGDIR"
[ "$FAILED" = 0 ] && [ "$REPORT_RC" = 0 ]
