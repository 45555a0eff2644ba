#!/usr/bin/env python
"""Measure the competing residual SNNs on real data, in bounded CPU time, and write a systems.json.

1. MS-ResNet accuracy vs depth (CIFAR-style ms_resnet, depths 8/20/56 by default): does depth hurt?
2. Spiking DS-ResNet with MLF (K = 3) vs the same network with single-level neurons (K = 1).
3. ANN-to-SNN conversion curve: S-ResNet (sj_sew.conversion) vs SpikingJelly's ann2snn, accuracy vs T.

    python scripts/compare_systems.py                       # digits, T = 4, 15 epochs, seed 0: ~15 min on 1 core
    python scripts/compare_systems.py --dataset fashion_mnist --train-size 5000 --test-size 1000 --epochs 5
    python scripts/compare_systems.py --seeds 0 1 2 --out results/systems.json   # the committed results

Writes --out (default runs/compare_systems-<date>-<time>/systems.json, never a committed file) and, with the
conversion, <out stem>_conversion.png beside it. Every number is stored next to its exact setting (data, sizes,
epochs, T, seed, optimizer). 10 % of each class of the training split is held out to validate (the same for
every seed); reported are the test accuracy at the epoch with the best validation accuracy and at the last
epoch. The test split selects nothing. The logic is sj_sew.experiments.systems.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sj_sew.experiments import systems  # noqa: E402
from sj_sew.experiments.conversion import DATASETS, load_tensors, plot, run_conversion  # noqa: E402
from sj_sew.experiments.sweep import timestamped_dir, write_json  # noqa: E402
from sj_sew.progress import add_progress_flag  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--ms-depths", type=int, nargs="+", default=[8, 20, 56])
    p.add_argument("--ds-depth", type=int, default=20)
    p.add_argument("--ds-widths", type=int, nargs=3, default=(16, 32, 64))
    p.add_argument("--conversion-time-steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--conversion-epochs", type=int, default=15)
    p.add_argument("--skip", nargs="*", default=[], choices=["depth", "mlf", "conversion"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="the JSON report (default runs/compare_systems-<time>/systems.json; "
                                            "the committed results are results/systems.json)")
    add_progress_flag(p)
    return p


def output_paths(args) -> list[Path]:
    """The JSON report and the conversion figure (``args.out`` resolved to its default if unset)."""
    if args.out is None:
        args.out = timestamped_dir("compare_systems") / "systems.json"
    return [args.out, args.out.with_name(args.out.stem + "_conversion.png")]


def main(argv=None):
    args = build_parser().parse_args(argv)
    out, figure = output_paths(args)
    torch.set_num_threads(args.threads)
    data = load_tensors(args.dataset, args.train_size, args.test_size, seed=0)
    report = {"command": "python scripts/compare_systems.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "setting": systems.setting(args.dataset, data, args.T, args.epochs, args.lr, args.batch_size,
                                         args.threads),
              "note": "reduced setting: small real data set, few epochs, CPU; not the papers' runs"}
    common = dict(T=args.T, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, progress=args.progress)
    if "depth" not in args.skip:
        report["ms_resnet_depth"] = systems.ms_resnet_depth(data, args.ms_depths, args.seeds, **common)
        write_json(out, report, indent=2)
    if "mlf" not in args.skip:
        report["ds_resnet_mlf"] = systems.ds_resnet_mlf(data, args.ds_depth, args.ds_widths, args.seeds, **common)
        write_json(out, report, indent=2)
    if "conversion" not in args.skip:
        result = run_conversion(args.dataset, args.train_size, args.test_size, epochs=args.conversion_epochs,
                                time_steps=args.conversion_time_steps, seed=args.seeds[0], progress=args.progress)
        report["conversion"] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        plot(result, figure)
        write_json(out, report, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
