"""Residual blocks of the three families the SEW paper compares, each owning its identity init.

Every block maps multi-step spikes ``[T, N, C, H, W]`` to ``[T, N, C', H', W']``. The residual
branch F is conv-BN-SN-...-conv-BN (two 3x3 convs in :class:`BasicBlock`, 1x1-3x3-1x1 in
:class:`Bottleneck`, stride on the 3x3 as in torchvision); the family decides what follows:

========== ============================================ ====================================
family      output                                       shortcut when shape changes
========== ============================================ ====================================
``sew``     O = g(SN(F(S)), S')  (paper eq. 11)          S' = SN(BN(conv1x1(S)))  (Fig. 2b)
``spiking`` O = SN(F(S) + S')     (paper eq. 7)          S' = BN(conv1x1(S)), no SN  (Fig. 2a)
``plain``   O = SN(F(S))                                 none
========== ============================================ ====================================

Module names follow SpikingJelly's zoo and torchvision (``conv1``, ``bn1``, ``sn1``, ...,
``downsample.0/1``, ``downsample_sn``), so their state dicts load with ``strict=True``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from .connect import get_connect
from .neurons import NeuronSpec

FAMILIES = ("sew", "spiking", "plain")


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """A bias-free multi-step conv (padding keeps the size at stride 1) and its BatchNorm."""
    conv = layer.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                        padding=kernel_size // 2, bias=False, step_mode="m")
    return conv, layer.BatchNorm2d(out_channels, step_mode="m")


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown block family {family!r}; valid: {list(FAMILIES)}")
    return family


class ResidualBlock(nn.Module):
    """A residual block of any family; subclasses only give the conv layout of F."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, family: str = "sew",
                 connect: str = "ADD", neuron: NeuronSpec | None = None):
        super().__init__()
        self.family = check_family(family)
        self.connect = get_connect(connect)
        self.neuron = neuron if neuron is not None else NeuronSpec()
        out_channels = planes * self.expansion
        self.num_convs = 0
        for cin, cout, k, s in self.layout(in_channels, planes, stride):
            self.num_convs += 1
            conv, bn = conv_bn(cin, cout, k, s)
            self.add_module(f"conv{self.num_convs}", conv)
            self.add_module(f"bn{self.num_convs}", bn)
            self.add_module(f"sn{self.num_convs}", self.neuron.make())
        self.downsample = None
        if family != "plain" and (stride != 1 or in_channels != out_channels):
            self.downsample = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
            if family == "sew":
                self.downsample_sn = self.neuron.make()

    @staticmethod
    def layout(in_channels: int, planes: int, stride: int):
        """(in, out, kernel, stride) of each conv in F."""
        raise NotImplementedError

    def _last(self, kind: str) -> nn.Module:
        return getattr(self, f"{kind}{self.num_convs}")

    @property
    def residual_neuron(self) -> nn.Module:
        """The neuron whose output is A (SEW) or O (spiking, plain)."""
        return self._last("sn")

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(S) before the last neuron: conv-BN-SN-...-conv-BN."""
        for i in range(1, self.num_convs + 1):
            x = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))
            if i < self.num_convs:
                x = getattr(self, f"sn{i}")(x)
        return x

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            return x
        s = self.downsample(x)
        return self.downsample_sn(s) if self.family == "sew" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.branch(x)
        if self.family == "plain":
            return self.residual_neuron(h)
        if self.family == "spiking":
            return self.residual_neuron(h + self.shortcut(x))
        return self.connect.fn(self.residual_neuron(h), self.shortcut(x))

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Make the block an identity mapping (where its family allows one).

        SEW: last BN weight 0 and a bias that holds A at g's identity spike (0 for ADD/IAND, 1 for
        AND, the bias found by probing the neuron). Spiking: last BN weight and bias 0, which gives
        O = SN(S): an identity only for neurons that fire on one input spike from rest (IF with
        Vth <= 1), not LIF/PLIF (paper, Sec. 3.2). Plain: no shortcut, left untouched.
        """
        if self.family == "plain":
            return
        bn = self._last("bn")
        bn.weight.zero_()
        if self.family == "sew" and self.connect.identity_spike == 1.0:
            bn.bias.fill_(self.neuron.firing_input())
        else:
            bn.bias.zero_()

    def extra_repr(self) -> str:
        return f"family={self.family}, connect={self.connect.name}" if self.family == "sew" else f"family={self.family}"


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    @staticmethod
    def layout(in_channels, planes, stride):
        return [(in_channels, planes, 3, stride), (planes, planes, 3, 1)]


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50/101/152)."""

    expansion = 4

    @staticmethod
    def layout(in_channels, planes, stride):
        return [(in_channels, planes, 1, 1), (planes, planes, 3, stride), (planes, planes * 4, 1, 1)]


class SumBlock(nn.Module):
    """A block whose output is ``residual(x) + shortcut(x)`` with nothing after the sum (MS-ResNet's
    membrane shortcut, DS-ResNet). Subclasses build ``conv1/bn1/.../conv2/bn2``, ``downsample`` (None
    for the identity) and :meth:`residual`; zeroing the last BN makes the block its shortcut."""

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Last BN weight and bias 0: the residual branch contributes nothing, out = shortcut(x)."""
        self.bn2.weight.zero_()
        self.bn2.bias.zero_()
