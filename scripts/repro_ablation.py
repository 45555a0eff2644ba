"""SEW paper, Table 4 / Figs. 9-10: element-wise function ablation, with and without random temporal delete.

SEW ADD / IAND / AND, Spiking ResNet and Plain on the 7B-Net recipe (SGD momentum 0.9, the per-g
learning rates of Table 8, StepLR at a third of the epochs x0.1, PLIF neurons), on the embedded
event set (emulated event sensor over real digits, 16x16), with random temporal delete (T_train of T
frames) and without it. Reported: best and last test accuracy (mean ± std over seeds) and the curves.

Reduced setting for CPU (stated in the output): the 7B-Net's structure with 16 channels and as
many block+pool stages as the event set's side allows (the main job's net), T = 4 (T_train = 3, the
paper's 12/16 ratio), 12 epochs.

    python scripts/repro_ablation.py                 # 5 networks x RTD on/off x 3 seeds, 12 epochs
    python scripts/repro_ablation.py --epochs 48 --out results/ablation_48ep   # the longer run (StepLR at 16)
    python scripts/repro_ablation.py --quick         # 1 epoch, 1 seed, T = 4, 12 images/class (smoke test)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _sweep import fmt, output_dir, spread, train_run
from sj_sew.training import DVS_GESTURE_LR, QUICKSTART_NET

#: name -> (flags, learning rate of Table 8)
NETWORKS = {
    "SEW ADD": (["--family", "sew", "--connect", "ADD"], DVS_GESTURE_LR["ADD"]),
    "SEW IAND": (["--family", "sew", "--connect", "IAND"], DVS_GESTURE_LR["IAND"]),
    "SEW AND": (["--family", "sew", "--connect", "AND"], DVS_GESTURE_LR["AND"]),
    "Spiking ResNet": (["--family", "spiking"], DVS_GESTURE_LR["spiking"]),
    "Plain": (["--family", "plain"], DVS_GESTURE_LR["plain"]),
}
#: The 7B-Net's pattern (paper: c32, 7 stages at 128x128) with as many block+pool stages as the
#: embedded event set's side allows and 16 channels, so that it trains on CPU.
NET = QUICKSTART_NET


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    p.add_argument("--per-class", type=int, help="use at most this many images per class (default: all)")
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, T = 4, 12 images per class")
    p.add_argument("--out", type=Path, help="default results/ablation, or runs/quick/ablation with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "ablation", args.quick)
    if args.quick:
        args.seeds, args.epochs, args.T, args.per_class = 1, 1, 4, 12
    T_train = max(1, round(args.T * 12 / 16))
    start, table = time.time(), {}
    for seed in range(args.seeds):  # seed-major: a stopped sweep has whole seeds of every network
        for name in args.networks:
            flags, lr = NETWORKS[name]
            for rtd in (True, False):
                run_argv = ["--dataset", "events", "--notation", NET, *flags, "--neuron", "plif",
                            "--T", str(args.T), "--optimizer", "sgd", "--momentum", "0.9", "--lr", str(lr),
                            "--scheduler", "step", "--step-size", str(max(1, args.epochs // 3)), "--gamma", "0.1",
                            "--epochs", str(args.epochs), "--batch-size", "16", "--no-zero-init"]
                if rtd:
                    run_argv += ["--T-train", str(T_train)]
                if args.per_class:
                    run_argv += ["--data-option", f"per_class={args.per_class}"]
                key = f"{name}{' RTD' if rtd else ''}"
                print(f"== {key}, seed {seed}", flush=True)
                r = train_run(run_argv, args.out / "runs" / key.replace(" ", "_"), seed, train=not args.report_only)
                if r is not None:
                    table.setdefault(key, []).append(r)
    rows = {key: {"best_test_acc": spread([r["best_test_acc"] for r in runs]),
                  "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                  "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
                  "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
                  "checkpoints": [r["checkpoint"] for r in runs]} for key, runs in table.items()}
    meta = {"dataset": "events (emulated sensor over scikit-learn digits)", "net": NET, "T": args.T,
            "T_train": T_train, "per_class": args.per_class, "epochs": args.epochs, "seeds": args.seeds, "batch": 16,
            "lr": {k: v[1] for k, v in NETWORKS.items()}, "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(r["wall_time_s"] for runs in table.values() for r in runs))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps({"meta": meta, "table": rows}, indent=1))
    plot(table, args.out / "ablation.png", meta)
    print(f"{'network':<20} {'best test acc %':>20} {'last test acc %':>20} {'final train loss':>20}")
    for key, r in rows.items():
        print(f"{key:<20} {fmt(r['best_test_acc']):>20} {fmt(r['last_test_acc']):>20} "
              f"{fmt(r['final_train_loss'], 1, 3):>20}")
    print(f"wrote {args.out / 'ablation.json'} and {args.out / 'ablation.png'} ({meta['seconds']} s; the runs trained {meta['train_seconds_all_runs']} s)")
    return rows


def plot(table, path: Path, meta: dict):
    """Fig. 9/10 style: training loss and test accuracy per epoch (seed mean), RTD solid, no RTD dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = dict(zip(NETWORKS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for key, runs in table.items():
        name, rtd = key.removesuffix(" RTD"), key.endswith("RTD")
        epochs = min(len(r["history"]) for r in runs)
        for ax, field, scale in ((axes[0], "train_loss", 1), (axes[1], "test_acc", 100)):
            ys = [sum(r["history"][e][field] for r in runs) / len(runs) * scale for e in range(epochs)]
            ax.plot(range(1, epochs + 1), ys, color=colors[name], linestyle="-" if rtd else "--", label=key)
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"g ablation on {meta['dataset']}, T={meta['T']} (RTD: T_train={meta['T_train']}), "
                 f"{meta['seeds']} seed(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
