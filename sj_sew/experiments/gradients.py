"""SEW paper, Figs. 6-8: gradient amplitude ||dL/dS^l|| per block at initialisation, for every network with
and without zero init and three (Vth, alpha) settings. ``scripts/repro_gradients.py`` is its command line."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..progress import progress_bar

NETWORKS = [("spiking", None), ("sew", "ADD"), ("sew", "AND"), ("sew", "IAND")]
SETTINGS = [(1.0, 2.0), (0.5, 2.0), (1.0, 3.0)]


def label(family, connect) -> str:
    return "Spiking ResNet" if family == "spiking" else f"SEW {connect}"


def measure(depth, family, connect, zero_init, vth, alpha, x, y, T, seed) -> dict:
    """One forward and backward of ``(x, y)`` through a freshly built network (the same initial weights for
    every network: seeded by ``seed``)."""
    from spikingjelly.activation_based import surrogate

    from ..analysis.probes import probe
    from ..models import create_model

    torch.manual_seed(seed)
    model = create_model(f"{family}_resnet{depth}", connect=connect or "ADD", neuron="if", T=T, num_classes=10,
                         v_threshold=vth, surrogate_function=surrogate.ATan(alpha=alpha), zero_init_residual=zero_init)
    return probe(model, x, y)


def run_study(depth, size, T, batch, seed, progress: bool | None = None) -> dict:
    """Every curve, a summary per curve (first and last block, max/min ratio) and the setting:
    ``{"meta", "summary", "curves"}``."""
    from .._compat import SJ_VERSION
    from ..analysis.probes import real_image_batch

    x, y = real_image_batch(batch, size, seed)
    results, start = {}, time.time()
    jobs = [(s, z, n) for s in SETTINGS for z in (False, True) for n in NETWORKS]
    for (vth, alpha), zero_init, (family, connect) in progress_bar(jobs, progress, desc="gradient probes"):
        results[f"{vth}-{alpha}-{zero_init}-{label(family, connect)}"] = measure(
            depth, family, connect, zero_init, vth, alpha, x, y, T, seed)
    summary = {}
    for key, rec in results.items():
        g = [v for v in rec["grad_norm"] if math.isfinite(v) and v > 0]
        summary[key] = {"first_block": rec["grad_norm"][0], "last_block": rec["grad_norm"][-1],
                        "max_over_min": max(g) / min(g) if g else float("nan")}
    meta = {"depth": depth, "size": size, "T": T, "batch": batch, "seed": seed,
            "data": "fashion_mnist test (resized, 3 channels) or digits", "seconds": round(time.time() - start, 1),
            "sj_version": SJ_VERSION}
    return {"meta": meta, "summary": summary, "curves": results}


def format_table(summary: dict) -> str:
    lines = [f"{'network':<44} {'dL/dS first':>12} {'dL/dS last':>12} {'max/min':>10}"]
    for key, s in summary.items():
        lines.append(f"{key:<44} {s['first_block']:>12.3e} {s['last_block']:>12.3e} {s['max_over_min']:>10.2f}")
    return "\n".join(lines)


def plot(results, path: Path):
    """The paper's layout: one row per (Vth, alpha), without and with zero init side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SETTINGS), 2, figsize=(11, 3.2 * len(SETTINGS)), squeeze=False)
    for r, (vth, alpha) in enumerate(SETTINGS):
        for c, zero_init in enumerate((False, True)):
            ax = axes[r][c]
            vanished = []
            for family, connect in NETWORKS:
                rec = results[f"{vth}-{alpha}-{zero_init}-{label(family, connect)}"]
                ax.plot(range(1, len(rec["grad_norm"]) + 1), rec["grad_norm"], label=label(family, connect))
                if not any(v > 0 for v in rec["grad_norm"]):
                    vanished.append(label(family, connect))
            if vanished:  # a zero gradient has no place on a log axis: say it
                ax.text(0.98, 0.02, f"{', '.join(vanished)}: dL/dS = 0 at every block", transform=ax.transAxes,
                        ha="right", va="bottom", fontsize=8, color="tab:green")
            for i, d in enumerate(rec["downsample"]):
                if d:
                    ax.axvline(i + 1, color="grey", linestyle=":", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(f"Vth={vth}, alpha={alpha}, {'zero init' if zero_init else 'no zero init'}", fontsize=9)
            ax.set_xlabel("block index l")
            ax.set_ylabel("||dL/dS^l||")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Gradient amplitude at init (curves of SEW ADD/AND/IAND coincide under zero init)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
