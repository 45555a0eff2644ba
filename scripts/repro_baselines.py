"""Baselines beside every reproduction study, on the study's own data and validation split: a linear softmax
readout of the frames (summed over time, and side by side), its L2 strength chosen on validation, and an ANN
with the study's SEW ADD layout (ReLU for every spiking neuron, the frames summed over time as input, the study's
optimiser and epochs), its learning rate chosen on validation. The test split chooses nothing.

    python scripts/repro_baselines.py --out results/baselines                 # every study (~40 min, 1 thread)
    python scripts/repro_baselines.py --out results/baselines --studies ablation --skip-ann
    python scripts/repro_baselines.py --quick                                  # 12 images/class, 1 epoch (smoke)

Each study goes to <out>/<study>.json as soon as it is done (what is already there is kept unless --force: only
the missing parts run), and
<out>/baselines.md holds the table of every study found there. Output: runs/baselines (untracked) unless --out
says otherwise. The logic is sj_sew.experiments.baselines.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from _sweep import add_out, output_paths, resolve_out  # noqa: F401  (output_paths: tests)
from sj_sew.experiments import baselines
from sj_sew.experiments.sweep import write_json
from sj_sew.experiments.tables import baselines_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", nargs="+", choices=list(baselines.STUDIES), default=list(baselines.STUDIES))
    p.add_argument("--skip-ann", action="store_true", help="only the linear readouts")
    p.add_argument("--force", action="store_true", help="recompute a study whose JSON exists")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 12 images/class for the event studies, 2 values of C, 1 epoch at 1 rate")
    p.add_argument("--threads", type=int, default=1)
    add_out(p, "baselines")
    return p


def _splits(study: str, quick: bool) -> tuple[dict, dict]:
    """(splits, the flags that describe them): the study's data, or for a smoke run a few samples of it
    (12 images per class of an event set, at most 120 samples per split)."""
    s = baselines.STUDIES[study]
    flags = s.flags()
    if not quick:
        return baselines.study_splits(study), flags
    if s.data is None and "per_class" in flags.get("data_options", {}):
        flags["data_options"] = {**flags["data_options"], "per_class": 12}
    splits = (s.data or baselines.run_splits)(flags)
    return {k: (x[:120], y[:120]) for k, (x, y) in splits.items()}, flags


def run_one(study: str, quick: bool, skip_ann: bool, entry: dict | None = None) -> dict:
    """The baselines of ``study``; with ``entry`` (its JSON so far) only what is missing from it."""
    start = time.time()
    splits, flags = _splits(study, quick)
    cs = (1e-2, 1.0) if quick else baselines.LINEAR_C
    entry = dict(entry or {"study": study, "data": baselines.data_meta(splits, flags), "quick": quick, "seconds": 0})
    if "linear" not in entry:
        entry["linear"] = {layout: baselines.linear_readout(splits, layout, cs) for layout in baselines.LAYOUTS}
        for r in entry["linear"].values():
            print(f"{study}: linear ({r['layout']}) C={r['C']:g}: val {r['val_acc_chosen']:.3f}, "
                  f"test {r['test_acc']:.3f}", flush=True)
    s = baselines.STUDIES[study]
    options = dict(lrs=s.ann_lrs[:1] if quick else None, epochs=1 if quick else None)
    if not skip_ann:
        if "ann" not in entry:
            entry["ann"] = baselines.ann_baseline(study, splits, **options)
        more = entry.setdefault("ann_more", {})
        for label in s.more:
            if label not in more:
                more[label] = baselines.ann_baseline(study, splits, network=label, **options)
        for a in (entry["ann"], *more.values()):
            print(f"{study}: ANN twin of {a['network']}, lr={a['lr']:g}: val {a['val_acc']:.3f}, "
                  f"test {a['selected_test_acc']:.3f} at epoch {a['selected_epoch']}", flush=True)
    entry["seconds"] += round(time.time() - start)
    return entry


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = resolve_out(args)
    torch.set_num_threads(args.threads)
    for study in args.studies:
        path = out / f"{study}.json"
        old = None if args.force or not path.exists() else json.loads(path.read_text())
        new = run_one(study, args.quick, args.skip_ann, old)
        if new != old:
            write_json(path, new, indent=1)
    found = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    text = "\n".join(baselines_table(found)) + "\n"
    (out / "baselines.md").write_text(text)
    print(text)
    return found


if __name__ == "__main__":
    main()
