"""SEW paper, Sec. 3.3 / Fig. 2b: the spiking neuron in SEW's downsample shortcut (conv1x1-BN-SN), ablated.

SEW ADD with the SN in its downsample shortcut (family sew) against the same net without it (family
sew-conv-bn: SEW's output, the conv1x1-BN shortcut of Spiking ResNet), on the surrogate study's data and recipe:
scikit-learn digits (8x8), IF neurons with ArcTan, T = 4, Adam with a cosine schedule over 20 epochs, batch 32,
stopped on a validation plateau of 5 epochs, 40 % of each class validating, no zero init. The net is the surrogate
study's with its channels doubled at the first block of stages 2 and 3
(c32k3s1-BN-IF-{SEW Block(c32)}*2-MPk2s2-{SEW Block(c64)}*2-MPk2s2-{SEW Block(c128)}*2-MPk2s2-FC10): those two
blocks change the shape and so carry the downsample shortcut (the notation has no strided block; max pooling
halves the side as in the surrogate study).

Rule: as the surrogate study (sj_sew.experiments.surrogate.tuned_cell): the rate from the grid 3e-4 .. 1e-2
(widened at an edge) by the validation accuracy of the tuning seed 1000 (never reported), then seeds
0 .. --seeds - 1. Then the paper's bound "a downsample SEW block regulates the output to be no larger than 2 when
g is ADD": each downsample block's largest output on the test set, at init and on the trained seed-0 net
(<out>/bound.json; needs the checkpoints, so it is measured where the runs trained, not by --report-only).

    python scripts/repro_downsample.py --out results/downsample   # 2 networks x (grid + 5 seeds), then the bound
    python scripts/repro_downsample.py --out results/downsample --report-only   # aggregate the finished runs
    python scripts/repro_downsample.py --quick      # 1 epoch, 2 rates, no widening, 1 seed (smoke test)

The logic is sj_sew.experiments.downsample.
"""
from __future__ import annotations

import argparse
import json

from _sweep import output_paths, resolve_out, study_parser  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import downsample, surrogate


def build_parser() -> argparse.ArgumentParser:
    p = study_parser(__doc__, "downsample", seeds=5, epochs=surrogate.EPOCHS,
                     quick="1 epoch, 2 rates, no widening, 1 seed",
                     seeds_help="reported seeds 0 .. SEEDS-1 at each chosen rate",
                     report_only="aggregate the finished runs, train and measure nothing (bound.json is read back)")
    p.add_argument("--lrs", type=float, nargs="+", default=list(surrogate.LR_GRID),
                   help="the grid tried first (rates of the half-decade ladder 3e-5 .. 0.1)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = resolve_out(args)
    widen = not args.quick
    if args.quick:
        args.seeds, args.epochs, args.lrs = 1, 1, [1e-3, 1e-2]
    study = downsample.run_study(out, args.seeds, args.epochs, args.lrs, args.report_only, args.progress, widen)
    downsample.write_report(out, study)
    bound_file = out / "bound.json"
    if args.report_only:
        bound = json.loads(bound_file.read_text()) if bound_file.exists() else None
    else:
        bound = downsample.measure_bound(out, study)
    print(downsample.format_table(study["rows"], bound))
    print(f"wrote {out / 'downsample.json'} and {out / 'downsample.png'} ({study['meta']['train_seconds_all_runs']} s "
          f"of training in all)")
    return study["rows"]


if __name__ == "__main__":
    main()
