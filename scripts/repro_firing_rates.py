"""SEW paper, Fig. 5 (and Figs. 4/11 for trained nets): per-block firing rates of A^l and O^l.

At init: Spiking ResNet and SEW ADD / AND / IAND on the 152-layer structure, with and without zero init,
IF neurons (Vth = 1, ATan alpha = 2), on a batch of real images (Fashion-MNIST test, resized).
Trained: pass checkpoints written by scripts/train.py or a sweep (<run>/best.pt, the validation-selected
epoch's weights, or <run>/checkpoint.pt, the last epoch's) with --checkpoint, or a repro_ablation.py results
directory with --from-ablation; each is probed on its own test data and labelled by its sweep cell.

    python scripts/repro_firing_rates.py                 # init, 152 layers, 64x64, T=4
    python scripts/repro_firing_rates.py --quick         # init, 18 layers, 32x32, T=2 (smoke test)
    python scripts/repro_firing_rates.py --from-ablation results/ablation   # repro_ablation's trained nets
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

import sj_sew
from _sweep import ablation_checkpoints, init_probe_parser, load_trained, parse_init_probe_args, setting_name
from sj_sew.analysis.probes import probe, real_image_batch

NETWORKS = [("spiking", None), ("sew", "ADD"), ("sew", "AND"), ("sew", "IAND")]


def label(family, connect):
    return "Spiking ResNet" if family == "spiking" else f"SEW {connect}"


def init_rates(depth, size, T, batch, seed):
    x, _ = real_image_batch(batch, size, seed)
    results = {}
    jobs = [(z, n) for z in (False, True) for n in NETWORKS]
    for zero_init, (family, connect) in tqdm(jobs, desc="firing rates at init"):
        torch.manual_seed(seed)
        model = sj_sew.create_model(f"{family}_resnet{depth}", connect=connect or "ADD", neuron="if", T=T,
                                    num_classes=10, zero_init_residual=zero_init)
        results[f"{label(family, connect)}{' (zero init)' if zero_init else ''}"] = probe(model, x)
    return results


def trained_rates(paths, batches):
    from torch.utils.data import DataLoader

    from sj_sew.data import time_first_collate

    results = {}
    for path in paths:
        model, cfg, test_set = load_trained(path)
        loader = DataLoader(test_set, batch_size=16, shuffle=False, collate_fn=time_first_collate)
        runs = [probe(model, x) for i, (x, _) in zip(range(batches), loader)]
        name = f"{setting_name(path)} ({cfg['family'] or 'sew'})"
        results[name] = {k: [sum(r[k][j] for r in runs) / len(runs) for j in range(len(runs[0][k]))]
                         for k in ("rate_s", "rate_a", "rate_o")}
        results[name]["downsample"] = runs[0]["downsample"]
    return results


def plot(results, path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, key, name in ((axes[0], "rate_a", "A^l (residual spikes)"), (axes[1], "rate_o", "O^l (block output)")):
        for run, rec in results.items():
            ax.plot(range(1, len(rec[key]) + 1), rec[key], label=run, linestyle="--" if "zero init" in run else "-")
        rec = next(iter(results.values()))
        for i, d in enumerate(rec["downsample"]):
            if d:
                ax.axvline(i + 1, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xlabel("block index l")
        ax.set_ylabel(f"mean of {name}")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = init_probe_parser(__doc__, "firing_rates")
    p.add_argument("--checkpoint", type=Path, nargs="+",
                   help="trained checkpoints to probe (a run's best.pt or checkpoint.pt)")
    p.add_argument("--from-ablation", type=Path, help="results directory of repro_ablation.py: probe the "
                                                      "seed-0 nets of its settings at their chosen rates")
    p.add_argument("--batches", type=int, default=4, help="test batches per checkpoint")
    args = parse_init_probe_args(p, argv)
    start = time.time()
    if args.from_ablation:
        args.checkpoint = (args.checkpoint or []) + ablation_checkpoints(args.from_ablation)
    if args.checkpoint:
        results = trained_rates(args.checkpoint, args.batches)
        name, title = "trained", "Firing rates of trained networks (test data)"
    else:
        results = init_rates(args.depth, args.size, args.T, args.batch, args.seed)
        name = "init"
        title = f"Firing rates at init, ResNet-{args.depth} structure, {args.size}x{args.size}, T={args.T}"
    meta = {"depth": args.depth, "size": args.size, "T": args.T, "batch": args.batch, "seed": args.seed,
            "seconds": round(time.time() - start, 1), "sj_version": sj_sew.SJ_VERSION}
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "curves": results}, indent=1, default=str))
    plot(results, args.out / f"{name}.png", title)
    print(f"{'network':<34} {'mean A':>8} {'mean O':>8} {'max O':>8}")
    for run, rec in results.items():
        a, o = rec["rate_a"], rec["rate_o"]
        print(f"{run[-34:]:<34} {sum(a) / len(a):>8.3f} {sum(o) / len(o):>8.3f} {max(o):>8.3f}")
    print(f"wrote {args.out / (name + '.json')} and {args.out / (name + '.png')} ({meta['seconds']} s)")


if __name__ == "__main__":
    main()
