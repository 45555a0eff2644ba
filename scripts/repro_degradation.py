"""SEW paper, Table 2 / Fig. 3: the degradation problem. Does a deeper net train worse?

SEW ADD, Spiking ResNet and Plain nets of increasing depth, all with zero init (the paper's setting for
Spiking ResNet; a no-op for Plain), and Spiking ResNet without it for contrast, IF neurons, the same data,
optimiser and epochs. Reported: final training loss, and test accuracy at the validation-selected epoch and at
the last epoch (mean ± std over seeds), against depth, as JSON and PNG. The paper's claim: deeper SEW gets
better, deeper Spiking ResNet gets worse.

Reduced setting for CPU (stated in the output): ``fashion_events`` (Fashion-MNIST through the emulated 34x34
event sensor, ``per_class`` images per class, 75/25 train/test, 10 % of train held out to validate), T = 4,
nets c16k3s2-BN-IF-MPk2s2-{Block(c16)}*n-FC10 (n residual blocks at 8x8, 2n + 2 layers), Adam 1e-3 cosine,
batch 32, 10 epochs. ``--dataset digits`` runs the earlier setting (8x8 digits, c16k3s1-BN-IF stem).

Output: runs/degradation (untracked) unless --out says otherwise; the committed results are results/degradation:

    python scripts/repro_degradation.py --out results/degradation    # n = 2, 8, 16 for all four, 50 for two
    python scripts/repro_degradation.py --out results/degradation --shard 0/2 &
    python scripts/repro_degradation.py --out results/degradation --shard 1/2
    python scripts/repro_degradation.py --out results/degradation --report-only  # aggregate the finished runs
    python scripts/repro_degradation.py --quick        # n = 1, 2; 1 seed; 1 epoch (smoke test)

The logic is sj_sew.experiments.degradation.
"""
from __future__ import annotations

import argparse

from _sweep import output_paths, resolve_out, study_parser  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import degradation
from sj_sew.experiments.degradation import DEEP_ONLY, FAMILIES, STEMS, jobs, share  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    p = study_parser(__doc__, "degradation", seeds=3, epochs=10, shard="this process's share of the runs",
                     quick="n = 1, 2; 1 seed; 1 epoch; 12 images per class")
    p.add_argument("--blocks", type=int, nargs="+", default=[2, 8, 16])
    p.add_argument("--deep-blocks", type=int, nargs="*", default=[50],
                   help=f"depths run only for {' and '.join(DEEP_ONLY)} (default 50: 102 layers)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--dataset", default="fashion_events", choices=list(STEMS))
    p.add_argument("--per-class", type=int, default=300, help="images per class of fashion_events (default 300)")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = resolve_out(args)
    if args.quick:
        args.blocks, args.deep_blocks, args.seeds, args.epochs, args.per_class = [1, 2], [], 1, 1, 12
    study = degradation.run_study(out, args.blocks, args.deep_blocks, args.seeds, args.epochs, args.width,
                                  args.dataset, args.per_class, args.families, args.shard, args.report_only,
                                  args.progress)
    report = args.report_only or args.shard[1] == 1  # a shard alone writes no report: it lacks the others' runs
    out.mkdir(parents=True, exist_ok=True)
    if report:
        degradation.write_report(out, study)
    print(degradation.format_table(study["table"]))
    meta = study["meta"]
    print(f"{'wrote ' + str(out / 'degradation.json') + ' and the figure' if report else 'shard done, no report'} "
          f"({meta['seconds']} s; the runs trained {meta['train_seconds_all_runs']} s)")
    return study["table"]


if __name__ == "__main__":
    main()
