"""SEW paper, Fig. 5 (and Figs. 4/11 for trained nets): per-block firing rates of A^l and O^l.

At init: Spiking ResNet and SEW ADD / AND / IAND on the 152-layer structure, with and without zero init,
IF neurons (Vth = 1, ATan alpha = 2), on a batch of real images (Fashion-MNIST test, resized).
Trained: pass checkpoints written by scripts/train.py or a sweep (<run>/best.pt, the validation-selected
epoch's weights, or <run>/checkpoint.pt, the last epoch's) with --checkpoint, or a repro_ablation.py results
directory with --from-ablation; each is probed on its own test data and labelled by its sweep cell.

Output: runs/firing_rates (untracked) unless --out says otherwise; the committed results are results/firing_rates:

    python scripts/repro_firing_rates.py --out results/firing_rates     # init, 152 layers, 64x64, T=4
    python scripts/repro_firing_rates.py --quick         # init, 18 layers, 32x32, T=2 (smoke test)
    python scripts/repro_firing_rates.py --from-ablation results/ablation --out results/firing_rates   # trained

The logic is sj_sew.experiments.firing_rates.
"""
from __future__ import annotations

import time
from pathlib import Path

from _sweep import init_probe_parser, output_paths, parse_init_probe_args  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import firing_rates
from sj_sew.experiments.sweep import ablation_checkpoints, write_json


def build_parser():
    p = init_probe_parser(__doc__, "firing_rates")
    p.add_argument("--checkpoint", type=Path, nargs="+",
                   help="trained checkpoints to probe (a run's best.pt or checkpoint.pt)")
    p.add_argument("--from-ablation", type=Path, help="results directory of repro_ablation.py: probe the "
                                                      "seed-0 nets of its settings at their chosen rates")
    p.add_argument("--batches", type=int, default=4, help="test batches per checkpoint")
    return p


def main(argv=None):
    args = parse_init_probe_args(build_parser(), argv)
    start = time.time()
    if args.from_ablation:
        args.checkpoint = (args.checkpoint or []) + ablation_checkpoints(args.from_ablation)
    if args.checkpoint:
        results = firing_rates.trained_rates(args.checkpoint, args.batches)
        name, title = "trained", "Firing rates of trained networks (test data)"
        setting = {"checkpoints": [str(p) for p in args.checkpoint], "batches": args.batches,
                   "batch_size": firing_rates.TEST_BATCH}
    else:
        results = firing_rates.init_rates(args.depth, args.size, args.T, args.batch, args.seed, args.progress)
        name = "init"
        title = f"Firing rates at init, ResNet-{args.depth} structure, {args.size}x{args.size}, T={args.T}"
        setting = {"depth": args.depth, "size": args.size, "T": args.T, "batch": args.batch, "seed": args.seed}
    meta = firing_rates.meta(start, **setting)
    write_json(args.out / f"{name}.json", {"meta": meta, "curves": results}, indent=1, default=str)
    firing_rates.plot(results, args.out / f"{name}.png", title)
    print(firing_rates.format_table(results))
    print(f"wrote {args.out / (name + '.json')} and {args.out / (name + '.png')} ({meta['seconds']} s)")


if __name__ == "__main__":
    main()
