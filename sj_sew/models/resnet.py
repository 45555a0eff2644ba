"""SEW, Spiking and Plain ResNets with torchvision's ImageNet layouts (18 to 152 layers)."""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from ..blocks import BasicBlock, Bottleneck, ResidualBlock, check_family, conv_bn
from ..neurons import NeuronSpec
from ._registry import register_model
from .base import SpikingNetwork

#: depth -> (block, blocks per stage), as in torchvision.
RESNET_LAYOUTS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def init_like_torchvision(model: nn.Module, zero_init_residual: bool) -> None:
    """Kaiming-normal convs, unit BN, then (optionally) every block's identity init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock):
                m.zero_init_last()


class SpikingResNet(SpikingNetwork):
    """A residual SNN on torchvision's ResNet skeleton; ``family`` picks SEW, Spiking or Plain blocks.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage.
        family: ``'sew'``, ``'spiking'`` or ``'plain'``.
        connect: g for SEW blocks (``'ADD'``, ``'AND'``, ``'IAND'`` or a registered name).
        neuron, backend, **neuron_kwargs: see :class:`sj_sew.neurons.NeuronSpec`.
        in_channels: 3 for images, 2 for DVS polarity frames.
        zero_init_residual: start every block as an identity mapping (paper, Sec. 3.3).
        T: time steps for static input; None accepts only sequences.
    """

    def __init__(self, block: type[ResidualBlock], layers, family: str = "sew", connect: str = "ADD",
                 neuron="if", backend: str = "auto", in_channels: int = 3, num_classes: int = 1000,
                 zero_init_residual: bool = False, T: int | None = None, width: int = 64, **neuron_kwargs):
        spec = NeuronSpec(neuron, backend, **neuron_kwargs)
        super().__init__(spec, in_channels, num_classes, T)
        self.family = check_family(family)
        self.connect = connect
        self.conv1 = layer.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, step_mode="m")
        self.bn1 = layer.BatchNorm2d(width, step_mode="m")
        self.sn1 = spec.make()
        self.maxpool = layer.MaxPool2d(kernel_size=3, stride=2, padding=1, step_mode="m")
        channels = width
        for i, n_blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(block(channels, planes, stride, family, connect, spec))
                channels = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(layers)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        init_like_torchvision(self, zero_init_residual)

    def stem(self, x):
        return self.bn1(self.conv1(x))

    def body(self, x):
        x = self.maxpool(self.sn1(x))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(features), 2))


def _resnet_factory(family: str, depth: int):
    block, layers = RESNET_LAYOUTS[depth]

    def factory(**kwargs) -> SpikingResNet:
        return SpikingResNet(block, layers, family=family, **kwargs)

    factory.__name__ = f"{family}_resnet{depth}"
    factory.__doc__ = (f"{family.upper() if family == 'sew' else family.capitalize()} ResNet-{depth} "
                       f"(torchvision layout {list(layers)}, {block.__name__}); kwargs: see SpikingResNet.")
    return factory


for _family in ("sew", "spiking", "plain"):
    for _depth in RESNET_LAYOUTS:
        register_model(_resnet_factory(_family, _depth))
