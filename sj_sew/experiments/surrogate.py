"""SEW paper, Table 9 (Appendix A.5): surrogate gradients ArcTan vs Rectangular vs Constant 1, SEW ADD vs
Spiking ResNet, in the paper's lightweight net with IF neurons, every setting's Adam rate tuned the same way.
``scripts/repro_surrogate.py`` is its command line and describes the setting.

The tuning rule lives here, :func:`tuned_cell`, and the downsample-shortcut ablation
(:mod:`.downsample`) uses it on the same data and recipe: each setting trains the tuning seed
(:data:`~sj_sew.experiments.sweep.TUNING_SEED`, never reported) over a rate grid, widens the grid by a
half-decade while the best rate sits at its edge, then trains the reported seeds at the chosen rate. Tuning runs
live in ``<out>/runs/tuning/``, reported runs in ``<out>/runs/reported/``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .claims import statistics_lines
from .sweep import (LR_LADDER, TUNING_SEED, fmt, grid_val_acc, reported_seeds, spread, stop_text, train_run,
                    tuned_seeds, write_study)

SURROGATES = {"ArcTan": "atan", "Rectangular": "rectangular", "Constant 1": "constant"}
#: name -> RunConfig fields; Spiking ResNet gets zero init (the paper's setting for it), SEW ADD none
NETWORKS = {"SEW ADD": {"family": "sew", "connect": "ADD", "zero_init": False},
            "Spiking ResNet": {"family": "spiking", "zero_init": True}}
NET = "c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*3-FC10"
#: the rates tried first (the earlier untuned 1e-3 inside; a grid widens along sweep.LR_LADDER)
LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2)
#: Table 9 of the paper (CIFAR-10), for the side-by-side.
PAPER = {("ArcTan", "SEW ADD"): 0.8263, ("ArcTan", "Spiking ResNet"): 0.7733,
         ("Rectangular", "SEW ADD"): 0.8256, ("Rectangular", "Spiking ResNet"): 0.6601,
         ("Constant 1", "SEW ADD"): 0.1256, ("Constant 1", "Spiking ResNet"): 0.1}
RULE = ("each setting's Adam rate chosen by the best validation accuracy of the tuning seed {seed} (never "
        "reported) over the grid, widened by a half-decade while the chosen rate sits at its edge; the reported "
        "seeds then train at that rate")
COMPUTE = "one thread per training process, on a 2-core CPU shared with other training runs"
#: every run stops on a validation plateau of PATIENCE epochs within an EPOCHS cap; VAL_FRACTION of each class
#: of the 1347 training images validates (809 fit / 538 validate, 50+ per class / 450 test)
EPOCHS, PATIENCE, VAL_FRACTION = 20, 5, 0.4


def recipe(epochs: int = EPOCHS) -> dict:
    """The training recipe both digits studies share: digits 8x8, IF, T = 4, Adam cosine over ``epochs`` (the
    cap), batch 32, stopped on a validation plateau of :data:`PATIENCE` epochs, :data:`VAL_FRACTION` validating."""
    return {"dataset": "digits", "neuron": "if", "T": 4, "optimizer": "adam", "scheduler": "cosine",
            "epochs": epochs, "batch_size": 32, "patience": PATIENCE, "val_fraction": VAL_FRACTION}


def key_of(surrogate: str, network: str) -> str:
    return f"{surrogate} | {network}"


def cell_dir(out: Path, key: str, lr: float, tuning: bool = False) -> Path:
    """``<out>/runs/reported/<cell>/lr<lr>`` (reported seeds) or ``<out>/runs/tuning/<cell>/lr<lr>`` (the tuning
    seed)."""
    cell = key.replace(" | ", "-").replace(" ", "_")
    return Path(out) / "runs" / ("tuning" if tuning else "reported") / cell / f"lr{lr:g}"


def cell_flags(surrogate: str, network: str, lr: float, epochs: int) -> dict:
    """The RunConfig fields of one surrogate and network at one rate."""
    return {**recipe(epochs), "notation": NET, **NETWORKS[network], "surrogate": SURROGATES[surrogate], "lr": lr}


def tuned_cell(key: str, flags_at: Callable[[float], dict], out: Path, seeds: list[int], lrs=LR_GRID,
               train: bool = True, progress: bool = False, widen: bool = True) -> dict | None:
    """One setting under the tuning rule: the tuning seed over ``lrs`` (widened at an edge when ``widen``), then
    ``seeds`` at the chosen rate; ``flags_at(lr)`` gives its RunConfig fields. With ``train=False`` only
    finished runs are read back. None until the grid is finished; otherwise the row (with every run's
    ``history`` and the tuning runs' seconds)."""
    def run(lr, seed, tuning):
        if train:
            print(f"== {key}, lr {lr:g}, {'tuning ' if tuning else ''}seed {seed}", flush=True)
        return train_run(flags_at(lr), cell_dir(out, key, lr, tuning), seed, train=train, progress=progress)

    tuned = tuned_seeds(run, lrs, seeds, widen)
    if tuned is None or not tuned[2]:
        return None  # the grid is not finished (no rate can be chosen yet), or no reported seed is
    lr, grid, done = tuned
    runs = list(done.values())
    return {"lr": lr, "grid_val_acc": grid_val_acc(grid),
            "seeds": list(done),
            "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
            "last_test_acc": spread([r["last_test_acc"] for r in runs]),
            "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
            "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
            "tuning_seconds": sum(r["wall_time_s"] for r in grid.values()),  # rounded where summed
            "history": [r["history"] for r in runs]}


def study_meta(net: str, epochs: int, seeds: list[int], lrs, table: dict, **more) -> dict:
    """What a tuned digits study records about itself: setting, rule and the compute used (the runs' wall times,
    so that --report-only writes the same file)."""
    reported = sum(sum(r["seconds_per_run"]["values"]) for r in table.values())
    tuning = sum(r["tuning_seconds"] for r in table.values())
    return {"dataset": "digits (8x8)", "net": net, "T": 4, "epochs": epochs, "patience": PATIENCE,
            "val_fraction": VAL_FRACTION, "seeds": len(seeds),
            "reported_seeds": seeds, "tuning_seed": TUNING_SEED, "lr_grid": list(lrs),
            "optimizer": "adam, cosine schedule, batch 32", "selection": "best validation accuracy",
            "rule": RULE.format(seed=TUNING_SEED), **more,
            "train_seconds_reported": round(reported), "train_seconds_tuning": round(tuning),
            "train_seconds_all_runs": round(reported + tuning), "compute": COMPUTE}


def without_history(table: dict) -> dict:
    return {key: {k: v for k, v in row.items() if k != "history"} for key, row in table.items()}


def run_study(out: Path, seeds: int = 5, epochs: int = EPOCHS, lrs=LR_GRID, report_only: bool = False,
              progress: bool = False, widen: bool = True) -> dict:
    """Train (unless ``report_only``; ``progress``: each run's progress bars) and aggregate every surrogate x
    network under the tuning rule, reporting seeds ``0 .. seeds - 1``. Returns ``{"meta", "table", "rows"}``:
    ``table`` with each row's histories (for the figure), ``rows`` without them (the report)."""
    table = {}
    seeds_out = reported_seeds(seeds)
    for sg_name in SURROGATES:
        for net_name in NETWORKS:
            key = key_of(sg_name, net_name)
            row = tuned_cell(key, lambda lr, s=sg_name, n=net_name: cell_flags(s, n, lr, epochs), out, seeds_out,
                             lrs, not report_only, progress, widen)
            if row is not None:
                table[key] = {**row, "zero_init": NETWORKS[net_name]["zero_init"],
                              "paper_cifar10": PAPER[(sg_name, net_name)]}
    meta = study_meta(NET, epochs, seeds_out, lrs, table,
                      zero_init={name: flags["zero_init"] for name, flags in NETWORKS.items()})
    return {"meta": meta, "table": table, "rows": without_history(table)}


def write_report(out: Path, study: dict) -> Path:
    """``<out>/surrogate.json`` (meta and rows) and ``<out>/surrogate.png``; the JSON's path."""
    return write_study(out, "surrogate", {"meta": study["meta"], "table": study["rows"]}, plot, study["table"],
                       study["meta"])


def format_table(rows: dict) -> str:
    lines = [f"{'surrogate | network':<30} {'lr':>7} {'test acc % at val-selected':>28} {'at last epoch':>18} "
             f"{'paper (CIFAR-10)':>17}"]
    for key, r in rows.items():
        lines.append(f"{key:<30} {r['lr']:>7g} {fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18} "
                     f"{r['paper_cifar10'] * 100:>16.2f}")
    lines += ["", *statistics_lines("surrogate", rows)]
    return "\n".join(lines)


def plot(table, path: Path, meta: dict):
    """Left: test accuracy at the validation-selected epoch per surrogate, one bar per network. Right: validation
    accuracy per epoch at the chosen rate (seed mean), to show whether the runs still rise at the last epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.38
    for j, net_name in enumerate(NETWORKS):
        cells = [table.get(key_of(s, net_name)) for s in SURROGATES]
        means = [c["selected_test_acc"]["mean"] * 100 if c else 0 for c in cells]
        stds = [c["selected_test_acc"]["std"] * 100 if c and c["selected_test_acc"]["n"] > 1 else 0 for c in cells]
        xs = [i + (j - 0.5) * width for i in range(len(SURROGATES))]
        bars.bar(xs, means, width, yerr=stds, capsize=3, label=net_name)
    bars.set_xticks(range(len(SURROGATES)), list(SURROGATES))
    bars.set_ylabel("test accuracy (%), validation-selected epoch")
    bars.legend()
    plot_curves(curves, table)
    fig.suptitle(f"Surrogate study on {meta['dataset']}, T=4, {stop_text(meta)}, {meta['seeds']} seed(s) at each "
                 "chosen rate; a curve ends with its setting's shortest run", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(ax, table: dict) -> None:
    """Validation accuracy per epoch of each row at its chosen rate (mean over its seeds)."""
    for key, row in table.items():
        epochs = min(len(h) for h in row["history"])
        ys = [100 * sum(h[e]["val_acc"] for h in row["history"]) / len(row["history"]) for e in range(epochs)]
        ax.plot(range(1, epochs + 1), ys, marker=".", label=f"{key} (lr {row['lr']:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%), chosen lr")
    ax.legend(fontsize=7, loc="lower right")
