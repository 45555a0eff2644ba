"""SEW paper's cost argument: synaptic operations (SOPs) and energy per inference of trained SNNs,
from the spikes they actually fire on test data, beside the equivalent ANN's MACs.

Counting rule and energy constants: sj_sew/analysis/energy.py (exact weight uses per event; 0.9 pJ per
AC, 4.6 pJ per MAC, 45 nm). On SpikingJelly 2.x the same forward is also counted by its SynOpCounter.

Output: runs/energy (untracked) unless --out says otherwise; the committed results are results/energy:

    python scripts/repro_energy.py --checkpoint runs/x/best.pt ...        # any train.py checkpoints
    python scripts/repro_energy.py --from-ablation results/ablation --out results/energy   # the g ablation's nets
    python scripts/repro_energy.py --quick                                 # untrained net, 1 batch (smoke test)

The logic is sj_sew.experiments.energy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _sweep import add_out, output_paths, resolve_out  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import energy
from sj_sew.experiments.sweep import ablation_checkpoints, write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, nargs="*", default=[])
    p.add_argument("--from-ablation", type=Path, help="results directory of repro_ablation.py")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="an untrained 7B-style net, one batch")
    add_out(p, "energy")
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    out = resolve_out(args)
    started = time.time()
    if args.from_ablation:
        args.checkpoint += ablation_checkpoints(args.from_ablation)
    if not (args.quick or args.checkpoint):
        p.error("give --checkpoint PATH..., --from-ablation DIR or --quick")
    results = energy.untrained_quick_net() if args.quick else {}
    results.update(energy.trained_nets(args.checkpoint, args.batches))
    path = write_json(out / "energy.json", {"meta": energy.meta(started), "results": results}, indent=1)
    print(energy.format_table(results))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
