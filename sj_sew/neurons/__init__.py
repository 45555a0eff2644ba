"""Spiking neurons: specs and name tables, surrogates with their fused derivatives, fused IF/LIF, MLF.

- :mod:`.spec` -- :class:`NeuronSpec` (neuron model + parameters + backend choice) and the neuron names.
- :mod:`.backend` -- every decision about which kernel a neuron runs (valid names, ``'auto'``, errors, sync).
- :mod:`.dynamics` -- charge, fire and reset of IF/LIF/PLIF (and MLF), written once as tensor functions.
- :mod:`.surrogate` -- the surrogate name table (with the fused derivatives) and the paper's extra
  surrogates :class:`Rectangular` and :class:`Constant`.
- :mod:`.fused` -- IF/LIF with one autograd function over the whole sequence.
- :mod:`.mlf` -- the multi-level firing neuron of Spiking DS-ResNet.
- :mod:`.presets` -- the MS-ResNet and MLF neuron settings.
"""
from .fused import IFNode, LIFNode, fast_path_applies, fused_neuron_class
from .mlf import MLFNode, default_thresholds
from .presets import MS_NEURON, mlf_spec, ms_neuron_spec
from .spec import BACKENDS, NEURONS, NeuronSpec, UnknownNeuronArgument, close_matches, list_neurons
from .surrogate import (SURROGATES, Constant, Rectangular, fused_derivative, list_surrogates, make_surrogate,
                        register_surrogate)

__all__ = ["NeuronSpec", "NEURONS", "BACKENDS", "list_neurons", "UnknownNeuronArgument", "close_matches",
           "SURROGATES", "register_surrogate", "list_surrogates", "make_surrogate", "fused_derivative",
           "Rectangular", "Constant", "IFNode", "LIFNode", "fast_path_applies", "fused_neuron_class",
           "MLFNode", "default_thresholds", "MS_NEURON", "ms_neuron_spec", "mlf_spec"]
