"""scripts/gpu_sweep.sh, the prepared GPU call, in its CPU dry run (--device cpu --dry-run: the sweep's --quick
setting): its shards run side by side, the budget stops them cleanly, the next call resumes and finishes, and
every run records its device. The usage errors are refused before anything runs."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "scripts" / "gpu_sweep.sh"


def call(*args, timeout=600):
    return subprocess.run(["bash", str(SWEEP), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("args, message", [
    ([], "--script must name a sweep script"),
    (["--script", "scripts/repro_temporal.py"], "pass the sweep's --out DIR"),
    (["--script", "scripts/repro_temporal.py", "--device", "tpu", "--", "--out", "x"], "--device must be cuda or cpu"),
    (["--script", "scripts/repro_temporal.py", "--shards", "0", "--", "--out", "x"], "--shards must be a positive"),
    (["--script", "scripts/repro_temporal.py", "--budget-s", "-5", "--", "--out", "x"], "--budget-s must be"),
    (["--bogus"], "unknown argument --bogus"),
])
def test_usage_errors(args, message):
    r = call(*args, timeout=30)
    assert r.returncode == 2 and message in r.stderr


def summaries(out: Path) -> list[Path]:
    return sorted(out.glob("runs/*/*/seed*/summary.json"))


@pytest.mark.slow
def test_dry_run_stops_on_budget_then_resumes(tmp_path):
    out = tmp_path / "sweep"
    sweep = ["--device", "cpu", "--dry-run", "--shards", "2", "--script", "scripts/repro_temporal.py", "--",
             "--out", out, "--cells", "T4", "T8", "--lrs", "0.001", "0.003", "--no-readout"]
    first = call("--budget-s", 28, *sweep)  # 20 s kept for the report: the shards get 8 s
    assert first.returncode == 0, first.stdout + first.stderr
    record = json.loads((out / "gpu_sweep" / "gpu_sweep.json").read_text())
    assert record["stopped_by_budget"] and not record["shard_failed"] and record["device"] == "cpu"
    assert {s["rc"] for s in record["rounds"][-1]} & {124, 137}  # killed by the budget, not failed
    assert record["runs_finished_after"] < 6  # 2 cells x (2 tuning rates + 1 reported seed)
    done_first = {p: p.stat().st_mtime_ns for p in summaries(out)}

    second = call("--budget-s", 400, *sweep)
    assert second.returncode == 0, second.stdout + second.stderr
    record = json.loads((out / "gpu_sweep" / "gpu_sweep.json").read_text())
    assert not record["stopped_by_budget"] and record["runs_finished_before"] == len(done_first)
    assert record["runs_finished_after"] == 6 and len(summaries(out)) == 6
    first_round = record["rounds"][0]
    assert len(first_round) == 2 and max(s["start"] for s in first_round) < min(s["end"] for s in first_round)
    for path, mtime in done_first.items():  # finished runs are read back, not trained again
        assert path.stat().st_mtime_ns == mtime
    assert {json.loads(p.read_text())["device"] for p in summaries(out)} == {"cpu"}
    report = json.loads((out / "temporal.json").read_text())
    assert report["meta"]["complete"] and report["meta"]["devices"] == ["cpu"]
    assert set(report["table"]) == {"T4", "T8"} and all(r["lr"] in (0.001, 0.003) for r in report["table"].values())
