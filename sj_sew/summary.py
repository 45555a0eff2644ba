"""A model at a glance: parameters, output shape, and the synaptic operations it does at a given firing rate.

Synaptic operations (SOPs) follow :mod:`sj_sew.analysis.energy`'s counting rule: a conv or linear layer fed by
events does one accumulate per event per weight it reaches, a layer fed by analog values (the stem on a static
image) one multiply-accumulate per weight per output. Here every event-fed input fires with probability
``firing_rate``, so the counts are the expected ones, without training or data.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from .analysis.hooks import ForwardHooks


def _reach(module: nn.Module, x: torch.Tensor) -> float:
    """Weight uses if every element of ``x`` were one event (padding and stride exact)."""
    if isinstance(module, nn.Conv2d):
        ones = torch.ones(1, *x.shape[1:], dtype=module.weight.dtype)
        uses = F.conv2d(ones, torch.ones_like(module.weight), None, module.stride, module.padding, module.dilation,
                        module.groups).sum().item()
        return uses * x.shape[0]
    return x.numel() / x.shape[-1] * module.in_features * module.out_features


def _dense(module: nn.Module, out: torch.Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        return out.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return out.numel() * module.in_features


@torch.no_grad()
def model_summary(model: nn.Module, x: torch.Tensor, firing_rate: float = 0.1) -> dict:
    """Parameters, output shape, and per-inference SOPs and MACs of ``model`` on input ``x`` (``[N, C, H, W]`` or
    ``[T, N, C, H, W]``) when every event-fed synapse's input fires at ``firing_rate``."""
    if not 0 <= firing_rate <= 1:
        raise ValueError(f"firing_rate must be in [0, 1], got {firing_rate}")
    totals = {"sops": 0.0, "macs": 0.0}
    first = {}

    def count(module, args, out):
        inp = args[0]
        if getattr(module, "step_mode", "s") == "m":
            inp, out = inp.flatten(0, 1), out.flatten(0, 1)
        events = bool((inp >= 0).all() and (inp == inp.round()).all())
        first.setdefault("analog", not events)
        if events:
            totals["sops"] += firing_rate * _reach(module, inp)
        else:
            totals["macs"] += _dense(module, out)

    hooks = ForwardHooks()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.add(m, count)
    was_training = model.training
    model.eval()
    functional.reset_net(model)
    try:
        with hooks:
            out = model(x)
    finally:
        functional.reset_net(model)
        model.train(was_training)
    n = x.shape[1] if x.dim() == 5 else x.shape[0]
    params = sum(p.numel() for p in model.parameters())
    return {"parameters": params, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "input": list(x.shape), "output": list(out.shape), "firing_rate": firing_rate,
            "sops": totals["sops"] / n, "macs": totals["macs"] / n}
