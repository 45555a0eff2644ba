"""The temporal event benchmark: random temporal delete (SEW paper Table 4 / Fig. 10), accuracy against T
(Table 6), the element-wise function ablation (Table 4) and the degradation problem (Table 2) on ``motion_events``,
a set whose classes differ only in the order of motion, beside a linear readout.

Data: ``motion_events`` (sj_sew.data.temporal): a real digit, in any of its 8 mirror images and rotations,
sweeps horizontally, vertically and diagonally across the emulated event sensor of ``fashion_events``; the 8
classes are the directions of the three sweeps. 32x32 sensor, 2 polarities, 200 samples per class (150 train /
50 test; a third of train, 50 per class, validates and selects the epoch).

Networks and recipe (reduced for CPU, stated in the output): c16k3s1-BN-PLIF-{Block(c16)-MPk2s2}*5-FC8 (the
7B-Net's layout with 16 channels), Adam, cosine schedule, batch 16, no zero init; every run stops once validation
accuracy has not improved for 5 epochs, within --epochs (default 30). Cells (--cells):
SEW ADD at T = 16 with RTD (T_train = 12, the paper's) and without, at T = 8 and 4 without RTD; SEW IAND, SEW AND,
Spiking ResNet and the plain net at T = 16 with RTD. Degradation: the stack of repro_degradation.py on these
frames, c16k3s2-BN-IF-MPk2s2-{Block(c16)}*n-FC8 with n = 2, 8, 16 (6, 18, 34 layers) and its IF neurons, SEW ADD
and Spiking ResNet (zero init) at each depth, Spiking ResNet without zero init at 34, T = 16 without RTD. Each Adam
rate is chosen from ``--lrs`` (default 1e-3, 3e-3, 1e-2) by probe runs of seed 100, never reported: the T study's
one rate on its T = 8 cell, each ablation network's on its T = 16 RTD cell, each degradation family's on its
18-layer cell, used at every depth (Spiking ResNet without zero init takes Spiking ResNet's); probes are as long as
the reported runs unless ``--tune-epochs`` says otherwise (4-epoch probes chose rates that learn fast and then
diverge); one rate is used as given. Reported: test accuracy
at the validation-selected epoch and at the last, train accuracy (on the training pass, RTD applied) and the
train/test gap at the last epoch, final train loss, mean ± std over seeds 0..seeds-1 (default 5), and every claim
as a paired difference by seed.

The linear readout (a logistic regression, C chosen on the validation split) on the frames summed over time and
side by side is measured on the same splits (``--no-readout`` skips it).

Output: runs/temporal (untracked) unless --out says otherwise; the committed results are results/temporal:

    python scripts/repro_temporal.py --out results/temporal                    # probes, then 16 cells x 5 seeds
    python scripts/repro_temporal.py --out results/temporal --shard 0/2 &      # or split over processes (call
    python scripts/repro_temporal.py --out results/temporal --shard 1/2        # again once the probes are done)
    python scripts/repro_temporal.py --out results/temporal --report-only      # aggregate the finished runs
    python scripts/repro_temporal.py --out results/temporal --report-only --markdown   # REPRODUCTION.md's tables
    python scripts/repro_temporal.py --quick            # 1 epoch, 1 seed, 6 samples/class, 16x16 (smoke)
    bash scripts/gpu_sweep.sh --script scripts/repro_temporal.py --shards 8 --budget-s 480 -- \\
        --out results/temporal_gpu --seeds 10 --epochs 40   # the GPU extension

The logic is sj_sew.experiments.temporal.
"""
from __future__ import annotations

import argparse

from _sweep import output_paths, resolve_out, study_parser  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import tables, temporal


def build_parser() -> argparse.ArgumentParser:
    p = study_parser(__doc__, "temporal", seeds=5, epochs=temporal.EPOCHS, shard="every N-th run",
                     epochs_help=f"epoch cap of every run, which stops on a validation plateau of {temporal.PATIENCE} "
                                 f"epochs (default {temporal.EPOCHS})",
                     quick="1 epoch, 1 seed, one rate, 6 samples per class, 16x16 sensor")
    p.add_argument("--lrs", type=float, nargs="+", default=list(temporal.LRS),
                   help="Adam rates: one is used as given; several are a grid each rate is chosen from by probe "
                        "runs of seed 100 (the T study's on T8, an ablation network's on its cell, a degradation "
                        "family's on its 18-layer cell)")
    p.add_argument("--tune-epochs", type=int, default=None,
                   help="epochs of each probe run (default: --epochs; probe runs of each length are kept apart)")
    p.add_argument("--cells", nargs="+", choices=list(temporal.CELLS), default=list(temporal.CELLS), metavar="CELL",
                   help="the cells to run (default: all): " + ", ".join(repr(c) for c in temporal.CELLS))
    p.add_argument("--per-class", type=int, default=temporal.PER_CLASS, help="samples per class (default 200)")
    p.add_argument("--sensor-size", type=int, default=temporal.SENSOR_SIZE)
    p.add_argument("--readout", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the linear readout with the report (default: yes)")
    p.add_argument("--markdown", action="store_true",
                   help="with --report-only: print REPRODUCTION.md's tables, rendered from <out>/temporal.json")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = resolve_out(args)
    if args.quick:
        args.seeds, args.epochs, args.tune_epochs, args.per_class, args.sensor_size = 1, 1, 1, 6, 16
        args.lrs = args.lrs[:1]  # a smoke run: no probes
    for name in ("seeds", "epochs", "per_class", "tune_epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"repro_temporal.py: --{name.replace('_', '-')} must be at least 1")
    data_options = {"per_class": args.per_class, "sensor_size": args.sensor_size}
    study = temporal.run_study(out, args.seeds, args.epochs, args.lrs, args.cells, data_options, args.shard,
                               args.report_only, args.progress, args.tune_epochs)
    report = args.report_only or args.shard[1] == 1  # a shard writes no report: it lacks the other shards' rows
    readout = temporal.cached_readout(out, data_options) if report and args.readout else None
    out.mkdir(parents=True, exist_ok=True)
    if report:
        temporal.write_report(out, study, readout)
    print(temporal.format_rows(study, readout))
    if args.markdown and report:
        import json

        print("\n".join(tables.temporal_markdown(json.loads((out / "temporal.json").read_text()))))
    meta = study["meta"]
    written = f"; wrote {out / 'temporal.json'} and the figure" if report else ""
    print(f"{len(study['table'])} cells with finished runs, complete: {meta['complete']}{written} ({meta['seconds']} s;"
          f" the runs trained {meta['train_seconds_all_runs']} s on {', '.join(meta['devices']) or 'nothing yet'})")
    return study


if __name__ == "__main__":
    main()
