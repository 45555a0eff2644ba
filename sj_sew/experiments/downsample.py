"""SEW paper, Sec. 3.3 and Fig. 2b: the spiking neuron in the downsample block's shortcut. SEW's downsample
shortcut is conv1x1-BN-SN (family ``sew``), Spiking ResNet's conv1x1-BN; the ablation trains SEW ADD with and
without that SN (family ``sew-conv-bn``: SEW's output with the conv1x1-BN shortcut) on the digits data and recipe
of the surrogate study (:mod:`.surrogate`, ArcTan), each rate tuned by the same rule (:func:`.surrogate.tuned_cell`),
and measures the paper's bound: with g = ADD a downsample SEW block's output is at most 2 (two spikes), which the
shortcut's SN guarantees. ``scripts/repro_downsample.py`` is its command line."""
from __future__ import annotations

import time
from pathlib import Path

from .claims import statistics_lines
from .surrogate import EPOCHS, LR_GRID, plot_curves, recipe, study_meta, tuned_cell, without_history
from .sweep import fmt, reported_seeds, stop_text, write_json, write_study

#: name -> RunConfig fields; no zero init, as SEW ADD in the surrogate study
NETWORKS = {"SEW ADD": {"family": "sew", "connect": "ADD", "zero_init": False},
            "SEW ADD, no downsample SN": {"family": "sew-conv-bn", "connect": "ADD", "zero_init": False}}
#: The surrogate study's net with its channels doubled at the first block of stages 2 and 3: those two blocks
#: change the shape, so they have the downsample shortcut (the notation's blocks have stride 1, so max pooling
#: still halves the side).
NET = "c32k3s1-BN-IF-{SEW Block(c32)}*2-MPk2s2-{SEW Block(c64)}*2-MPk2s2-{SEW Block(c128)}*2-MPk2s2-FC10"
SURROGATE = "atan"


def cell_flags(network: str, lr: float, epochs: int, net: str = NET) -> dict:
    """The RunConfig fields of one network at one rate: the surrogate study's recipe with ArcTan."""
    return {**recipe(epochs), "notation": net, **NETWORKS[network], "surrogate": SURROGATE, "lr": lr}


def run_study(out: Path, seeds: int = 5, epochs: int = EPOCHS, lrs=LR_GRID, report_only: bool = False,
              progress: bool = False, widen: bool = True, net: str = NET) -> dict:
    """Train (unless ``report_only``) and aggregate both networks under the tuning rule; ``{"meta", "table",
    "rows"}`` as :func:`.surrogate.run_study`."""
    table = {}
    seeds_out = reported_seeds(seeds)
    for name in NETWORKS:
        row = tuned_cell(name, lambda lr, n=name: cell_flags(n, lr, epochs, net), out, seeds_out, lrs,
                         not report_only, progress, widen)
        if row is not None:
            table[name] = {**row, "family": NETWORKS[name]["family"]}
    meta = study_meta(net, epochs, seeds_out, lrs, table, surrogate="ArcTan", zero_init=False,
                      downsample_blocks="the first block of stages 2 and 3 (32->64 and 64->128 channels)")
    return {"meta": meta, "table": table, "rows": without_history(table)}


def downsample_outputs(model, loader) -> list[dict]:
    """Per downsample block of ``model`` (a block whose shape changes), in network order: the largest output value
    over ``loader``'s inputs and the fraction of output values above 2 (the paper's bound for ADD)."""
    import torch
    from spikingjelly.activation_based import functional

    from ..blocks import ResidualBlock

    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, ResidualBlock) and m.changes_shape]
    found = {name: {"block": name, "max": float("-inf"), "above_2": 0, "values": 0} for name, _ in blocks}

    def hook(name):
        def record(module, inputs, output):
            r = found[name]
            r["max"] = max(r["max"], float(output.max()))
            r["above_2"] += int((output > 2).sum())
            r["values"] += output.numel()
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in blocks]
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in loader:
                model(x)
                functional.reset_net(model)
    finally:
        for h in handles:
            h.remove()
    return [{"block": r["block"], "max": r["max"], "fraction_above_2": r["above_2"] / r["values"]}
            for r in found.values()]


def measure_bound(out: Path, study: dict, batch: int = 64) -> dict:
    """Each network's downsample block outputs (:func:`downsample_outputs`) on the test set, at initialisation
    (a net built from seed 0's config under ``torch.manual_seed(0)``) and trained (reported seed 0's
    validation-selected checkpoint). ``{network: {"init": [...], "trained": [...]}, "seconds": s}``; written
    to ``<out>/bound.json``."""
    import torch
    from torch.utils.data import DataLoader

    from ..training import load_checkpoint
    from ..training.build import model_from_config
    from ..training.run import split_dataset
    from .surrogate import cell_dir

    start, result = time.time(), {}
    for name, row in study["rows"].items():
        run = load_checkpoint(cell_dir(out, name, row["lr"]) / f"seed{row['seeds'][0]}" / "best.pt")
        loader = DataLoader(split_dataset(run.config, "test"), batch_size=batch)
        torch.manual_seed(0)
        fresh = model_from_config(run.config)
        result[name] = {"seed": row["seeds"][0], "init": downsample_outputs(fresh, loader),
                        "trained": downsample_outputs(run.model, loader)}
    data = {"networks": result, "seconds": round(time.time() - start, 1),
            "bound": "with g = ADD and the SN in the shortcut, a downsample block's output is at most 2"}
    write_json(Path(out) / "bound.json", data, indent=1)
    return data


def write_report(out: Path, study: dict) -> Path:
    """``<out>/downsample.json`` (meta and rows) and ``<out>/downsample.png``; the JSON's path."""
    return write_study(out, "downsample", {"meta": study["meta"], "table": study["rows"]}, plot, study["table"],
                       study["meta"])


def format_table(rows: dict, bound: dict | None = None) -> str:
    lines = [f"{'network':<28} {'lr':>7} {'test acc % at val-selected':>28} {'at last epoch':>18}"]
    for key, r in rows.items():
        lines.append(f"{key:<28} {r['lr']:>7g} {fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18}")
    for name, r in (bound or {}).get("networks", {}).items():
        for when in ("init", "trained"):
            maxima = ", ".join(f"{b['max']:.2f}" for b in r[when])
            lines.append(f"max downsample block output, {name}, {when}: {maxima}")
    lines += ["", *statistics_lines("downsample", rows)]
    return "\n".join(lines)


def plot(table, path: Path, meta: dict):
    """Validation accuracy per epoch of both networks at their chosen rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    plot_curves(ax, table)
    ax.set_title(f"Downsample shortcut SN on {meta['dataset']}, ArcTan, T=4,\n{stop_text(meta)}, {meta['seeds']} "
                 "seed(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
