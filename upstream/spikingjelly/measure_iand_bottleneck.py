#!/usr/bin/env python
"""Measure how the Bottleneck IAND fix (patch 0001) changes the logits of SpikingJelly's sew_resnet50.

Builds the zoo's ``sew_resnet50(cnf='IAND')`` (IFNode, ATan surrogate, detach_reset, multi-step, 1000 classes)
from one SpikingJelly source tree, with seed 0, and runs it on one random batch; every run loads the same weights
and input. Three runs, each in its own process (two SpikingJelly trees cannot share one):

- before: the unpatched tree (``--before``);
- after: the patched tree (``--after``), default ``legacy_iand=False``;
- legacy: the patched tree with ``legacy_iand=True``, which must reproduce ``before`` exactly.

Each for a freshly initialised net (BatchNorm on batch statistics, as in training) and for one built with
``zero_init_residual=True``. Prints the differences of the time-averaged logits as a Markdown table.

    python measure_iand_bottleneck.py --before /tmp/sj-master --after /tmp/sj-patched
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

T, N, SIZE = 4, 4, 224
SEED = 0


def _logits(source: str, zero_init: bool, legacy: bool, weights: Path, out: Path) -> None:
    """In this process: build the net from ``source``, load or save ``weights``, save its logits to ``out``."""
    sys.path.insert(0, source)
    from functools import partial

    import torch
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import sew_resnet

    torch.manual_seed(SEED)
    kwargs = {"legacy_iand": True} if legacy else {}
    net = sew_resnet.sew_resnet50(
        cnf="IAND", zero_init_residual=zero_init,
        spiking_neuron=partial(neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True), **kwargs)
    functional.set_step_mode(net, "m")
    if weights.exists():
        saved = torch.load(weights)
        net.load_state_dict(saved["state_dict"])
        x = saved["input"]
    else:
        x = torch.rand(T, N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED))
        torch.save({"state_dict": net.state_dict(), "input": x}, weights)
    with torch.no_grad():
        y = net(x).mean(0)
    torch.save(y, out)


def _compare(before, after) -> str:
    diff = (after - before).abs()
    agree = (after.argmax(1) == before.argmax(1)).float().mean().item()
    return (f"{diff.max().item():.4g} | {diff.mean().item() / before.abs().mean().item():.3g} | "
            f"{agree:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="unpatched SpikingJelly source tree (holds spikingjelly/)")
    parser.add_argument("--after", help="the same tree with the series applied")
    parser.add_argument("--_run", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._run:
        source, zero_init, legacy, weights, out = args._run
        _logits(source, zero_init == "1", legacy == "1", Path(weights), Path(out))
        return
    if not (args.before and args.after):
        parser.error("--before and --after are required")

    import torch

    print(f"sew_resnet50(cnf='IAND'), IFNode(ATan, detach_reset), seed {SEED}, input torch.rand({T}, {N}, 3, "
          f"{SIZE}, {SIZE}), BatchNorm in train mode; logits averaged over T.\n")
    print("init | compared | max abs diff | mean abs diff / mean abs logit | top-1 agreement")
    print("--- | --- | --- | --- | ---")
    with tempfile.TemporaryDirectory() as tmp:
        for zero_init in (False, True):
            weights = Path(tmp) / f"weights{int(zero_init)}.pt"
            logits = {}
            for name, source, legacy in (("before", args.before, False), ("after", args.after, False),
                                         ("legacy", args.after, True)):
                out = Path(tmp) / f"{name}{int(zero_init)}.pt"
                subprocess.run([sys.executable, __file__, "--_run", source, str(int(zero_init)), str(int(legacy)),
                                str(weights), str(out)], check=True)
                logits[name] = torch.load(out)
            init = "zero_init_residual" if zero_init else "default"
            print(f"{init} | after vs before | {_compare(logits['before'], logits['after'])}")
            print(f"{init} | legacy_iand=True vs before | {_compare(logits['before'], logits['legacy'])}")


if __name__ == "__main__":
    main()
