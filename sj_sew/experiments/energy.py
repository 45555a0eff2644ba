"""Synaptic operations (SOPs) and energy per inference of trained SNNs, from the spikes they fire on test
data, beside the equivalent ANN's MACs (counting rule and constants: :mod:`sj_sew.analysis.energy`).
``scripts/repro_energy.py`` is its command line."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .sweep import load_trained, setting_name

E_AC_PJ, E_MAC_PJ = 0.9, 4.6


def count(model, test_set, batches: int, batch_size: int = 16) -> dict:
    """Operation counts and energy per sample over ``batches`` test batches; SpikingJelly's SynOpCounter on the
    first batch where the installed line has it."""
    from spikingjelly.activation_based import functional
    from torch.utils.data import DataLoader

    from ..analysis.energy import OpCounter, spikingjelly_synops
    from ..data import time_first_collate

    loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, collate_fn=time_first_collate)
    n = 0
    with OpCounter(model) as counter:
        for x, _ in (pair for _, pair in zip(range(batches), loader)):
            functional.reset_net(model)
            with torch.no_grad():
                model(x)
            n += x.shape[1] if x.dim() == 5 else x.shape[0]
    counter.samples = n
    report = counter.report()
    x, _ = next(iter(loader))
    sj = spikingjelly_synops(model, x)
    report["spikingjelly_synops"] = None if sj is None else sj / (x.shape[1] if x.dim() == 5 else x.shape[0])
    report["samples"] = n
    return report


def untrained_quick_net() -> dict:
    """The smoke test: the quick start's net untrained, one batch of the events test set."""
    from ..data import build_dataset, dataset_info
    from ..models import NotationNet
    from ..training import QUICKSTART_NET

    model = NotationNet(QUICKSTART_NET, input_size=dataset_info("events").input_size).eval()
    return {"untrained quick net": count(model, build_dataset("events", False, T=4, per_class=4), 1)}


def trained_nets(checkpoints, batches: int) -> dict:
    """Counts of each checkpoint's net on its own test data, labelled by network and sweep cell."""
    results = {}
    for path in checkpoints:
        model, cfg, test_set = load_trained(path)
        parts = [cfg["family"] or "sew", cfg["connect"] if cfg["family"] in (None, "sew") else None,
                 "RTD" if cfg["T_train"] else None]
        name = f"{' '.join(p for p in parts if p)} ({setting_name(path)})"
        results[name] = count(model, test_set, batches) | {"T": cfg["T"], "dataset": cfg["dataset"]}
    return results


def meta(started: float) -> dict:
    from .._compat import SJ_VERSION

    return {"seconds": round(time.time() - started), "sj_version": SJ_VERSION, "E_AC_PJ": E_AC_PJ,
            "E_MAC_PJ": E_MAC_PJ}


def format_table(results: dict) -> str:
    lines = [f"{'network':<48} {'SOPs':>12} {'MACs':>11} {'SNN uJ':>8} {'ANN MACs':>11} {'ANN uJ':>8} {'SJ SynOps':>11}"]
    for name, r in results.items():
        sj = "n/a" if r["spikingjelly_synops"] is None else f"{r['spikingjelly_synops']:.4g}"
        lines.append(f"{name[:48]:<48} {r['sops']:>12.4g} {r['macs']:>11.4g} {r['snn_energy_pj'] / 1e6:>8.3f} "
                     f"{r['ann_macs']:>11.4g} {r['ann_energy_pj'] / 1e6:>8.3f} {sj:>11}")
    return "\n".join(lines)
