"""SEW paper, Table 9 (Appendix A.5): surrogate gradients ArcTan vs Rectangular vs Constant 1, SEW ADD vs
Spiking ResNet, in the paper's lightweight net with IF neurons. ``scripts/repro_surrogate.py`` is its command
line and describes the setting."""
from __future__ import annotations

import time
from pathlib import Path

from .claims import statistics_lines
from .sweep import fmt, spread, train_run, write_study

SURROGATES = {"ArcTan": "atan", "Rectangular": "rectangular", "Constant 1": "constant"}
NETWORKS = {"SEW ADD": {"family": "sew", "connect": "ADD"}, "Spiking ResNet": {"family": "spiking"}}
NET = "c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*3-FC10"
#: Table 9 of the paper (CIFAR-10), for the side-by-side.
PAPER = {("ArcTan", "SEW ADD"): 0.8263, ("ArcTan", "Spiking ResNet"): 0.7733,
         ("Rectangular", "SEW ADD"): 0.8256, ("Rectangular", "Spiking ResNet"): 0.6601,
         ("Constant 1", "SEW ADD"): 0.1256, ("Constant 1", "Spiking ResNet"): 0.1}


def run_dir(out: Path, surrogate: str, network: str) -> Path:
    return Path(out) / "runs" / f"{SURROGATES[surrogate]}-{network.replace(' ', '_')}"


def cell_flags(surrogate: str, network: str, epochs: int) -> dict:
    """The RunConfig fields of one surrogate and network: digits, IF, T = 4, Adam 1e-3 cosine, batch 32, no
    zero init."""
    return {"dataset": "digits", "notation": NET, **NETWORKS[network], "neuron": "if",
            "surrogate": SURROGATES[surrogate], "T": 4, "optimizer": "adam", "lr": 0.001, "scheduler": "cosine",
            "epochs": epochs, "batch_size": 32, "zero_init": False}


def run_study(out: Path, seeds: int = 3, epochs: int = 10, report_only: bool = False,
              progress: bool = False) -> dict:
    """Train (unless ``report_only``; ``progress``: each run's progress bars) and aggregate every surrogate x
    network over ``seeds``. Returns ``{"meta", "table"}``."""
    start, rows = time.time(), {}
    for sg_name in SURROGATES:
        for net_name in NETWORKS:
            runs = []
            for seed in range(seeds):
                print(f"== {sg_name}, {net_name}, seed {seed}", flush=True)
                runs.append(train_run(cell_flags(sg_name, net_name, epochs), run_dir(out, sg_name, net_name), seed,
                                      train=not report_only, progress=progress))
            runs = [r for r in runs if r is not None]
            if not runs:
                continue
            rows[f"{sg_name} | {net_name}"] = {"selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
                                               "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                                               "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
                                               "paper_cifar10": PAPER[(sg_name, net_name)]}
    meta = {"dataset": "digits (8x8)", "net": NET, "T": 4, "epochs": epochs, "seeds": seeds,
            "optimizer": "adam lr 1e-3 cosine, batch 32", "selection": "best validation accuracy",
            "train_seconds_all_runs": round(sum(sum(r["seconds_per_run"]["values"]) for r in rows.values())),
            "seconds": round(time.time() - start)}
    return {"meta": meta, "table": rows}


def write_report(out: Path, study: dict) -> Path:
    """``<out>/surrogate.json`` and ``<out>/surrogate.png``; the JSON's path."""
    return write_study(out, "surrogate", study, plot, study["table"], study["meta"])


def format_table(rows: dict) -> str:
    lines = [f"{'surrogate | network':<30} {'test acc % at val-selected':>28} {'at last epoch':>18} "
             f"{'paper (CIFAR-10)':>17}"]
    for key, r in rows.items():
        lines.append(f"{key:<30} {fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18} "
                     f"{r['paper_cifar10'] * 100:>16.2f}")
    lines += ["", *statistics_lines("surrogate", rows)]
    return "\n".join(lines)


def plot(rows, path: Path, meta: dict):
    """Test accuracy at the validation-selected epoch per surrogate, one bar per network."""
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
    plt.close(fig)
