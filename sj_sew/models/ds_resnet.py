"""Spiking DS-ResNet (dormant-suppressed) with multi-level firing neurons (Feng et al., IJCAI 2022).

Block: ``out = MLF(BN(conv3x3(MLF(BN(conv3x3(x)))))) + shortcut(x)``, shortcut the identity or
conv1x1-BN-MLF, and no activation after the sum, so a block passes discrete spike counts through unchanged
when its residual branch is silent. Networks are CIFAR-style (conv3x3-BN-MLF stem, three stages of n blocks,
GAP, FC, depth 6n + 2): ``ds_resnet14/20/32/44/68`` with channels 64/128/256, ``ds_resnet(depth=...)``
for any other depth, and ``ds_resnet_dvs`` with channels 16/32/64 for 2-channel event frames.
``levels=K`` sets the MLF levels; K = 1 is the single-level baseline.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from ..blocks import SumBlock, conv_bn
from ..mlf import MLFNode, default_thresholds
from ..neurons import NeuronSpec
from ._registry import register_model
from .base import SpikingNetwork
from .ms_resnet import cifar_blocks_per_stage


def mlf_spec(levels: int = 3, thresholds=None, tau: float = 0.25, detach_reset: bool = False,
             surrogate_function="rectangular", backend: str = "auto") -> NeuronSpec:
    """A :class:`NeuronSpec` of :class:`MLFNode` with the paper's defaults."""
    if thresholds is None:
        thresholds = default_thresholds(levels)
    return NeuronSpec(MLFNode, backend, levels=levels, thresholds=tuple(thresholds), tau=tau,
                      detach_reset=detach_reset, surrogate_function=surrogate_function)


class DSBlock(SumBlock):
    """Dormant-suppressed block on multi-step spike counts ``[T, N, C, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron: NeuronSpec | None = None):
        super().__init__()
        neuron = neuron if neuron is not None else mlf_spec()
        self.conv1, self.bn1 = conv_bn(in_channels, out_channels, 3, stride)
        self.sn1 = neuron.make()
        self.conv2, self.bn2 = conv_bn(out_channels, out_channels, 3, 1)
        self.sn2 = neuron.make()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride), neuron.make())

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))))



class DSResNet(SpikingNetwork):
    """CIFAR-style Spiking DS-ResNet of depth 6n + 2 with MLF neurons.

    Args:
        depth: 6n + 2 (14, 20, 32, 44, 68, ...).
        widths: channels of the three stages (64/128/256 for CIFAR, 16/32/64 for DVS).
        levels, thresholds, tau, detach_reset, surrogate_function, backend: the MLF neuron (:func:`mlf_spec`).
        zero_init_residual: start each block as the identity (the paper does not; off by default).
        neuron: only ``'mlf'`` (accepted so generic scripts can pass it).
        in_channels, num_classes, T: see :class:`SpikingNetwork`.

    BN weights start at theta_1 (tdBN's alpha * Vth with alpha = 1).
    """

    def __init__(self, depth: int = 20, widths=(64, 128, 256), levels: int = 3, thresholds=None,
                 tau: float = 0.25, detach_reset: bool = False, surrogate_function="rectangular",
                 backend: str = "auto", in_channels: int = 3, num_classes: int = 10, T: int | None = None,
                 zero_init_residual: bool = False, neuron: str | None = None):
        if neuron not in (None, "mlf"):
            raise ValueError(f"DS-ResNet uses MLF neurons (neuron='mlf'); got neuron={neuron!r}. "
                             "Set levels=1 for the single-level baseline")
        n = cifar_blocks_per_stage(depth)
        spec = mlf_spec(levels, thresholds, tau, detach_reset, surrogate_function, backend)
        super().__init__(spec, in_channels, num_classes, T)
        self.depth = depth
        self.conv1, self.bn1 = conv_bn(in_channels, widths[0], 3, 1)
        self.sn1 = spec.make()
        channels = widths[0]
        for i, width in enumerate(widths):
            blocks = [DSBlock(channels if j == 0 else width, width, (1 if i == 0 else 2) if j == 0 else 1, spec)
                      for j in range(n)]
            channels = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        self._init_weights(zero_init_residual)

    @torch.no_grad()
    def _init_weights(self, zero_init_residual: bool) -> None:
        theta1 = float(self.sn1.thresholds[0])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, theta1)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, DSBlock):
                    m.zero_init_last()

    def stem(self, x):
        return self.bn1(self.conv1(x))

    def body(self, x):
        x = self.sn1(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(features), 2))


def _ds_factory(depth: int):
    def factory(**kwargs) -> DSResNet:
        return DSResNet(depth=depth, **kwargs)

    factory.__name__ = f"ds_resnet{depth}"
    factory.__doc__ = f"Spiking DS-ResNet-{depth} with MLF neurons (channels 64/128/256); kwargs: see DSResNet."
    return factory


#: The CIFAR-10 depths of the paper.
DS_RESNET_DEPTHS = (14, 20, 32, 44, 68)

for _depth in DS_RESNET_DEPTHS:
    register_model(_ds_factory(_depth))


@register_model
def ds_resnet(depth: int = 20, **kwargs) -> DSResNet:
    """Spiking DS-ResNet of any CIFAR-style depth 6n + 2 (kwargs: see DSResNet)."""
    return DSResNet(depth=depth, **kwargs)


@register_model
def ds_resnet_dvs(depth: int = 20, **kwargs) -> DSResNet:
    """DS-ResNet for 2-channel event frames, channels 16/32/64 (the paper's DVS width; its DVS depth
    is not verified here, so it is an argument)."""
    kwargs.setdefault("in_channels", 2)
    kwargs.setdefault("widths", (16, 32, 64))
    return DSResNet(depth=depth, **kwargs)
