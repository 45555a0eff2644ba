#!/usr/bin/env python
"""Measure the competing residual SNNs on real data, in bounded CPU time, and write a systems.json.

1. MS-ResNet accuracy vs depth (CIFAR-style ms_resnet, depths 8/20/56 by default): does depth hurt?
2. Spiking DS-ResNet with MLF (K = 3) vs the same network with single-level neurons (K = 1).
3. ANN-to-SNN conversion curve: S-ResNet (sj_sew.conversion) vs SpikingJelly's ann2snn, accuracy vs T.

Rule (issue 22), for 1 and 2: each network's Adam rate is chosen from the grid 3e-4, 1e-3, 3e-3, 1e-2 (widened
by a half-decade while the choice sits at an edge) by the validation accuracy of the tuning seed 1000, which is
never reported; seeds 0 .. --seeds - 1 then train at that rate. Every run stops on a validation plateau of 5
epochs within --epochs (20); 40 % of each class of the training split validates (the same for every seed).
Reported are the test accuracy at the epoch with the best validation accuracy and at the last epoch; the test
split selects nothing.

    python scripts/compare_systems.py --out results/systems.json      # the committed results (~40 min, 1 core)
    python scripts/compare_systems.py --quick                         # 2 epochs, 2 rates, 1 seed (smoke test)
    python scripts/compare_systems.py --dataset fashion_mnist --train-size 5000 --test-size 1000 --epochs 5

Each run's record is kept beside the report (<out stem>_runs/<tuning|reported>/<network>/lr<lr>/seed<k>.json), so
an interrupted call resumes, and processes can share the networks. The committed results were made so: one process
with --ms-depths 56 8 --ds-levels 1 --skip conversion, one with --ms-depths 20 --ds-levels 3 --skip conversion, then
the full call, which reads their runs back, runs only the conversion and writes the whole report (--report-only:
read the finished runs, train nothing). Writes --out (default
runs/compare_systems-<date>-<time>/systems.json, never a committed file) and, with the conversion, <out
stem>_conversion.png beside it. Every number is stored next to its exact setting (data, sizes, epochs, T, seed,
optimizer, rate). The logic is sj_sew.experiments.systems.
"""
from __future__ import annotations

import argparse
import json
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
    p.add_argument("--epochs", type=int, default=systems.EPOCHS, help="the cap of every run (default %(default)s)")
    p.add_argument("--lrs", type=float, nargs="+", default=list(systems.LR_GRID),
                   help="the grid tried first (rates of the half-decade ladder 3e-5 .. 0.1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, default=5, help="reported seeds 0 .. SEEDS-1 at each chosen rate")
    p.add_argument("--ms-depths", type=int, nargs="+", default=[8, 20, 56])
    p.add_argument("--ds-depth", type=int, default=20)
    p.add_argument("--ds-widths", type=int, nargs=3, default=(16, 32, 64))
    p.add_argument("--ds-levels", type=int, nargs="+", default=[3, 1], help="MLF levels K of the DS-ResNets")
    p.add_argument("--conversion-time-steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--conversion-epochs", type=int, default=15)
    p.add_argument("--skip", nargs="*", default=[], choices=["depth", "mlf", "conversion"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true",
                   help="read the finished runs back, train nothing (the report's conversion is kept)")
    p.add_argument("--quick", action="store_true", help="2 epochs, rates 1e-3 and 3e-3 without widening, 1 seed "
                                                         "(smoke test)")
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
    kept_conversion = json.loads(out.read_text()).get("conversion") if args.report_only and out.exists() else None
    widen = not args.quick
    if args.quick:
        args.epochs, args.lrs, args.seeds = 2, [1e-3, 3e-3], 1
    data = load_tensors(args.dataset, args.train_size, args.test_size, seed=0)
    report = {"command": "python scripts/compare_systems.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "setting": systems.setting(args.dataset, data, args.T, args.epochs, args.lrs, args.batch_size,
                                         args.threads),
              "note": "reduced setting: small real data set, CPU; not the papers' runs", "tuning": {}}
    if kept_conversion is not None:  # --report-only trains nothing: the conversion stays as the report had it
        report["conversion"] = kept_conversion
    common = dict(T=args.T, epochs=args.epochs, batch_size=args.batch_size, patience=systems.PATIENCE,
                  data_setting={"dataset": args.dataset, "train_size": args.train_size, "test_size": args.test_size})
    nets = systems.networks(args.ms_depths, args.ds_depth, args.ds_widths, args.ds_levels)
    sections = {"depth": "ms_resnet_depth", "mlf": "ds_resnet_mlf"}
    runs = out.with_name(out.stem + "_runs")
    for name, net in nets.items():
        if any(sections.get(s) == net["section"] for s in args.skip):
            continue
        row = systems.tuned_network(name, net, data, runs, list(range(args.seeds)), common, args.lrs, widen,
                                    train=not args.report_only, progress=args.progress)
        if row is None:
            print(f"{name}: its rate grid is not finished (pending)")
            continue
        report.setdefault(net["section"], []).extend(row.pop("runs"))
        report["tuning"][name] = row
        write_json(out, report, indent=2)
    report["train_seconds_reported"] = round(sum(r["seconds"] for section in sections.values()
                                                 for r in report.get(section, [])))
    report["train_seconds_tuning"] = round(sum(r["tuning_seconds"] for r in report["tuning"].values()))
    write_json(out, report, indent=2)
    if "conversion" not in args.skip and not args.report_only:
        result = run_conversion(args.dataset, args.train_size, args.test_size, epochs=args.conversion_epochs,
                                time_steps=args.conversion_time_steps, seed=0, progress=args.progress)
        report["conversion"] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        plot(result, figure)
        write_json(out, report, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
