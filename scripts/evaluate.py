#!/usr/bin/env python
"""Evaluate a trained run on its data: accuracy and loss on the test split (or the validation/training split),
optionally every neuron layer's firing rate, printed and written as JSON.

    python scripts/evaluate.py runs/quickstart-20261127-150000              # the run's best.pt, test split
    python scripts/evaluate.py runs/x/checkpoint.pt --split val --firing-rates --out eval.json

A run directory means its best.pt (the validation-selected epoch), else its checkpoint.pt (the last epoch).
The model is rebuilt from the configuration stored in the checkpoint and its weights are loaded strictly.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.training.checkpoint import CheckpointError  # noqa: E402
from sj_sew.training.load import checkpoint_path, evaluate_checkpoint  # noqa: E402
from sj_sew.training.run import SPLITS  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("run", help="a run directory or a checkpoint file (checkpoint.pt, best.pt)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--firing-rates", action="store_true", help="also record every neuron layer's firing rate")
    p.add_argument("--batch-size", type=int, help="default: the run's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="JSON file (default: <run dir>/eval-<checkpoint>-<split>.json)")
    args = p.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        result = evaluate_checkpoint(args.run, args.split, args.batch_size, args.device, args.firing_rates)
    except (CheckpointError, ValueError) as e:
        p.error(str(e))
    path = checkpoint_path(args.run)
    out = args.out or path.with_name(f"eval-{path.stem}-{args.split}.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"{result['checkpoint']} (epoch {result['epoch']}), {args.split} split of {result['dataset']} "
          f"({result['samples']} samples): accuracy {result['acc']:.4f}, loss {result['loss']:.4f}, "
          f"mean firing rate {result['firing_rate']:.4f}\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
