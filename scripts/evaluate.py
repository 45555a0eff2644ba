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
from sj_sew.progress import add_progress_flag, show_progress  # noqa: E402
from sj_sew.training.load import checkpoint_path, evaluate_checkpoint  # noqa: E402
from sj_sew.training.run import SPLITS  # noqa: E402


def format_layer_rates(rates: dict[str, float]) -> str:
    """Every neuron layer's firing rate (spikes per neuron and time step), one layer a line, in network order."""
    width = max([len("layer")] + [len(name) for name in rates])
    lines = [f"{'layer':<{width}}  firing rate"]
    lines += [f"{name:<{width}}  {rate:>11.4f}" for name, rate in rates.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("run", help="a run directory or a checkpoint file (checkpoint.pt, best.pt)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--firing-rates", action="store_true",
                   help="also record every neuron layer's firing rate (printed as a table and kept in the JSON)")
    p.add_argument("--batch-size", type=int, help="default: the run's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", help="where the run's data set is on this machine (default: where the run read it)")
    p.add_argument("--out", type=Path, help="JSON file (default: <run dir>/eval-<checkpoint>-<split>.json, beside the "
                                            "checkpoint)")
    add_progress_flag(p)
    return p


def output_paths(args) -> list[Path]:
    """The JSON file: --out, else beside the checkpoint."""
    if args.out is None:
        path = checkpoint_path(args.run)
        args.out = path.with_name(f"eval-{path.stem}-{args.split}.json")
    return [args.out]


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args = p.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        result = evaluate_checkpoint(args.run, args.split, args.batch_size, args.device, args.firing_rates,
                                     progress=show_progress(args.progress), data_root=args.data_root)
        (out,) = output_paths(args)
    except (CheckpointError, ValueError) as e:
        p.error(str(e))
    out.write_text(json.dumps(result, indent=1))
    if "layer_firing_rates" in result:
        print(format_layer_rates(result["layer_firing_rates"]))
    print(f"{result['checkpoint']} (epoch {result['epoch']}), {args.split} split of {result['dataset']} "
          f"({result['samples']} samples): accuracy {result['acc']:.4f}, loss {result['loss']:.4f}, "
          f"mean firing rate {result['firing_rate']:.4f}\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
