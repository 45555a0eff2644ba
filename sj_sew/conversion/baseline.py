"""SpikingJelly's own ann2snn converter, as the baseline S-ResNet is compared with."""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from .._compat import ann2snn_convert


def spikingjelly_convert(ann: nn.Module, calibration_loader: Iterable, mode: str | float = "99.9%") -> nn.Module:
    """SpikingJelly's ``ann2snn`` on a copy of ``ann``; ``mode`` is ``'Max'``, ``'<p>%'`` or a float in (0, 1].
    The result is single-step: call it once per time step and sum its outputs (:class:`AccumulatedOutput`)."""
    return ann2snn_convert(copy.deepcopy(ann).eval(), calibration_loader, mode)


class AccumulatedOutput:
    """Wraps a single-step SNN whose last layer is analog (SpikingJelly's converter): scores = sum of outputs."""

    def __init__(self, snn: nn.Module):
        self.snn = snn
        self.total = None

    def reset(self) -> None:
        functional.reset_net(self.snn)
        self.total = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        out = self.snn(x)
        self.total = out if self.total is None else self.total + out
        return out

    def scores(self) -> torch.Tensor:
        return self.total
