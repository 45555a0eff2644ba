"""Analyses of trained and untrained networks (firing rates, per-block probes, synaptic operations), each a
set of forward hooks that exist only inside a ``with`` block (:class:`ForwardHooks`)."""
from .energy import OpCounter
from .firing import FiringRateMonitor, default_neuron_types
from .hooks import ForwardHooks
from .probes import BlockProbe

__all__ = ["ForwardHooks", "FiringRateMonitor", "default_neuron_types", "BlockProbe", "OpCounter"]
