"""SEW paper, Table 4 / Figs. 9-10: element-wise function ablation, with and without random temporal delete,
every network's learning rate tuned the same way (a grid, chosen by the validation accuracy of one seed; then
the reported seeds at the chosen rate). The committed results use the first rule of :func:`run_study` (seed 0
tunes and is reported, a fixed number of epochs); ``tuning_seed`` and ``patience`` give the second (a tuning
seed that is not reported, runs stopped on a validation plateau within the epoch cap).
``scripts/repro_ablation.py`` is its command line and describes the setting."""
from __future__ import annotations

import time
from pathlib import Path

from ..training import DVS_GESTURE_LR
from .claims import statistics_lines
from .sweep import choose_lr, fmt, reported_seeds, spread, train_run, write_study

#: name -> (RunConfig fields of the network, its learning rate in Table 8, for reference)
NETWORKS = {
    "SEW ADD": ({"family": "sew", "connect": "ADD"}, DVS_GESTURE_LR["ADD"]),
    "SEW IAND": ({"family": "sew", "connect": "IAND"}, DVS_GESTURE_LR["IAND"]),
    "SEW AND": ({"family": "sew", "connect": "AND"}, DVS_GESTURE_LR["AND"]),
    "Spiking ResNet": ({"family": "spiking"}, DVS_GESTURE_LR["spiking"]),
    "Plain": ({"family": "plain"}, DVS_GESTURE_LR["plain"]),
}
#: the same grid for every network, spanning Table 8's rates (0.001 to 0.1) in half-decade steps
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
#: the 7B-Net's layout with 16 channels and as many block+pool stages as a 34x34 input allows
NET = "c16k3s1-BN-PLIF-{SEW Block(c16)-MPk2s2}*5-FC10"
DATASET = "fashion_events"
BATCH = 16


def settings(networks) -> list[str]:
    """'<network> RTD' and '<network>' for each network, network-major."""
    return [f"{name}{suffix}" for name in networks for suffix in (" RTD", "")]


def run_dir(out: Path, key: str, lr: float) -> Path:
    return Path(out) / "runs" / key.replace(" ", "_") / f"lr{lr:g}"


def t_train(T: int) -> int:
    """Random temporal delete keeps the paper's 12 of 16 frames: round(T * 12 / 16), at least 1."""
    return max(1, round(T * 12 / 16))


def cell_flags(key: str, lr: float, T: int, epochs: int, per_class: int, patience: int | None = None) -> dict:
    """The RunConfig fields of one setting at one rate: the 7B-Net recipe (SGD momentum 0.9, StepLR x0.1 at each
    third of the run, PLIF, batch 16, no zero init), with random temporal delete for an ``RTD`` setting; with
    ``patience``, early stopping on the validation plateau (``epochs`` is then the cap)."""
    name, rtd = key.removesuffix(" RTD"), key.endswith(" RTD")
    flags = {"dataset": DATASET, "data_options": {"per_class": per_class}, "notation": NET, **NETWORKS[name][0],
             "neuron": "plif", "T": T, "optimizer": "sgd", "momentum": 0.9, "scheduler": "step",
             "step_size": max(1, epochs // 3), "gamma": 0.1, "epochs": epochs, "batch_size": BATCH,
             "zero_init": False}
    if rtd:
        flags["T_train"] = t_train(T)
    if patience is not None:
        flags["patience"] = patience
    return {**flags, "lr": lr}


def run_study(out: Path, seeds: int = 3, epochs: int = 9, T: int = 4, per_class: int = 200, lrs=LR_GRID,
              networks=tuple(NETWORKS), shard: tuple[int, int] = (0, 1), report_only: bool = False,
              progress: bool = False, tuning_seed: int | None = None, patience: int | None = None) -> dict:
    """Train (shard ``k`` of ``n``: every n-th setting from the k-th) or, with ``report_only``, only read back
    the runs under ``out``; aggregate what is finished (``progress``: each run's progress bars). Returns
    ``{"meta", "table", "rows"}``: ``table`` with each row's histories (for the figure), ``rows`` without them
    (the report).

    The rate is chosen on seed ``tuning_seed``'s runs over the grid and seeds ``0 .. seeds - 1`` are reported
    (:func:`~sj_sew.experiments.sweep.reported_seeds`); ``tuning_seed=None`` is the committed results' rule
    (seed 0 tunes and is reported). ``patience``: every run stops on a validation plateau, ``epochs`` the cap."""
    lrs = list(lrs)
    k, n = shard
    seeds_out = reported_seeds(seeds, tuning_seed)
    tuner = 0 if tuning_seed is None else tuning_seed
    start = time.time()
    finished, table = [], {}  # every finished run (for the CPU time), the table's rows
    for i, key in enumerate(settings(networks)):
        train = not report_only and i % n == k

        def cell(lr, seed, note=""):
            if train:
                print(f"== {key}, {note}lr {lr:g}, seed {seed}", flush=True)
            r = train_run(cell_flags(key, lr, T, epochs, per_class, patience), run_dir(out, key, lr), seed,
                          train=train, progress=progress)
            if r is not None:
                finished.append(r)
            return r

        grid = {lr: r for lr in lrs if (r := cell(lr, tuner)) is not None}
        if len(grid) < len(lrs):
            continue  # the grid is not finished: no rate can be chosen yet
        lr = choose_lr(grid)
        runs = [r for seed in seeds_out
                if (r := grid[lr] if seed == tuner else cell(lr, seed, "chosen ")) is not None]
        if not runs:
            continue
        table[key] = {
            "lr": lr, "table8_lr": NETWORKS[key.removesuffix(" RTD")][1],
            "grid_val_acc": {f"{g:g}": grid[g]["selected_val_acc"] for g in lrs},
            "grid_selected_test_acc": {f"{g:g}": grid[g]["selected_test_acc"] for g in lrs},
            "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
            "last_test_acc": spread([r["last_test_acc"] for r in runs]),
            "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
            "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
            **({} if patience is None else {"epochs_run": spread([r["epochs"] for r in runs])}),
            "checkpoints": [r["best_checkpoint"] for r in runs],
            "history": [r["history"] for r in runs],
        }
    selection = ("best validation accuracy of seed 0" if tuning_seed is None else
                 f"best validation accuracy of the tuning seed {tuning_seed} (not reported)")
    meta = {"dataset": f"{DATASET} (emulated event sensor over Fashion-MNIST, 34x34)", "per_class": per_class,
            "net": NET, "T": T, "T_train": t_train(T), "epochs": epochs, "seeds": seeds, "batch": BATCH,
            "lr_grid": lrs, "selection": selection,
            **({} if tuning_seed is None else {"tuning_seed": tuning_seed, "reported_seeds": seeds_out}),
            **({} if patience is None else {"patience": patience, "stopping": f"validation plateau: stop once the "
                f"validation accuracy has not improved for {patience} epochs, at most {epochs} epochs"}),
            "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(r["wall_time_s"] for r in finished))}
    rows = {key: {k: v for k, v in row.items() if k != "history"} for key, row in table.items()}
    return {"meta": meta, "table": table, "rows": rows}


def write_report(out: Path, study: dict) -> Path:
    """``<out>/ablation.json`` (meta and rows) and ``<out>/ablation.png``; the JSON's path."""
    return write_study(out, "ablation", {"meta": study["meta"], "table": study["rows"]}, plot, study["table"],
                       study["meta"])


def format_rows(rows: dict) -> str:
    """The rows as a text table (chosen rate, test accuracy at the selected and the last epoch, train loss)."""
    lines = [f"{'setting':<20} {'lr (Table 8)':>14} {'test acc % at val-selected':>28} {'at last epoch':>18} "
             f"{'final train loss':>18}"]
    for key, r in rows.items():
        lines.append(f"{key:<20} {r['lr']:>6g} ({r['table8_lr']:g}) {fmt(r['selected_test_acc']):>28} "
                     f"{fmt(r['last_test_acc']):>18} {fmt(r['final_train_loss'], 1, 3):>18}")
    lines += ["", *statistics_lines("ablation", rows)]
    return "\n".join(lines)


def plot(table, path: Path, meta: dict):
    """Left: validation accuracy against learning rate (the grid, seed 0). Middle and right: training loss and
    test accuracy per epoch at the chosen rate (seed mean); RTD solid, without RTD dashed."""
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
    plt.close(fig)
