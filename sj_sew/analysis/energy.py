"""Synaptic operations (SOPs) and an energy estimate per inference, from the spikes actually fired.

Counting rule (documented, exact): a conv or linear layer whose input holds non-negative integers
(spikes, or a SEW ADD block's 0/1/2 outputs, counted as that many events) performs one accumulate
(AC) per event per weight it reaches: SOPs = sum(conv(x, ones)) for a conv (so padding and stride
are exact), sum(x) * out_features for a linear layer. A layer with analog input (the stem on a
static image) performs dense multiply-accumulates (MACs). For binary inputs this equals SpikingJelly
2.x's ``SynOpCounter``; that counter treats an ADD block's 2s as non-spiking input instead.

Energy uses the 45 nm figures common in the SNN literature (Horowitz, ISSCC 2014): 4.6 pJ per 32-bit
float MAC, 0.9 pJ per AC. The equivalent ANN does every layer densely once per image.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional

from .._compat import spikingjelly_synop_counter
from .hooks import ForwardHooks

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


def _is_event_tensor(x: torch.Tensor) -> bool:
    return bool((x >= 0).all() and (x == x.round()).all())


def _weight_uses(module: nn.Module, x: torch.Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        ones = torch.ones_like(module.weight)
        return F.conv2d(x, ones, None, module.stride, module.padding, module.dilation, module.groups).sum().item()
    return x.sum().item() * module.out_features


def _dense_macs(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return out.numel() * fan_in
    return out.numel() * module.in_features


class OpCounter(ForwardHooks):
    """Counts SOPs, dense MACs and equivalent-ANN MACs over the forwards run inside the context.

    ``samples`` is the number of inputs classified (N); per-inference figures divide by it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.sops = self.macs = self.ann_macs = 0.0
        self.samples = 0
        self._steps_seen: dict[int, int] = {}
        for layer in self.layers:
            self.add(layer, self._count)

    @torch.no_grad()
    def _count(self, module, args, out):
        x = args[0]
        if getattr(module, "step_mode", "s") == "m":  # multi-step layers see [T, N, ...]
            x, out = x.flatten(0, 1), out.flatten(0, 1)
        if _is_event_tensor(x):
            self.sops += _weight_uses(module, x)
        else:
            self.macs += _dense_macs(module, x, out)
        per_row = _dense_macs(module, x[:1], out[:1])
        self._steps_seen[id(module)] = per_row  # one image, one step: what the ANN twin computes

    def report(self) -> dict:
        """Per-inference SOPs, MACs, energies (pJ) and the equivalent ANN's MACs and energy."""
        if self.samples <= 0:
            raise ValueError("set OpCounter.samples to the number of inputs classified")
        ann_macs = float(sum(self._steps_seen.values()))
        sops, macs = self.sops / self.samples, self.macs / self.samples
        snn_pj = E_AC_PJ * sops + E_MAC_PJ * macs
        return {"sops": sops, "macs": macs, "snn_energy_pj": snn_pj, "ann_macs": ann_macs,
                "ann_energy_pj": E_MAC_PJ * ann_macs, "energy_ratio_ann_over_snn": E_MAC_PJ * ann_macs / snn_pj}


def spikingjelly_synops(model: nn.Module, x: torch.Tensor) -> float | None:
    """SpikingJelly 2.x's own SynOp count for one forward of ``x`` (None where the line has no counter)."""
    classes = spikingjelly_synop_counter()
    if classes is None:
        return None
    counter_mode, counter_cls = classes
    counter = counter_cls()
    functional.reset_net(model)
    with torch.no_grad(), counter_mode([counter]):
        model(x)
    functional.reset_net(model)
    return float(counter.get_total())
