"""Analyses of trained and untrained networks (firing rates, per-block probes)."""
from .firing import FiringRateMonitor

__all__ = ["FiringRateMonitor"]
