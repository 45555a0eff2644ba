#!/usr/bin/env python
"""Train a small ANN ResNet on real data, convert it to an SNN (S-ResNet), and compare with SpikingJelly's
own ann2snn converter on the same ANN: test accuracy vs T beside the ANN's.

    python scripts/convert.py                                    # digits, depth 8, T = 8..256 (~1 minute)
    python scripts/convert.py --dataset fashion_mnist --train-size 10000 --test-size 1000 --depth 14 --epochs 4
    python scripts/convert.py --out results/convert_digits       # rewrite the committed results (explicitly)

Writes <out>.json (every setting and number) and <out>.png (accuracy vs T, both converters, the ANN line);
<out> defaults to runs/convert-<date>-<time>/convert, never a committed file. The logic is
sj_sew.experiments.conversion.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.experiments.conversion import DATASETS, plot, run_conversion  # noqa: E402
from sj_sew.experiments.sweep import timestamped_dir, write_json  # noqa: E402
from sj_sew.progress import add_progress_flag  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--train-size", type=int, default=None, help="random training subset (default: all)")
    p.add_argument("--test-size", type=int, default=None, help="random test subset (default: all)")
    p.add_argument("--depth", type=int, default=8, help="ANN ResNet depth 6n + 2")
    p.add_argument("--widths", type=int, nargs=3, default=(16, 32, 64))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--sj-mode", default="99.9%", help="SpikingJelly Converter mode: Max, <p>%%, or a float")
    p.add_argument("--time-steps", type=int, nargs="+", default=(8, 16, 32, 64, 128, 256))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared small CPU)")
    p.add_argument("--out", type=Path, help="writes <out>.json and <out>.png (default runs/convert-<time>/convert; "
                                            "the committed results are results/convert_<dataset>)")
    add_progress_flag(p)
    return p


def output_paths(args) -> list[Path]:
    """<out>.json and <out>.png (``args.out`` resolved to its default if unset)."""
    if args.out is None:
        args.out = timestamped_dir("convert") / "convert"
    return [args.out.with_suffix(".json"), args.out.with_suffix(".png")]


def main(argv=None):
    args = build_parser().parse_args(argv)
    json_path, png_path = output_paths(args)
    torch.set_num_threads(args.threads)
    sj_mode = float(args.sj_mode) if args.sj_mode.replace(".", "", 1).isdigit() else args.sj_mode
    result = run_conversion(args.dataset, args.train_size, args.test_size, args.depth, args.widths, args.epochs,
                            args.lr, args.batch_size, args.percentile, sj_mode, args.time_steps, args.seed,
                            args.progress)
    result["command"] = "python scripts/convert.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(json_path, result, indent=2)
    plot(result, png_path)
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
