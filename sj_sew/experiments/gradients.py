"""SEW paper, Figs. 6-8: gradient amplitude ||dL/dS^l|| per block at initialisation, for every network with
and without zero init and three (Vth, alpha) settings, over several initialisation seeds and real batches.
``scripts/repro_gradients.py`` is its command line.

The quantity read per curve is log10(first-block / last-block gradient norm): above 0 the gradient grows toward
the input, below 0 it decays. A norm of exactly 0 (a vanished gradient) is counted as :data:`FLOOR`.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch

from ..progress import progress_bar

NETWORKS = [("spiking", None), ("sew", "ADD"), ("sew", "AND"), ("sew", "IAND")]
SETTINGS = [(1.0, 2.0), (0.5, 2.0), (1.0, 3.0)]
#: a vanished (exactly 0) gradient norm, for the logarithm
FLOOR = 1e-30


def label(family, connect) -> str:
    return "Spiking ResNet" if family == "spiking" else f"SEW {connect}"


def key(vth, alpha, zero_init, family, connect) -> str:
    return f"{vth}-{alpha}-{zero_init}-{label(family, connect)}"


def build(depth, family, connect, zero_init, vth, alpha, T, seed):
    """A freshly built network (the same initial weights for a seed, whatever the network)."""
    from spikingjelly.activation_based import surrogate

    from ..models import create_model

    torch.manual_seed(seed)
    return create_model(f"{family}_resnet{depth}", connect=connect or "ADD", neuron="if", T=T, num_classes=10,
                        v_threshold=vth, surrogate_function=surrogate.ATan(alpha=alpha), zero_init_residual=zero_init)


#: The paper's main setting (Fig. 6) without zero init, for the two networks its claims compare
MAIN = [(1.0, 2.0, False, "spiking", None), (1.0, 2.0, False, "sew", "ADD")]


def jobs(all_zero_init_sew: bool = False) -> list[tuple]:
    """(vth, alpha, zero_init, family, connect) in run order, the paper's main setting first. Under zero init every
    SEW block is the identity whatever g is, so only SEW ADD is run there unless ``all_zero_init_sew``
    (tests/test_repro_scripts.py checks that the three coincide)."""
    out = []
    for vth, alpha in SETTINGS:
        for zero_init in (False, True):
            for family, connect in NETWORKS:
                if zero_init and connect in ("AND", "IAND") and not all_zero_init_sew:
                    continue
                out.append((vth, alpha, zero_init, family, connect))
    return out


def log_ratio(curve: list[float]) -> float:
    """log10(first / last) gradient norm of one curve (vanished norms at :data:`FLOOR`)."""
    first, last = (max(v, FLOOR) for v in (curve[0], curve[-1]))
    return math.log10(first / last)


def _quantile(values, q):
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def identity_log_ratio(curve: list[float], downsample: list[bool]) -> float:
    """log10(first / last) gradient norm summed over the identity-mapping areas only (the blocks between two
    downsampling blocks, whose inputs share one shape: the paper's Fig. 6 reading), leaving out the steps across
    the downsampling blocks."""
    starts = [i for i, d in enumerate(downsample) if d] + [len(curve)]
    total = 0.0
    for a, b in zip(starts, starts[1:]):
        if b - 1 > a + 1:  # the inputs of blocks a+1 .. b-1 share one shape
            total += log_ratio([curve[a + 1], curve[b - 1]])
    return total


def summarise(runs: list[list[float]], downsample: list[bool], batches: int) -> dict:
    """Per curve (``runs`` seed-major, ``batches`` per seed): median and 5-95% spread of log10(first/last) over
    seeds x batches, over the whole net and within the identity-mapping areas; per seed the mean over its batches
    of log10 of the first and last block's norm and of the identity-area ratio (the values the claims pair);
    vanished counts; and per block the median and 5-95% of the norm."""
    def spread(values):
        return {"median": statistics.median(values), "p5": _quantile(values, 0.05), "p95": _quantile(values, 0.95),
                "n": len(values)}

    def per_seed(f):
        return [statistics.fmean(f(c) for c in runs[i:i + batches]) for i in range(0, len(runs), batches)]

    blocks = list(zip(*runs))
    return {
        "log10_first_over_last": spread([log_ratio(c) for c in runs]),
        "log10_identity_areas": spread([identity_log_ratio(c, downsample) for c in runs]),
        "seed_log10_first": per_seed(lambda c: math.log10(max(c[0], FLOOR))),
        "seed_log10_last": per_seed(lambda c: math.log10(max(c[-1], FLOOR))),
        "seed_log10_identity": per_seed(lambda c: identity_log_ratio(c, downsample)),
        "vanished_first": sum(c[0] == 0 for c in runs), "vanished_all": sum(not any(v > 0 for v in c) for c in runs),
        "median_curve": [statistics.median(b) for b in blocks],
        "p5_curve": [_quantile(b, 0.05) for b in blocks], "p95_curve": [_quantile(b, 0.95) for b in blocks],
    }


def summarise_curves(curves: dict, batches: int) -> dict:
    """Every curve's :func:`summarise` from its stored runs (fills the median curve and band in ``curves``)."""
    summary = {}
    for k, rec in curves.items():
        s = summarise(rec["runs"], rec["downsample"], batches)
        rec.update(grad_norm=s.pop("median_curve"), p5=s.pop("p5_curve"), p95=s.pop("p95_curve"))
        summary[k] = s
    return summary


def run_study(depth, size, T, batch, seeds: int, batches: int, progress: bool | None = None,
              all_zero_init_sew: bool = False, partial: Path | None = None, only: list | None = None) -> dict:
    """Every network and setting over ``seeds`` initialisations (seeds 0..seeds-1) x ``batches`` disjoint real
    batches of ``batch`` images: ``{"meta", "summary", "curves"}``; ``curves[key]["grad_norm"]`` is the median
    curve, ``["runs"]`` every curve (seed-major). With ``partial`` the study so far is written there after each
    network (a long run can be read before it ends); ``only`` restricts the jobs (e.g. :data:`MAIN`)."""
    from .._compat import SJ_VERSION
    from ..analysis.probes import probe, real_image_batch
    from .sweep import write_json

    x_all, y_all = real_image_batch(batch * batches, size, 0)
    data = [(x_all[i * batch:(i + 1) * batch], y_all[i * batch:(i + 1) * batch]) for i in range(batches)]
    curves, summary, start = {}, {}, time.time()
    meta = {"depth": depth, "size": size, "T": T, "batch": batch, "seeds": list(range(seeds)), "batches": batches,
            "data": "fashion_mnist test (resized, 3 channels, standardised over all batches) or digits; batch b is "
                    "images b*batch..(b+1)*batch-1 of one shuffled draw (seed 0)",
            "threads": torch.get_num_threads(), "sj_version": SJ_VERSION, "floor": FLOOR}
    for vth, alpha, zero_init, family, connect in progress_bar(only or jobs(all_zero_init_sew), progress,
                                                                desc="gradient probes"):
        runs, downsample = [], None
        for seed in range(seeds):
            model = build(depth, family, connect, zero_init, vth, alpha, T, seed)
            recs = [probe(model, x, y) for x, y in data]  # train-mode BN: each batch its own statistics
            runs += [r["grad_norm"] for r in recs]
            downsample = recs[0]["downsample"]
        curves[key(vth, alpha, zero_init, family, connect)] = {"downsample": downsample, "runs": runs}
        summary = summarise_curves(curves, batches)
        meta["seconds"] = round(time.time() - start, 1)
        if partial is not None:
            write_json(partial, {"meta": meta, "summary": summary, "curves": curves}, indent=1)
    return {"meta": meta, "summary": summary, "curves": curves}


#: Where the paper's setting may differ from the main study (Vth 1, alpha 2, no zero init): name -> (size, batch,
#: BN mode, seeds). The paper probes 224x224 ImageNet inputs; its batch and BN mode are not stated.
VARIANTS = {"main (64x64, batch 4, train BN)": (64, 4, "train", 3), "224x224 input": (224, 2, "train", 2),
            "batch 16": (64, 16, "train", 2), "BN in eval mode": (64, 4, "eval", 3)}


def run_variants(depth=152, T=4, networks=(("spiking", None),), progress: bool | None = None) -> dict:
    """log10(first/last) over the whole net and within the identity areas for each of :data:`VARIANTS` at
    Vth 1, alpha 2 without zero init (one batch per seed): does the paper's setting turn the rise into a decay?"""
    from ..analysis.probes import probe, real_image_batch

    out, start = {}, time.time()
    for (name, (size, batch, bn, seeds)), (family, connect) in progress_bar(
            [(v, n) for v in VARIANTS.items() for n in networks], progress, desc="variants"):
        x, y = real_image_batch(batch, size, 0)
        whole, ident = [], []
        for seed in range(seeds):
            model = build(depth, family, connect, False, 1.0, 2.0, T, seed)
            model.train(bn == "train")
            rec = probe(model, x, y)
            curve, down = rec["grad_norm"], rec["downsample"]
            whole.append(log_ratio(curve))
            ident.append(identity_log_ratio(curve, down))
        out[f"{name} | {label(family, connect)}"] = {"size": size, "batch": batch, "bn": bn, "seeds": seeds,
                                                     "log10_first_over_last": whole, "log10_identity_areas": ident}
    return {"seconds": round(time.time() - start, 1), "threads": torch.get_num_threads(), "variants": out}


def variants_table(v: dict) -> list[str]:
    """REPRODUCTION.md §4's table of :func:`run_variants`: per variant log10(first/last) per seed, whole net and
    identity areas."""
    def cells(xs):
        return ", ".join(f"{x:+.2f}" for x in xs)

    lines = ["| variant (Vth 1, alpha 2, no zero init) | seeds | whole net | identity areas |", "|---|---|---|---|"]
    for name, r in v["variants"].items():
        lines.append(f"| {name} | {r['seeds']} | {cells(r['log10_first_over_last'])} | "
                     f"{cells(r['log10_identity_areas'])} |")
    return lines


def format_table(summary: dict) -> str:
    lines = [f"{'network':<36} {'log10 first/last: median':>25} {'5%':>7} {'95%':>7} {'identity areas':>15} "
             f"{'vanished':>9}"]
    for k, s in summary.items():
        r, i = s["log10_first_over_last"], s["log10_identity_areas"]
        lines.append(f"{k:<36} {r['median']:>25.2f} {r['p5']:>7.2f} {r['p95']:>7.2f} {i['median']:>15.2f} "
                     f"{s['vanished_all']:>4}/{r['n']:<4}")
    return "\n".join(lines)


def _cell(s: dict | None) -> str:
    if s is None:
        return "= SEW ADD"
    r, i = s["log10_first_over_last"], s["log10_identity_areas"]
    gone = (f" ({s['vanished_all']}/{r['n']}: 0 at every block)" if s["vanished_all"] else
            f" ({s['vanished_first']}/{r['n']}: 0 at the first block)" if s["vanished_first"] else "")
    return f"{r['median']:+.2f} [{r['p5']:+.2f}, {r['p95']:+.2f}] / {i['median']:+.2f}{gone}"


def markdown_table(summary: dict) -> list[str]:
    """REPRODUCTION.md §4's table: per setting and network, log10(first/last) median [5%, 95%] over seeds x
    batches / the median within the identity-mapping areas."""
    names = [label(f, c) for f, c in NETWORKS]
    lines = ["| (Vth, alpha) | init | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for vth, alpha in SETTINGS:
        for zero_init in (True, False):
            cells = [_cell(summary.get(key(vth, alpha, zero_init, f, c))) for f, c in NETWORKS]
            lines.append(f"| ({vth:g}, {alpha:g}) | {'zero init' if zero_init else 'none'} | " + " | ".join(cells)
                         + " |")
    return lines


def plot(results, path: Path):
    """The paper's layout: one row per (Vth, alpha), without and with zero init side by side; the median curve
    over seeds x batches with its 5-95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SETTINGS), 2, figsize=(11, 3.2 * len(SETTINGS)), squeeze=False)
    for r, (vth, alpha) in enumerate(SETTINGS):
        for c, zero_init in enumerate((False, True)):
            ax = axes[r][c]
            vanished, downsample = [], []
            for family, connect in NETWORKS:
                rec = results.get(key(vth, alpha, zero_init, family, connect))
                if rec is None:
                    continue
                downsample = rec["downsample"]
                xs = range(1, len(rec["grad_norm"]) + 1)
                line, = ax.plot(xs, rec["grad_norm"], label=label(family, connect))
                if "p5" in rec:
                    ax.fill_between(xs, rec["p5"], rec["p95"], color=line.get_color(), alpha=0.15, linewidth=0)
                if not any(v > 0 for v in rec["grad_norm"]):
                    vanished.append(label(family, connect))
            if vanished:  # a zero gradient has no place on a log axis: say it
                ax.text(0.98, 0.02, f"{', '.join(vanished)}: dL/dS = 0 at every block", transform=ax.transAxes,
                        ha="right", va="bottom", fontsize=8, color="tab:green")
            for i, d in enumerate(downsample):
                if d:
                    ax.axvline(i + 1, color="grey", linestyle=":", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(f"Vth={vth}, alpha={alpha}, {'zero init' if zero_init else 'no zero init'}", fontsize=9)
            ax.set_xlabel("block index l")
            ax.set_ylabel("||dL/dS^l||")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Gradient amplitude at init: median over seeds x batches, 5-95% band "
                 "(under zero init every SEW g is the identity: SEW ADD stands for all)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
