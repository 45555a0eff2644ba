"""SEW paper, Table 2 / Fig. 3: the degradation problem. Does a deeper net train worse?

SEW ADD, Spiking ResNet and Plain nets of increasing depth, all with zero init (the paper's setting for
Spiking ResNet; a no-op for Plain), and Spiking ResNet without it for contrast, IF neurons, the same data,
optimiser and epochs. Reported: final training loss, and test accuracy at the validation-selected epoch and at
the last epoch (mean ± std over seeds), against depth, as JSON and PNG. The paper's claim: deeper SEW gets
better, deeper Spiking ResNet gets worse.

Reduced settings for CPU (stated in the output; each data set's defaults are
sj_sew.experiments.degradation.SETTINGS):

- ``fashion_events`` (Fashion-MNIST through the emulated 34x34 event sensor, ``per_class`` images per class,
  75/25 train/test, 10 % of train held out to validate), T = 4, nets c16k3s2-BN-IF-MPk2s2-{Block(c16)}*n-FC10
  (n residual blocks at 8x8, 2n + 2 layers), Adam 1e-3 cosine, batch 32, 10 epochs, 3 seeds, all four families.
- ``--dataset digits`` (scikit-learn's 8x8 digits, 1347 train / 450 test, 40 % of each class of train
  validating), nets c16k3s1-BN-IF-{Block(c16)}*n-FC10 at n = 2, 16 (and 32 for SEW ADD and Spiking ResNet): 6,
  34, 66 layers; each family's Adam rate chosen from 1e-3, 3e-3, 1e-2 (widened at an edge) by probe runs of seed
  100, never reported, on its 34-layer net and used at every depth; 5 seeds; every run stopped once validation
  accuracy has not improved for 5 epochs, within 20 (the cosine schedule spans the 20).

Output: runs/<study> (untracked: runs/degradation, runs/degradation_digits) unless --out says otherwise; the
committed results are results/degradation and results/degradation_digits:

    python scripts/repro_degradation.py --out results/degradation    # n = 2, 8, 16 for all four, 50 for two
    python scripts/repro_degradation.py --out results/degradation --shard 0/2 &
    python scripts/repro_degradation.py --out results/degradation --shard 1/2
    python scripts/repro_degradation.py --out results/degradation --report-only  # aggregate the finished runs
    python scripts/repro_degradation.py --dataset digits --out results/degradation_digits --shard 0/2 &  # probes
    python scripts/repro_degradation.py --dataset digits --out results/degradation_digits --shard 1/2    # first;
    #   call each shard again while it prints 'pending' (its runs wait for the other family's probes)
    python scripts/repro_degradation.py --quick        # n = 1, 2; 1 seed; 1 epoch (smoke test)

The logic is sj_sew.experiments.degradation.
"""
from __future__ import annotations

import argparse

from _sweep import output_paths, resolve_out, study_parser  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import degradation
from sj_sew.experiments.degradation import DEEP_ONLY, FAMILIES, STEMS, jobs, share  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    p = study_parser(__doc__, "degradation", seeds=None, epochs=None, shard="this process's share of the runs",
                     quick="n = 1, 2; 1 seed; 1 epoch; 12 images per class",
                     seeds_help="reported seeds 0 .. SEEDS-1 (default: the data set's setting)",
                     epochs_help="epochs, the cap where runs stop on a plateau (default: the data set's setting)")
    p.add_argument("--dataset", default="fashion_events", choices=list(STEMS),
                   help="the data set; it sets every default below (sj_sew.experiments.degradation.SETTINGS)")
    p.add_argument("--blocks", type=int, nargs="+", default=None)
    p.add_argument("--deep-blocks", type=int, nargs="*", default=None,
                   help=f"depths run only for {' and '.join(DEEP_ONLY)} (fashion_events: 50, i.e. 102 layers)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--per-class", type=int, default=None, help="images per class of fashion_events (default 300)")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=None)
    p.add_argument("--lrs", type=float, nargs="+", default=None,
                   help="Adam rates: one is used as given; several are a grid each family's rate is chosen from by "
                        "probe runs of seed 100 on its --rate-blocks net, used at every depth")
    p.add_argument("--rate-blocks", type=int, default=None, help="the depth (blocks) the probe runs choose a rate at")
    p.add_argument("--patience", type=int, default=None,
                   help="stop a run once validation accuracy has not improved for this many epochs")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="the share of each class of the training split that validates (default 10 %%)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for key, value in degradation.SETTINGS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    name = args.result_name = degradation.study_name(args.dataset)
    out = resolve_out(args)
    if args.quick:
        args.blocks, args.deep_blocks, args.seeds, args.epochs, args.per_class = [1, 2], [], 1, 1, 12
        args.lrs = args.lrs[:1]
    study = degradation.run_study(out, args.blocks, args.deep_blocks, args.seeds, args.epochs, args.width,
                                  args.dataset, args.per_class, args.families, args.shard, args.report_only,
                                  args.progress, args.lrs, args.patience, args.rate_blocks, args.val_fraction)
    report = args.report_only or args.shard[1] == 1  # a shard alone writes no report: it lacks the others' runs
    out.mkdir(parents=True, exist_ok=True)
    if report:
        degradation.write_report(out, study)
    print(degradation.format_table(study["table"], name))
    meta = study["meta"]
    print(f"{'wrote ' + str(out / f'{name}.json') + ' and the figure' if report else 'shard done, no report'} "
          f"({meta['seconds']} s; the runs trained {meta['train_seconds_all_runs']} s)")
    return study["table"]


if __name__ == "__main__":
    main()
