"""SEW paper, Table 2 / Fig. 3: the degradation problem. Does a deeper net train worse?

SEW ADD, Spiking ResNet and Plain nets of increasing depth, all with zero init (the paper's setting for
Spiking ResNet; a no-op for Plain), and Spiking ResNet without it for contrast, IF neurons, the same data,
optimiser and epochs. Reported: final training loss, and test accuracy at the validation-selected epoch and at
the last epoch (mean ± std over seeds), against depth, as JSON and PNG. The paper's claim: deeper SEW gets
better, deeper Spiking ResNet gets worse.

Reduced setting for CPU (stated in the output): ``fashion_events`` (Fashion-MNIST through the emulated 34x34
event sensor, ``per_class`` images per class, 75/25 train/test, 10 % of train held out to validate), T = 4,
nets c16k3s2-BN-IF-MPk2s2-{Block(c16)}*n-FC10 (n residual blocks at 8x8, 2n + 2 layers), Adam 1e-3 cosine,
batch 32, 10 epochs. ``--dataset digits`` runs the earlier setting (8x8 digits, c16k3s1-BN-IF stem).

    python scripts/repro_degradation.py                # n = 2, 8, 16 for all four, 50 for SEW ADD and Spiking ResNet
    python scripts/repro_degradation.py --shard 0/2 & python scripts/repro_degradation.py --shard 1/2
    python scripts/repro_degradation.py --report-only  # aggregate the finished runs
    python scripts/repro_degradation.py --quick        # n = 1, 2; 1 seed; 1 epoch (smoke test)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _sweep import fmt, output_dir, parse_shard, spread, train_run

FAMILIES = {"SEW ADD": ["--family", "sew", "--connect", "ADD"], "Spiking ResNet": ["--family", "spiking"],
            "Plain": ["--family", "plain"],
            "Spiking ResNet (no zero init)": ["--family", "spiking", "--no-zero-init"]}


#: the stem of each data set's nets: fashion_events' 34x34 frames are brought down to 8x8 before the blocks
STEMS = {"fashion_events": "c{w}k3s2-BN-IF-MPk2s2", "digits": "c{w}k3s1-BN-IF"}
#: the deepest nets are run for the two families the paper's claim is about
DEEP_ONLY = ("SEW ADD", "Spiking ResNet")


def notation(dataset: str, blocks: int, width: int) -> str:
    return f"{STEMS[dataset].format(w=width)}-{{Block(c{width})}}*{blocks}-FC10"


def run_dir(out: Path, name: str, blocks: int) -> Path:
    return out / "runs" / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-b{blocks}"


def jobs(families, blocks, deep_blocks, seeds) -> list[tuple[str, int, int]]:
    """(family, blocks, seed) of every run, family-major."""
    return [(name, n, seed) for name in families for n in blocks + (deep_blocks if name in DEEP_ONLY else [])
            for seed in range(seeds)]


def share(all_jobs, shard: int, shards: int):
    """The jobs of one of ``shards`` processes: greedy by cost (blocks + 2), so the shards end together."""
    load, mine = [0] * shards, []
    for job in sorted(all_jobs, key=lambda j: -(j[1] + 2)):
        k = load.index(min(load))
        load[k] += job[1] + 2
        if k == shard:
            mine.append(job)
    return set(mine)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, nargs="+", default=[2, 8, 16])
    p.add_argument("--deep-blocks", type=int, nargs="*", default=[50],
                   help=f"depths run only for {' and '.join(DEEP_ONLY)} (default 50: 102 layers)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--dataset", default="fashion_events", choices=list(STEMS))
    p.add_argument("--per-class", type=int, default=300, help="images per class of fashion_events (default 300)")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument("--shard", type=parse_shard, default=(0, 1),
                   help="K/N: run only this process's share of the runs (N processes side by side)")
    p.add_argument("--report-only", action="store_true", help="aggregate the finished runs, train nothing")
    p.add_argument("--quick", action="store_true", help="n = 1, 2; 1 seed; 1 epoch; 12 images per class")
    p.add_argument("--out", type=Path, help="default results/degradation, or runs/quick/degradation with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "degradation", args.quick)
    if args.quick:
        args.blocks, args.deep_blocks, args.seeds, args.epochs, args.per_class = [1, 2], [], 1, 1, 12
    all_jobs = jobs(args.families, args.blocks, args.deep_blocks, args.seeds)
    mine = set() if args.report_only else share(all_jobs, *args.shard)
    start, results = time.time(), {}
    for name, n, seed in all_jobs:
        argv_run = ["--dataset", args.dataset, "--notation", notation(args.dataset, n, args.width), "--neuron", "if",
                    "--T", "4", "--optimizer", "adam", "--lr", "0.001", "--scheduler", "cosine",
                    "--epochs", str(args.epochs), "--batch-size", "32", "--zero-init", *FAMILIES[name]]
        if args.dataset == "fashion_events":
            argv_run += ["--data-option", f"per_class={args.per_class}"]
        if (name, n, seed) in mine:
            print(f"== {name}, {n} blocks, seed {seed}", flush=True)
        r = train_run(argv_run, run_dir(args.out, name, n), seed, train=(name, n, seed) in mine)
        if r is not None:
            results.setdefault(name, {}).setdefault(n, []).append(r)
    table = {name: {n: {"layers": 2 * n + 2,
                        "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
                        "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
                        "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                        "seconds_per_run": spread([r["wall_time_s"] for r in runs])}
                    for n, runs in sorted(by_depth.items())}
             for name, by_depth in results.items()}
    meta = {"dataset": args.dataset, "per_class": args.per_class if args.dataset == "fashion_events" else None,
            "T": 4, "epochs": args.epochs, "seeds": args.seeds, "width": args.width,
            "notation": notation(args.dataset, 0, args.width).replace("*0", "*n"),
            "seeds_finished": {k: {n: r["last_test_acc"]["n"] for n, r in v.items()} for k, v in table.items()},
            "optimizer": "adam lr 1e-3 cosine, batch 32, zero init", "selection": "best validation accuracy", "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(sum(r["seconds_per_run"]["values"])
                                                for rows in table.values() for r in rows.values()))}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only or args.shard[1] == 1:  # a shard alone writes no report: it lacks the others' runs
        (args.out / "degradation.json").write_text(json.dumps({"meta": meta, "table": table}, indent=1))
        plot(table, args.out / "degradation.png", meta)
    print(f"{'network':<30} {'layers':>6} {'final train loss':>20} {'test acc % at val-selected':>28} {'at last epoch':>18}")
    for name, rows in table.items():
        for n, r in rows.items():
            print(f"{name:<30} {r['layers']:>6} {fmt(r['final_train_loss'], 1, 3):>20} "
                  f"{fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18}")
    report = args.report_only or args.shard[1] == 1
    print(f"{'wrote ' + str(args.out / 'degradation.json') + ' and the figure' if report else 'shard done, no report'} "
          f"({meta['seconds']} s; the runs trained {meta['train_seconds_all_runs']} s)")
    return table


def plot(table, path: Path, meta: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in table.items():
        layers = [r["layers"] for r in rows.values()]
        for ax, key, scale in ((axes[0], "final_train_loss", 1), (axes[1], "selected_test_acc", 100)):
            mean = [r[key]["mean"] * scale for r in rows.values()]
            std = [0 if r[key]["n"] < 2 else r[key]["std"] * scale for r in rows.values()]
            ax.errorbar(layers, mean, yerr=std, marker="o", capsize=3, label=name)
    axes[0].set_ylabel("final training loss (log)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("test acc. (%), val.-selected epoch")
    for ax in axes:
        ax.set_xlabel("layers")
    axes[0].legend()
    fig.suptitle(f"Degradation on {meta['dataset']} (T=4, {meta['epochs']} epochs, {meta['seeds']} seeds; "
                 "SEW and Spiking ResNet with zero init unless noted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
