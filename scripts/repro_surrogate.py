"""SEW paper, Table 9 (Appendix A.5): surrogate gradients ArcTan vs Rectangular vs Constant 1,
SEW ADD vs Spiking ResNet, in the paper's lightweight net with IF neurons.

Reduced setting for CPU (stated in the output): scikit-learn digits (8x8) instead of CIFAR-10, so the
net keeps Table 9's structure with 3 instead of 5 {{Block}*2-MP} stages
(c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*3-FC10), T = 4, Adam lr 1e-3 for every surrogate (the
paper tunes lr per surrogate; we do not), no zero init. 10 % of each class of the training split is held out
to validate: reported are the test accuracy at the validation-selected epoch and at the last epoch.

Output: runs/surrogate (untracked) unless --out says otherwise; the committed results are results/surrogate:

    python scripts/repro_surrogate.py --out results/surrogate   # 3 surrogates x 2 networks x 3 seeds, 10 epochs
    python scripts/repro_surrogate.py --out results/surrogate --report-only   # aggregate the finished runs
    python scripts/repro_surrogate.py --quick      # 1 epoch, 1 seed (smoke test)

The logic is sj_sew.experiments.surrogate.
"""
from __future__ import annotations

import argparse

from _sweep import add_sweep_outputs, output_paths, resolve_out  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import surrogate
from sj_sew.experiments.surrogate import PAPER, SURROGATES  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed")
    add_sweep_outputs(p, "surrogate")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = resolve_out(args)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    study = surrogate.run_study(out, args.seeds, args.epochs, args.report_only, args.progress)
    surrogate.write_report(out, study)
    print(surrogate.format_table(study["table"]))
    print(f"wrote {out / 'surrogate.json'} and {out / 'surrogate.png'} ({study['meta']['seconds']} s)")
    return study["table"]


if __name__ == "__main__":
    main()
