"""The neuron settings of the competing systems, as :class:`NeuronSpec` factories.

- :func:`ms_neuron_spec` -- MS-ResNet's neuron: u[t] = 0.25 u[t-1] (1 - s[t-1]) + x[t], s = Theta(u - 0.5),
  i.e. LIF with tau = 4/3, decay_input=False, Vth = 0.5, hard reset to 0 (detached, as in the authors'
  code), rectangular surrogate 1[|u - 0.5| < 0.5].
- :func:`mlf_spec` -- the multi-level firing neuron of Spiking DS-ResNet (K = 3, theta = 0.6/1.6/2.6,
  decay = 0.25, reset not detached, rectangular surrogate).
"""
from __future__ import annotations

from .mlf import DEFAULT_DECAY, MLFNode, decay_argument, default_thresholds
from .spec import NeuronSpec

#: MS-ResNet's neuron (see the module docstring).
MS_NEURON = dict(neuron="lif", tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0,
                 detach_reset=True, surrogate_function="rectangular")


def ms_neuron_spec(neuron=None, backend: str = "auto", **neuron_kwargs) -> NeuronSpec:
    """The MS-ResNet neuron preset, with any of its parameters overridden (``neuron`` swaps the model)."""
    params = {k: v for k, v in MS_NEURON.items() if k != "neuron"}
    if neuron is not None and neuron != MS_NEURON["neuron"]:
        params = {}  # another neuron model: take only what the caller gives
    params.update(neuron_kwargs)
    return NeuronSpec(neuron or MS_NEURON["neuron"], backend, **params)


def mlf_spec(levels: int = 3, thresholds=None, decay: float = DEFAULT_DECAY, detach_reset: bool = False,
             surrogate_function="rectangular", backend: str = "auto", *, tau: float | None = None) -> NeuronSpec:
    """A :class:`NeuronSpec` of :class:`MLFNode` with the paper's defaults (``tau=``: deprecated name of ``decay``)."""
    decay = decay_argument(decay, tau, "mlf_spec")
    if thresholds is None:
        thresholds = default_thresholds(levels)
    return NeuronSpec(MLFNode, backend, levels=levels, thresholds=tuple(thresholds), decay=decay,
                      detach_reset=detach_reset, surrogate_function=surrogate_function)
