"""SEW paper's cost argument: synaptic operations (SOPs) and energy per inference of trained SNNs,
from the spikes they actually fire on test data, beside the equivalent ANN's MACs.

Counting rule and energy constants: sj_sew/analysis/energy.py (exact weight uses per event; 0.9 pJ per
AC, 4.6 pJ per MAC, 45 nm). On SpikingJelly 2.x the same forward is also counted by its SynOpCounter.

    python scripts/repro_energy.py --checkpoint runs/x/best.pt ...        # any train.py checkpoints
    python scripts/repro_energy.py --from-ablation results/ablation        # the g ablation's nets
    python scripts/repro_energy.py --quick                                 # untrained net, 1 batch (smoke test)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader

import sj_sew
from _sweep import ablation_checkpoints, load_trained, output_dir, setting_name
from sj_sew.analysis.energy import OpCounter, spikingjelly_synops
from sj_sew.data import build_dataset, dataset_info, time_first_collate
from sj_sew.training import QUICKSTART_NET


def count(model, test_set, batches: int, batch_size: int = 16) -> dict:
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, nargs="*", default=[])
    p.add_argument("--from-ablation", type=Path, help="results directory of repro_ablation.py")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="an untrained 7B-style net, one batch")
    p.add_argument("--out", type=Path, help="default results/energy, or runs/quick/energy with --quick")
    args = p.parse_args(argv)
    args.out = output_dir(args.out, "energy", args.quick)
    start, results = time.time(), {}
    if args.from_ablation:
        args.checkpoint += ablation_checkpoints(args.from_ablation)
    if args.quick:
        info = dataset_info("events")
        model = sj_sew.NotationNet(QUICKSTART_NET, input_size=info.input_size).eval()
        results["untrained quick net"] = count(model, build_dataset("events", False, T=4, per_class=4), 1)
    elif not args.checkpoint:
        p.error("give --checkpoint PATH..., --from-ablation DIR or --quick")
    for path in args.checkpoint:
        model, cfg, test_set = load_trained(path)
        parts = [cfg["family"] or "sew", cfg["connect"] if cfg["family"] in (None, "sew") else None,
                 "RTD" if cfg["T_train"] else None]
        name = f"{' '.join(p for p in parts if p)} ({setting_name(path)})"
        results[name] = count(model, test_set, args.batches) | {"T": cfg["T"], "dataset": cfg["dataset"]}
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"seconds": round(time.time() - start), "sj_version": sj_sew.SJ_VERSION, "E_AC_pJ": 0.9, "E_MAC_pJ": 4.6}
    (args.out / "energy.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"{'network':<48} {'SOPs':>12} {'MACs':>11} {'SNN uJ':>8} {'ANN MACs':>11} {'ANN uJ':>8} {'SJ SynOps':>11}")
    for name, r in results.items():
        sj = "n/a" if r["spikingjelly_synops"] is None else f"{r['spikingjelly_synops']:.4g}"
        print(f"{name[:48]:<48} {r['sops']:>12.4g} {r['macs']:>11.4g} {r['snn_energy_pj'] / 1e6:>8.3f} "
              f"{r['ann_macs']:>11.4g} {r['ann_energy_pj'] / 1e6:>8.3f} {sj:>11}")
    print(f"wrote {args.out / 'energy.json'}")
    return results


if __name__ == "__main__":
    main()
