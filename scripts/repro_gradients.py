"""SEW paper, Figs. 6-8: gradient amplitude ||dL/dS^l|| per block at initialisation.

Spiking ResNet and SEW ADD / AND / IAND on the 152-layer structure, with and without zero init, for
(Vth, alpha) = (1, 2), (0.5, 2), (1, 3). No training: one forward and backward of a real batch
(Fashion-MNIST test images, resized and repeated to 3 channels; scikit-learn digits if Fashion-MNIST
is not installed). Writes a JSON of every curve and a PNG in the paper's layout.

    python scripts/repro_gradients.py            # 152 layers, 64x64, T=4, batch 4
    python scripts/repro_gradients.py --quick    # 18 layers, 32x32, T=2, batch 2 (smoke test)
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import surrogate
from tqdm import tqdm

import sj_sew
from _sweep import init_probe_parser, parse_init_probe_args
from sj_sew.analysis.probes import probe, real_image_batch

NETWORKS = [("spiking", None), ("sew", "ADD"), ("sew", "AND"), ("sew", "IAND")]
SETTINGS = [(1.0, 2.0), (0.5, 2.0), (1.0, 3.0)]


def label(family, connect):
    return "Spiking ResNet" if family == "spiking" else f"SEW {connect}"


def measure(depth, family, connect, zero_init, vth, alpha, x, y, T, seed):
    torch.manual_seed(seed)  # the same initial weights for every network
    model = sj_sew.create_model(f"{family}_resnet{depth}", connect=connect or "ADD", neuron="if", T=T,
                                num_classes=10, v_threshold=vth, surrogate_function=surrogate.ATan(alpha=alpha),
                                zero_init_residual=zero_init)
    return probe(model, x, y)


def plot(results, path: Path):
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


def main(argv=None):
    args = parse_init_probe_args(init_probe_parser(__doc__, "gradients"), argv)
    x, y = real_image_batch(args.batch, args.size, args.seed)
    results, start = {}, time.time()
    jobs = [(s, z, n) for s in SETTINGS for z in (False, True) for n in NETWORKS]
    for (vth, alpha), zero_init, (family, connect) in tqdm(jobs, desc="gradient probes"):
        results[f"{vth}-{alpha}-{zero_init}-{label(family, connect)}"] = measure(
            args.depth, family, connect, zero_init, vth, alpha, x, y, args.T, args.seed)
    summary = {}
    for key, rec in results.items():
        g = [v for v in rec["grad_norm"] if math.isfinite(v) and v > 0]
        summary[key] = {"first_block": rec["grad_norm"][0], "last_block": rec["grad_norm"][-1],
                        "max_over_min": max(g) / min(g) if g else float("nan")}
    meta = {"depth": args.depth, "size": args.size, "T": args.T, "batch": args.batch, "seed": args.seed,
            "data": "fashion_mnist test (resized, 3 channels) or digits", "seconds": round(time.time() - start, 1),
            "sj_version": sj_sew.SJ_VERSION}
    (args.out / "gradients.json").write_text(json.dumps({"meta": meta, "summary": summary, "curves": results}, indent=1))
    plot(results, args.out / "gradients.png")
    print(f"{'network':<44} {'dL/dS first':>12} {'dL/dS last':>12} {'max/min':>10}")
    for key, s in summary.items():
        print(f"{key:<44} {s['first_block']:>12.3e} {s['last_block']:>12.3e} {s['max_over_min']:>10.2f}")
    print(f"wrote {args.out / 'gradients.json'} and {args.out / 'gradients.png'} ({meta['seconds']} s)")


if __name__ == "__main__":
    main()
