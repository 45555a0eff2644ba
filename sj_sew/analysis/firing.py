"""Firing rates of every spiking neuron layer of a network, recorded with forward hooks."""
from __future__ import annotations

import torch.nn as nn
from spikingjelly.activation_based import neuron as sj_neuron

from ..neurons import MLFNode
from .hooks import ForwardHooks


def default_neuron_types() -> tuple[type, ...]:
    """SpikingJelly's ``BaseNode`` (every built-in neuron) and sj_sew's own neurons (the MLF neuron)."""
    return (sj_neuron.BaseNode, MLFNode)


class FiringRateMonitor(ForwardHooks):
    """Mean output of every spiking neuron layer (its firing rate for 0/1 spikes), accumulated over all
    forwards while active. Use as a context manager::

        with FiringRateMonitor(model) as monitor:
            model(x)
        monitor.rates()       # {layer name: rate}
        monitor.mean_rate()   # spikes / neuron-steps over all layers

    A multi-level neuron (MLF, output 0..K) counts each level it fires as one spike.

    Args:
        model: the network.
        neuron_types: module classes counted as neurons (default: :func:`default_neuron_types`).
    """

    def __init__(self, model: nn.Module, neuron_types: tuple[type, ...] | None = None):
        super().__init__()
        neuron_types = default_neuron_types() if neuron_types is None else tuple(neuron_types)
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, neuron_types)}
        if not self.layers:
            raise ValueError(f"no neuron layer of types {[t.__name__ for t in neuron_types]} in the model")
        self._sums = {name: 0.0 for name in self.layers}
        self._counts = {name: 0 for name in self.layers}
        for name, layer in self.layers.items():
            self.add(layer, self._hook(name))

    def _hook(self, name: str):
        def hook(module, args, output):
            out = output.detach()
            self._sums[name] += float(out.float().sum())
            self._counts[name] += out.numel()
        return hook

    def reset(self) -> None:
        """Forget every forward recorded so far."""
        self._sums = dict.fromkeys(self._sums, 0.0)
        self._counts = dict.fromkeys(self._counts, 0)

    def totals(self) -> tuple[float, int]:
        """(spikes, neuron-steps) over every layer so far; sum these across processes to reduce."""
        return sum(self._sums.values()), sum(self._counts.values())

    def rates(self) -> dict[str, float]:
        """Per layer: spikes / neuron-steps (nan for a layer that has not run)."""
        return {n: self._sums[n] / self._counts[n] if self._counts[n] else float("nan") for n in self.layers}

    def mean_rate(self) -> float:
        """Spikes / neuron-steps over all layers (nan before any forward)."""
        spikes, steps = self.totals()
        return spikes / steps if steps else float("nan")
