"""SEW paper, Table 9 (Appendix A.5): surrogate gradients ArcTan vs Rectangular vs Constant 1,
SEW ADD vs Spiking ResNet, in the paper's lightweight net with IF neurons.

Reduced setting for CPU (stated in the output): scikit-learn digits (8x8) instead of CIFAR-10, so the
net keeps Table 9's structure with 3 instead of 5 {{Block}*2-MP} stages
(c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*3-FC10), T = 4, Adam lr 1e-3 for every surrogate (the
paper tunes lr per surrogate; we do not), no zero init. 10 % of each class of the training split is held out
to validate: reported are the test accuracy at the validation-selected epoch and at the last epoch.

    python scripts/repro_surrogate.py              # 3 surrogates x 2 networks x 3 seeds, 10 epochs
    python scripts/repro_surrogate.py --quick      # 1 epoch, 1 seed (smoke test)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _sweep import fmt, output_dir, spread, train_run

SURROGATES = {"ArcTan": "atan", "Rectangular": "rectangular", "Constant 1": "constant"}
NETWORKS = {"SEW ADD": ["--family", "sew", "--connect", "ADD"], "Spiking ResNet": ["--family", "spiking"]}
NET = "c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*3-FC10"
#: Table 9 of the paper (CIFAR-10), for the side-by-side.
PAPER = {("ArcTan", "SEW ADD"): 0.8263, ("ArcTan", "Spiking ResNet"): 0.7733,
         ("Rectangular", "SEW ADD"): 0.8256, ("Rectangular", "Spiking ResNet"): 0.6601,
         ("Constant 1", "SEW ADD"): 0.1256, ("Constant 1", "Spiking ResNet"): 0.1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed")
    p.add_argument("--out", type=Path, help="default results/surrogate, or runs/quick/surrogate with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "surrogate", args.quick)
    if args.quick:
        args.seeds, args.epochs = 1, 1
    start, rows = time.time(), {}
    for sg_name, sg in SURROGATES.items():
        for net_name, flags in NETWORKS.items():
            runs = []
            for seed in range(args.seeds):
                run_argv = ["--dataset", "digits", "--notation", NET, *flags, "--neuron", "if", "--surrogate", sg,
                            "--T", "4", "--optimizer", "adam", "--lr", "0.001", "--scheduler", "cosine",
                            "--epochs", str(args.epochs), "--batch-size", "32", "--no-zero-init"]
                print(f"== {sg_name}, {net_name}, seed {seed}", flush=True)
                runs.append(train_run(run_argv, args.out / "runs" / f"{sg}-{net_name.replace(' ', '_')}", seed,
                                      train=not args.report_only))
            runs = [r for r in runs if r is not None]
            if not runs:
                continue
            rows[f"{sg_name} | {net_name}"] = {"selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
                                               "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                                               "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
                                               "paper_cifar10": PAPER[(sg_name, net_name)]}
    meta = {"dataset": "digits (8x8)", "net": NET, "T": 4, "epochs": args.epochs, "seeds": args.seeds,
            "optimizer": "adam lr 1e-3 cosine, batch 32", "selection": "best validation accuracy",
            "train_seconds_all_runs": round(sum(sum(r["seconds_per_run"]["values"]) for r in rows.values())),
            "seconds": round(time.time() - start)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "surrogate.json").write_text(json.dumps({"meta": meta, "table": rows}, indent=1))
    plot(rows, args.out / "surrogate.png", meta)
    print(f"{'surrogate | network':<30} {'test acc % at val-selected':>28} {'at last epoch':>18} {'paper (CIFAR-10)':>17}")
    for key, r in rows.items():
        print(f"{key:<30} {fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18} {r['paper_cifar10'] * 100:>16.2f}")
    print(f"wrote {args.out / 'surrogate.json'} and {args.out / 'surrogate.png'} ({meta['seconds']} s)")
    return rows


def plot(rows, path: Path, meta: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for j, net_name in enumerate(NETWORKS):
        cells = [rows.get(f"{s} | {net_name}") for s in SURROGATES]
        means = [c["selected_test_acc"]["mean"] * 100 if c else 0 for c in cells]
        stds = [c["selected_test_acc"]["std"] * 100 if c and c["selected_test_acc"]["n"] > 1 else 0 for c in cells]
        xs = [i + (j - 0.5) * width for i in range(len(SURROGATES))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=net_name)
    ax.set_xticks(range(len(SURROGATES)), list(SURROGATES))
    ax.set_ylabel("test accuracy (%), validation-selected epoch")
    ax.legend()
    ax.set_title(f"Surrogate study on {meta['dataset']}, T=4, {meta['epochs']} epochs, {meta['seeds']} seed(s)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
