"""Shared by the reproduction scripts: run grids of training runs (scripts/train.py's flags, run through
sj_sew.training) and aggregate over seeds.

A sweep is resumable: a finished run is read back from <out>/summary.json instead of trained again,
and a run killed part-way continues from its last checkpoint.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.training import cli, read_metrics  # noqa: E402


def train_run(argv: list[str], out: Path, seed: int, train: bool = True) -> dict | None:
    """One run of scripts/train.py's flags ``argv`` in ``out/seed<seed>`` (or its saved result); the summary
    carries the history. With ``train=False`` only a finished run is read back (None if there is none)."""
    out = out / f"seed{seed}"
    done = out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    if not train:
        return None
    # one intra-op thread, as the quickstart preset these sweeps started from had (runs are small)
    args = ["--threads", "1"] + argv + ["--out", str(out), "--seed", str(seed), "--no-progress", "--no-tensorboard"]
    if (out / "checkpoint.pt").exists():
        args.append("--resume")
    summary = cli.main(args)
    summary["history"] = read_metrics(out / "metrics.jsonl")
    summary["argv"] = argv
    done.write_text(json.dumps(summary, indent=1))
    return summary


def parse_shard(text: str) -> tuple[int, int]:
    """``'K/N'`` -> (K, N): the K-th of N processes that share a sweep, each training every N-th setting."""
    import argparse

    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"need 0 <= K < N, got {text!r}")
    return k, n


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation and count (std is nan for one value)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else math.nan,
            "n": len(values), "values": values}


def fmt(s: dict, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std (n=k)' for a :func:`spread`."""
    std = "" if math.isnan(s["std"]) else f" ± {s['std'] * scale:.{digits}f}"
    return f"{s['mean'] * scale:.{digits}f}{std} (n={s['n']})"


def load_trained(path: str | Path):
    """(model in eval mode, its run config as a dict, its test set) from a checkpoint written by a training run
    (scripts/train.py or a sweep)."""
    from sj_sew.training import load_checkpoint
    from sj_sew.training.run import split_dataset

    run = load_checkpoint(path)
    return run.model, run.config.to_dict(), split_dataset(run.config, "test")


def setting_name(checkpoint: str | Path) -> str:
    """The sweep cell a checkpoint belongs to: its path between ``runs/`` and ``seed<k>/``, e.g.
    ``SEW_ADD_RTD/lr0.01`` for ``results/ablation/runs/SEW_ADD_RTD/lr0.01/seed0/best.pt`` (outside a sweep:
    the run directory's name)."""
    parts = Path(checkpoint).parent.parts
    if "runs" not in parts:
        return parts[-1] if parts else ""
    last_runs = len(parts) - 1 - parts[::-1].index("runs")
    return "/".join(parts[last_runs + 1:-1]) or parts[-1]


def ablation_checkpoints(results: str | Path) -> list[Path]:
    """``best.pt`` of seed 0 of every setting of a repro_ablation.py results directory, at the chosen rate."""
    table = json.loads((Path(results) / "ablation.json").read_text())["table"]
    return [Path(row["checkpoints"][0]) for row in table.values()]


def output_dir(out: Path | None, name: str, quick: bool) -> Path:
    """``--out`` as given, else ``results/<name>`` (the committed results) or, for a ``--quick`` smoke run,
    ``runs/quick/<name>``, so that a smoke run never writes over committed results."""
    if out is not None:
        return out
    return Path("runs/quick") / name if quick else Path("results") / name


def init_probe_parser(doc: str, out: str):
    """The arguments shared by the analyses at initialisation (repro_gradients, repro_firing_rates):
    network depth, input side, T, batch, seed, ``--quick`` (18 layers, 32x32, T=2, batch 2) and ``--out``."""
    import argparse

    import sj_sew

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=152, choices=sorted(sj_sew.models.RESNET_LAYOUTS))
    p.add_argument("--size", type=int, default=64, help="input side (the paper: 224; reduced for CPU)")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="18 layers, 32x32, T=2, batch 2 (smoke test)")
    p.add_argument("--out", type=Path, help=f"default results/{out}, or runs/quick/{out} with --quick")
    p.set_defaults(result_name=out)
    return p


def parse_init_probe_args(p, argv):
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.size, args.T, args.batch = 18, 32, 2, 2
    args.out = output_dir(args.out, args.result_name, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
