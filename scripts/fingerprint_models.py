#!/usr/bin/env python
"""Fingerprint every registered model, to check that a refactoring changed no network.

For each model (seed 0, 10 classes, a fixed input): its state-dict keys, its logits and the sum of each
parameter's gradient after one backward; for a few, also the outputs and gradients under memory saving and
the inference model's output. Two fingerprints compare exactly (``torch.equal``).

    python scripts/fingerprint_models.py --write before.pt        # on the old code
    python scripts/fingerprint_models.py --write after.pt         # on the new code
    python scripts/fingerprint_models.py --compare before.pt after.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import sj_sew  # noqa: E402
from spikingjelly.activation_based import functional  # noqa: E402

#: Models also fingerprinted under memory saving and as inference models.
DEPLOYED = ("sew_resnet18", "spiking_resnet18", "net7b", "surrogate_net", "ms_resnet18", "ds_resnet20")


def _input(net) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    size = getattr(net, "input_size", None) or (128 if net.in_channels == 2 else 32)
    x = torch.rand(2, 2, net.in_channels, size, size, generator=g)
    return (x > 0.7).float() if net.in_channels == 2 else x


def _step(net, x) -> tuple[torch.Tensor, torch.Tensor]:
    functional.reset_net(net)
    out = net(x)
    out.sum().backward()
    functional.reset_net(net)
    grads = torch.stack([p.grad.double().sum() for p in net.parameters() if p.grad is not None])
    return out.detach(), grads


def fingerprint(name: str) -> dict:
    torch.manual_seed(0)
    net = sj_sew.create_model(name, num_classes=10)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    x = _input(net)
    out, grads = _step(net, x)
    entry = {"keys": list(weights), "out": out, "grads": grads}
    if name in DEPLOYED:
        saving = sj_sew.create_model(name, num_classes=10)
        saving.load_state_dict(weights)
        entry["memsave_out"], entry["memsave_grads"] = _step(sj_sew.memory_saving(saving), x)
        plain = sj_sew.create_model(name, num_classes=10)
        plain.load_state_dict(weights)
        entry["infer_out"] = sj_sew.inference_model(plain)(x).clone()
    return entry


def compare(a: dict, b: dict) -> list[str]:
    """One line per difference between two fingerprints."""
    lines = [f"{name}: missing in the second" for name in a if name not in b]
    lines += [f"{name}: new in the second" for name in b if name not in a]
    for name in (n for n in a if n in b):
        for key, va in a[name].items():
            vb = b[name].get(key)
            same = va == vb if isinstance(va, list) else isinstance(vb, torch.Tensor) and torch.equal(va, vb)
            if not same:
                lines.append(f"{name}: {key} differs")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="FILE")
    group.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.write:
        prints = {name: fingerprint(name) for name in sj_sew.list_models()}
        torch.save(prints, args.write)
        print(f"wrote {len(prints)} fingerprints ({sj_sew.SJ_VERSION}) to {args.write}")
        return 0
    a, b = (torch.load(f, weights_only=True) for f in args.compare)
    differences = compare(a, b)
    print("\n".join(differences) or f"identical: {len(a)} models")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
