"""SEW paper, Fig. 5 (and Figs. 4/11 for trained nets): per-block firing rates of A^l and O^l, at init on the
ResNet structure or of trained checkpoints on their test data. ``scripts/repro_firing_rates.py`` is its
command line."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..progress import progress_bar
from .sweep import load_trained, setting_name

NETWORKS = [("spiking", None), ("sew", "ADD"), ("sew", "AND"), ("sew", "IAND")]


def label(family, connect) -> str:
    return "Spiking ResNet" if family == "spiking" else f"SEW {connect}"


def init_rates(depth, size, T, batch, seed, progress: bool | None = None) -> dict:
    """Rates of every network, with and without zero init, at initialisation on one batch of real images."""
    from ..analysis.probes import probe, real_image_batch
    from ..models import create_model

    x, _ = real_image_batch(batch, size, seed)
    results = {}
    jobs = [(z, n) for z in (False, True) for n in NETWORKS]
    for zero_init, (family, connect) in progress_bar(jobs, progress, desc="firing rates at init"):
        torch.manual_seed(seed)
        model = create_model(f"{family}_resnet{depth}", connect=connect or "ADD", neuron="if", T=T,
                             num_classes=10, zero_init_residual=zero_init)
        results[f"{label(family, connect)}{' (zero init)' if zero_init else ''}"] = probe(model, x)
    return results


TEST_BATCH = 16  # test samples per batch of a trained probe


def trained_rates(paths, batches) -> dict:
    """Rates of each checkpoint's net, averaged over ``batches`` test batches, labelled by sweep cell."""
    from torch.utils.data import DataLoader

    from ..analysis.probes import probe
    from ..data import time_first_collate

    results = {}
    for path in paths:
        model, cfg, test_set = load_trained(path)
        loader = DataLoader(test_set, batch_size=TEST_BATCH, shuffle=False, collate_fn=time_first_collate)
        runs = [probe(model, x) for i, (x, _) in zip(range(batches), loader)]
        name = f"{setting_name(path)} ({cfg['family'] or 'sew'})"
        results[name] = {k: [sum(r[k][j] for r in runs) / len(runs) for j in range(len(runs[0][k]))]
                         for k in ("rate_s", "rate_a", "rate_o")}
        results[name]["downsample"] = runs[0]["downsample"]
    return results


def meta(started: float, **setting) -> dict:
    """What a probe ran on (``setting``: the init probe's depth, size, T, batch and seed, or the trained probe's
    checkpoints, batches and batch size), its wall time and the SpikingJelly version."""
    from .._compat import SJ_VERSION

    return {**setting, "seconds": round(time.time() - started, 1), "sj_version": SJ_VERSION}


def format_table(results: dict) -> str:
    lines = [f"{'network':<34} {'mean A':>8} {'mean O':>8} {'max O':>8}"]
    for run, rec in results.items():
        a, o = rec["rate_a"], rec["rate_o"]
        lines.append(f"{run[-34:]:<34} {sum(a) / len(a):>8.3f} {sum(o) / len(o):>8.3f} {max(o):>8.3f}")
    return "\n".join(lines)


def plot(results, path: Path, title: str):
    """Mean rate of A^l and of O^l per block, one line per network; downsampling blocks dotted."""
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
    plt.close(fig)
