"""SEW paper, Table 4 / Figs. 9-10: element-wise function ablation, with and without random temporal delete,
with every network's learning rate tuned the same way.

SEW ADD / IAND / AND, Spiking ResNet and Plain on the 7B-Net recipe (SGD momentum 0.9, StepLR x0.1 at each
third of the run, PLIF neurons, batch 16, no zero init), with random temporal delete (T_train of T frames)
and without it. The paper tuned each network's learning rate (Table 8); here every network and RTD setting
picks its rate from the same grid, by the best validation accuracy of one seed (seed 0); then seeds 1 and 2
run at the chosen rate. The test split selects nothing: reported are the test accuracy at the
validation-selected epoch and at the last epoch (mean ± std over the seeds), and the whole grid.

Data: ``fashion_events``, Fashion-MNIST seen by the emulated event sensor the N-MNIST way (34x34 sensor,
three saccades), ``per_class`` images per class (75/25 train/test; 10 % of train held out to validate).

Reduced setting for CPU (stated in the output): the 7B-Net's layout (Table 5: c32k3s1-BN-PLIF-{SEW
Block(c32)-MPk2s2}*7-FC11 at 128x128) with 16 channels and the 5 block+pool stages a 34x34 input allows, T = 4
(T_train = 3, the paper's 12/16), 9 epochs (StepLR at 3 and 6; the paper: 64 and 128 of 192).

    python scripts/repro_ablation.py                      # 10 settings x 5 rates x seed 0, then 2 seeds more
    python scripts/repro_ablation.py --shard 0/2 & python scripts/repro_ablation.py --shard 1/2   # 2 cores
    python scripts/repro_ablation.py --report-only        # aggregate the finished runs
    python scripts/repro_ablation.py --quick              # 1 epoch, 2 rates, 1 seed, 12 images/class (smoke)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _sweep import fmt, output_dir, parse_shard, spread, train_run
from sj_sew.training import DVS_GESTURE_LR

#: name -> (flags, learning rate of Table 8, for reference)
NETWORKS = {
    "SEW ADD": (["--family", "sew", "--connect", "ADD"], DVS_GESTURE_LR["ADD"]),
    "SEW IAND": (["--family", "sew", "--connect", "IAND"], DVS_GESTURE_LR["IAND"]),
    "SEW AND": (["--family", "sew", "--connect", "AND"], DVS_GESTURE_LR["AND"]),
    "Spiking ResNet": (["--family", "spiking"], DVS_GESTURE_LR["spiking"]),
    "Plain": (["--family", "plain"], DVS_GESTURE_LR["plain"]),
}
#: the same grid for every network, spanning Table 8's rates (0.001 to 0.1) in half-decade steps
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
#: the 7B-Net's layout with 16 channels and as many block+pool stages as a 34x34 input allows
NET = "c16k3s1-BN-PLIF-{SEW Block(c16)-MPk2s2}*5-FC10"
DATASET = "fashion_events"


def settings(networks) -> list[str]:
    """'<network>' and '<network> RTD' for each network, network-major."""
    return [f"{name}{suffix}" for name in networks for suffix in (" RTD", "")]


def run_dir(out: Path, key: str, lr: float) -> Path:
    return out / "runs" / key.replace(" ", "_") / f"lr{lr:g}"


def choose_lr(grid: dict[float, dict]) -> float:
    """The rate whose seed-0 run reached the highest validation accuracy (the smaller rate on a tie)."""
    return max(sorted(grid), key=lambda lr: (grid[lr]["selected_val_acc"], -lr))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="seeds at the chosen rate (seed 0 is the grid's run)")
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--per-class", type=int, default=200, help="images per class (default 200)")
    p.add_argument("--lrs", type=float, nargs="+", default=list(LR_GRID))
    p.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    p.add_argument("--shard", type=parse_shard, default=(0, 1),
                   help="K/N: run only every N-th setting from the K-th (N processes side by side)")
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="1 epoch, 2 rates, 1 seed, 12 images per class")
    p.add_argument("--out", type=Path, help="default results/ablation, or runs/quick/ablation with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "ablation", args.quick)
    if args.quick:
        args.seeds, args.epochs, args.per_class, args.lrs = 1, 1, 12, [0.01, 0.1]
    T_train = max(1, round(args.T * 12 / 16))
    shard, shards = args.shard
    start = time.time()
    finished, table = [], {}  # every finished run (for the CPU time), the table's rows
    for i, key in enumerate(settings(args.networks)):
        train = not args.report_only and i % shards == shard
        name, rtd = key.removesuffix(" RTD"), key.endswith(" RTD")
        run_argv = ["--dataset", DATASET, "--data-option", f"per_class={args.per_class}", "--notation", NET,
                    *NETWORKS[name][0], "--neuron", "plif", "--T", str(args.T), "--optimizer", "sgd",
                    "--momentum", "0.9", "--scheduler", "step", "--step-size", str(max(1, args.epochs // 3)),
                    "--gamma", "0.1", "--epochs", str(args.epochs), "--batch-size", "16", "--no-zero-init"]
        if rtd:
            run_argv += ["--T-train", str(T_train)]
        grid = {}
        for lr in args.lrs:
            if train:
                print(f"== {key}, lr {lr:g}, seed 0", flush=True)
            r = train_run(run_argv + ["--lr", str(lr)], run_dir(args.out, key, lr), 0, train=train)
            if r is not None:
                grid[lr] = r
                finished.append(r)
        if len(grid) < len(args.lrs):
            continue  # the grid is not finished: no rate can be chosen yet
        lr = choose_lr(grid)
        runs = [grid[lr]]
        for seed in range(1, args.seeds):
            if train:
                print(f"== {key}, chosen lr {lr:g}, seed {seed}", flush=True)
            r = train_run(run_argv + ["--lr", str(lr)], run_dir(args.out, key, lr), seed, train=train)
            if r is not None:
                runs.append(r)
                finished.append(r)
        table[key] = {
            "lr": lr, "table8_lr": NETWORKS[name][1],
            "grid_val_acc": {f"{g:g}": grid[g]["selected_val_acc"] for g in args.lrs},
            "grid_selected_test_acc": {f"{g:g}": grid[g]["selected_test_acc"] for g in args.lrs},
            "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
            "last_test_acc": spread([r["last_test_acc"] for r in runs]),
            "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
            "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
            "checkpoints": [r["best_checkpoint"] for r in runs],
            "history": [r["history"] for r in runs],
        }
    meta = {"dataset": f"{DATASET} (emulated event sensor over Fashion-MNIST, 34x34)", "per_class": args.per_class,
            "net": NET, "T": args.T, "T_train": T_train, "epochs": args.epochs, "seeds": args.seeds, "batch": 16,
            "lr_grid": args.lrs, "selection": "best validation accuracy of seed 0",
            "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(r["wall_time_s"] for r in finished))}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {key: {k: v for k, v in row.items() if k != "history"} for key, row in table.items()}
    if args.report_only or shards == 1:  # a shard writes no report: its table would lack the other shards' rows
        (args.out / "ablation.json").write_text(json.dumps({"meta": meta, "table": rows}, indent=1))
        plot(table, args.out / "ablation.png", meta)
    print(f"{'setting':<20} {'lr (Table 8)':>14} {'test acc % at val-selected':>28} {'at last epoch':>18} {'final train loss':>18}")
    for key, r in rows.items():
        print(f"{key:<20} {r['lr']:>6g} ({r['table8_lr']:g}) {fmt(r['selected_test_acc']):>28} "
              f"{fmt(r['last_test_acc']):>18} {fmt(r['final_train_loss'], 1, 3):>18}")
    written = f"; wrote {args.out / 'ablation.json'} and the figure" if args.report_only or shards == 1 else ""
    print(f"{len(rows)} settings finished{written} ({meta['seconds']} s; the runs trained "
          f"{meta['train_seconds_all_runs']} s)")
    return rows


def plot(table, path: Path, meta: dict):
    """Left: validation accuracy against learning rate (the grid, seed 0). Right: test accuracy per epoch at
    the chosen rate (seed mean); RTD solid, without RTD dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    colors = dict(zip(NETWORKS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for key, row in table.items():
        name, rtd = key.removesuffix(" RTD"), key.endswith("RTD")
        style = dict(color=colors[name], linestyle="-" if rtd else "--", label=f"{key} (lr {row['lr']:g})")
        lrs = [float(g) for g in row["grid_val_acc"]]
        axes[0].plot(lrs, [100 * v for v in row["grid_val_acc"].values()], marker="o", **style)
        epochs = min(len(h) for h in row["history"])
        for ax, field, scale in ((axes[1], "train_loss", 1), (axes[2], "test_acc", 100)):
            ys = [sum(h[e][field] for h in row["history"]) / len(row["history"]) * scale for e in range(epochs)]
            ax.plot(range(1, epochs + 1), ys, **style)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("learning rate")
    axes[0].set_ylabel("best validation accuracy (%), seed 0")
    axes[1].set_ylabel("training loss, chosen lr")
    axes[2].set_ylabel("test accuracy (%), chosen lr")
    for ax in axes[1:]:
        ax.set_xlabel("epoch")
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"g ablation on {meta['dataset']}, T={meta['T']} (RTD: T_train={meta['T_train']}), "
                 f"{meta['epochs']} epochs, {meta['seeds']} seed(s) at each chosen rate", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
