"""Crash consistency: a training run killed with SIGKILL at random instants, mid-epoch and while a checkpoint
is being written, then resumed each time, ends exactly where an uninterrupted run ends (metrics, last
checkpoint, selected weights), with no temporary file left behind."""
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import sj_sew
from sj_sew import training

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--dataset", "events", "--data-option", "per_class=12", "--notation",
       "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10", "--T", "4", "--T-train", "3", "--optimizer", "sgd",
       "--lr", "0.05", "--batch-size", "24", "--seed", "5", "--epochs", "10", "--val-fraction", "0.25",
       "--no-progress", "--no-tensorboard", "--device", "cpu", "--threads", "1"]

# The child announces each checkpoint write and holds it open a moment (temporary file written, not yet
# renamed), so that kills can be aimed at writes as well as at training.
CHILD = textwrap.dedent("""
    import sys, time
    from sj_sew.training import checkpoint, cli, run
    real_save = checkpoint.torch.save
    def announced_save(obj, f):
        print("writing", flush=True)
        real_save(obj, f)
        time.sleep(0.15)
    checkpoint.torch.save = announced_save
    cli.main(sys.argv[1:])
    print("done", flush=True)
""")

pytestmark = pytest.mark.skipif(not sj_sew.SJ2, reason="one SpikingJelly line is enough for the fault test")


def _child(argv):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)


def _kill_at(proc, writes_before: int, extra_delay: float) -> bool:
    """Let ``proc`` announce ``writes_before`` checkpoint writes, wait ``extra_delay`` s, SIGKILL it.
    Returns False if it finished first."""
    seen = 0
    while seen < writes_before:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            return False
        seen += line.strip() == "writing"
    if extra_delay:
        import time

        time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _records(out: Path):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in training.read_metrics(out / "metrics.jsonl")]


def _same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    ref = _child(RUN + ["--out", str(full)])
    assert ref.communicate()[0].strip().endswith("done")

    rng = random.Random(2026)
    kills, started, torn_writes = 0, False, 0
    while kills < 8:
        argv = RUN + ["--out", str(cut)] + (["--resume"] if started else [])
        proc = _child(argv)
        # even kills land inside a checkpoint write (0-0.1 s into its 0.15 s), odd ones in training
        during_write = kills % 2 == 0
        delay = rng.uniform(0.0, 0.1) if during_write else rng.uniform(0.2, 0.8)
        if not _kill_at(proc, 1, delay):  # a child makes at most one epoch of progress
            pytest.fail("the run finished before the planned kills; make it longer")
        kills += 1
        torn_writes += bool(list(cut.glob(".*.pt.tmp*")))  # killed with a checkpoint half-way to its rename
        started = started or (cut / "checkpoint.pt").exists()
    assert torn_writes >= 3, "the kills must hit checkpoint writes too"
    last = _child(RUN + ["--out", str(cut), "--resume"])
    assert last.communicate()[0].strip().endswith("done")

    assert _records(cut) == _records(full)
    a, b = training.read_checkpoint(full / "checkpoint.pt"), training.read_checkpoint(cut / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 9 and a["best"] == b["best"]
    _same_tensors(a["model"], b["model"])
    best_a, best_b = training.read_checkpoint(full / "best.pt"), training.read_checkpoint(cut / "best.pt")
    assert best_b["epoch"] == b["best"]["epoch"] == best_a["epoch"], "the selected weights are the reported epoch's"
    _same_tensors(best_a["model"], best_b["model"])
    assert sorted(p.name for p in cut.iterdir()) == sorted(p.name for p in full.iterdir()) == \
        ["best.pt", "checkpoint.pt", "config.json", "curves.png", "metrics.jsonl", "summary.json"]
