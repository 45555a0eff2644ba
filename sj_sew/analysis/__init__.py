"""Analyses of trained and untrained networks (firing rates, per-block probes)."""
from .firing import FiringRateMonitor, default_neuron_types

__all__ = ["FiringRateMonitor", "default_neuron_types"]
