"""Spiking DS-ResNet (dormant-suppressed) with multi-level firing neurons (Feng et al., IJCAI 2022).

Block (:class:`sj_sew.blocks.BasicBlock` with ``family='ds'``):
``out = MLF(BN(conv3x3(MLF(BN(conv3x3(x)))))) + shortcut(x)``, shortcut the identity or conv1x1-BN-MLF, and no
activation after the sum, so a block passes discrete spike counts through unchanged
when its residual branch is silent. Networks are CIFAR-style (conv3x3-BN-MLF stem, three stages of n blocks,
GAP, FC, depth 6n + 2): ``ds_resnet14/20/32/44/68`` with channels 64/128/256, ``ds_resnet(depth=...)``
for any other depth, and ``ds_resnet_dvs`` with channels 16/32/64 for 2-channel event frames.
``levels=K`` sets the MLF levels; K = 1 is the single-level baseline.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import layer

from ..blocks import BasicBlock, conv_bn
from ..memory import run
from ..neurons import mlf_spec
from .base import SpikingNetwork
from .init import init_weights
from .layouts import build_stages, cifar_blocks_per_stage
from .registry import register_model, register_variant


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
        stages, channels = build_stages(BasicBlock, widths[0], widths, [n] * len(widths), family="ds", neuron=spec)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(stages)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        init_weights(self, bn_weight=float(self.sn1.thresholds[0]), zero_init_residual=zero_init_residual)

    def stem(self, x):
        return self.bn1(self.conv1(x))

    def body(self, x):
        x = run(self.sn1, x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(features), 2))


#: The CIFAR-10 depths of the paper.
DS_RESNET_DEPTHS = (14, 20, 32, 44, 68)

for _depth in DS_RESNET_DEPTHS:
    register_variant(f"ds_resnet{_depth}", DSResNet,
                     f"Spiking DS-ResNet-{_depth} with MLF neurons (channels 64/128/256); kwargs: see DSResNet.",
                     fixed=dict(depth=_depth))


@register_model
def ds_resnet(depth: int = 20, **kwargs) -> DSResNet:
    """Spiking DS-ResNet of any CIFAR-style depth 6n + 2 (kwargs: see DSResNet)."""
    return DSResNet(depth=depth, **kwargs)


register_variant("ds_resnet_dvs", DSResNet, "DS-ResNet for 2-channel event frames, channels 16/32/64 (the paper's "
                 "DVS width; its DVS depth is not verified here, so it is an argument); kwargs: see DSResNet.",
                 defaults=dict(depth=20, in_channels=2, widths=(16, 32, 64)))
