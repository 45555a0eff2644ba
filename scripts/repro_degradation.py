"""SEW paper, Table 2 / Fig. 3: the degradation problem. Does a deeper net train worse?

SEW ADD, Spiking ResNet and Plain nets of increasing depth, all with zero init (the paper's setting
for Spiking ResNet; a no-op for Plain), and Spiking ResNet without it for contrast, IF neurons, the same real data, optimiser and epochs. Reported:
final training loss and best test accuracy (mean ± std over seeds) against depth, as JSON and PNG.
The paper's claim: deeper SEW gets better, deeper Spiking ResNet gets worse.

Reduced setting for CPU (stated in the output): scikit-learn digits (8x8, 1347 train / 450 test, the
per-class 75/25 split), T = 4, nets c16k3s1-BN-IF-{Block(c16)}*n-FC10 with n residual blocks (2n + 2 layers).

    python scripts/repro_degradation.py                # n = 2, 8, 16; 3 seeds; 15 epochs
    python scripts/repro_degradation.py --quick        # n = 1, 2; 1 seed; 1 epoch (smoke test)
    python scripts/repro_degradation.py --blocks 50 --families 'SEW ADD' 'Spiking ResNet'   # + 102 layers
    python scripts/repro_degradation.py --blocks 2 8 16 50 --report-only                   # one table
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _sweep import fmt, output_dir, spread, train_run

FAMILIES = {"SEW ADD": ["--family", "sew", "--connect", "ADD"], "Spiking ResNet": ["--family", "spiking"],
            "Plain": ["--family", "plain"],
            "Spiking ResNet (no zero init)": ["--family", "spiking", "--no-zero-init"]}


def notation(blocks: int, width: int) -> str:
    return f"c{width}k3s1-BN-IF-{{Block(c{width})}}*{blocks}-FC10"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, nargs="+", default=[2, 8, 16])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion_mnist"])
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="n = 1, 2; 1 seed; 1 epoch")
    p.add_argument("--out", type=Path, help="default results/degradation, or runs/quick/degradation with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "degradation", args.quick)
    if args.quick:
        args.blocks, args.seeds, args.epochs = [1, 2], 1, 1
    start, table = time.time(), {}
    for name in args.families:
        for n in args.blocks:
            runs = []
            for seed in range(args.seeds):
                argv_run = ["--dataset", args.dataset, "--notation", notation(n, args.width), "--neuron", "if",
                            "--T", "4", "--optimizer", "adam", "--lr", "0.001", "--scheduler", "cosine",
                            "--epochs", str(args.epochs), "--batch-size", "32", "--zero-init", *FAMILIES[name]]
                print(f"== {name}, {n} blocks, seed {seed}", flush=True)
                run_dir = args.out / "runs" / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-b{n}"
                runs.append(train_run(argv_run, run_dir, seed, train=not args.report_only))
            runs = [r for r in runs if r is not None]
            if not runs:
                continue
            table.setdefault(name, {})[n] = {
                "layers": 2 * n + 2,
                "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
                "best_test_acc": spread([r["best_test_acc"] for r in runs]),
                "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
            }
    meta = {"dataset": args.dataset, "T": 4, "epochs": args.epochs, "seeds": args.seeds, "seeds_finished": {k: {n: r["best_test_acc"]["n"] for n, r in v.items()} for k, v in table.items()}, "width": args.width,
            "optimizer": "adam lr 1e-3 cosine, batch 32, zero init", "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(sum(r["seconds_per_run"]["values"])
                                                for rows in table.values() for r in rows.values()))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "degradation.json").write_text(json.dumps({"meta": meta, "table": table}, indent=1))
    plot(table, args.out / "degradation.png", meta)
    print(f"{'network':<16} {'layers':>6} {'final train loss':>22} {'best test acc %':>22}")
    for name, rows in table.items():
        for n, r in rows.items():
            print(f"{name:<16} {r['layers']:>6} {fmt(r['final_train_loss'], 1, 3):>22} {fmt(r['best_test_acc']):>22}")
    print(f"wrote {args.out / 'degradation.json'} and {args.out / 'degradation.png'} ({meta['seconds']} s; the runs trained {meta['train_seconds_all_runs']} s)")
    return table


def plot(table, path: Path, meta: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in table.items():
        layers = [r["layers"] for r in rows.values()]
        for ax, key, scale in ((axes[0], "final_train_loss", 1), (axes[1], "best_test_acc", 100)):
            mean = [r[key]["mean"] * scale for r in rows.values()]
            std = [0 if r[key]["n"] < 2 else r[key]["std"] * scale for r in rows.values()]
            ax.errorbar(layers, mean, yerr=std, marker="o", capsize=3, label=name)
    axes[0].set_ylabel("final training loss (log)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("best test accuracy (%)")
    for ax in axes:
        ax.set_xlabel("layers")
    axes[0].legend()
    fig.suptitle(f"Degradation on {meta['dataset']} (T=4, {meta['epochs']} epochs, {meta['seeds']} seeds; "
                 "SEW and Spiking ResNet with zero init unless noted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
