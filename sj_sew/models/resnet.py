"""SEW, Spiking and Plain ResNets with torchvision's ImageNet layouts (18 to 152 layers)."""
from __future__ import annotations

import torch
from spikingjelly.activation_based import layer

from ..blocks import ResidualBlock, get_family
from ..connect import pop_connect_alias
from ..memory import run
from ..neurons import NeuronSpec
from .base import LayerSequence, SpikingNetwork
from .init import init_weights
from .layouts import RESNET_LAYOUTS, build_stages
from .registry import register_variant


class SpikingResNet(SpikingNetwork):
    """A residual SNN on torchvision's ResNet skeleton; ``family`` picks the blocks (SEW, Spiking, Plain, ...).

    Args:
        block: :class:`~sj_sew.blocks.BasicBlock` or :class:`~sj_sew.blocks.Bottleneck`.
        layers: blocks per stage.
        family: a block family (``'sew'``, ``'spiking'``, ``'plain'``, see :mod:`sj_sew.blocks`).
        connect: g for SEW blocks (``'ADD'``, ``'AND'``, ``'IAND'`` or a registered name); SpikingJelly's
            ``cnf=``/``connection=`` and the SEW authors' ``connect_f=`` are accepted as other names.
        neuron, backend, **neuron_kwargs: see :class:`sj_sew.neurons.NeuronSpec`.
        in_channels: 3 for images, 2 for DVS polarity frames.
        zero_init_residual: start every block as an identity mapping (paper, Sec. 3.3).
        T: time steps for static input; None accepts only sequences.
        width: channels of the stem and the first stage.
    """

    def __init__(self, block: type[ResidualBlock], layers, family: str = "sew", connect: str | None = None,
                 neuron="if", backend: str = "auto", in_channels: int = 3, num_classes: int = 1000,
                 zero_init_residual: bool = False, T: int | None = None, width: int = 64, **neuron_kwargs):
        connect = pop_connect_alias(neuron_kwargs, connect)
        spec = NeuronSpec(neuron, backend, **neuron_kwargs)
        super().__init__(spec, in_channels, num_classes, T)
        self.family = get_family(family).name
        self.conv1 = layer.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, step_mode="m")
        self.bn1 = layer.BatchNorm2d(width, step_mode="m")
        self.sn1 = spec.make()
        self.maxpool = layer.MaxPool2d(kernel_size=3, stride=2, padding=1, step_mode="m")
        stages, channels = build_stages(block, width, [width * 2 ** i for i in range(len(layers))], layers,
                                        family=family, connect=connect, neuron=spec)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(stages)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        init_weights(self, zero_init_residual=zero_init_residual)

    def stem(self, x):
        return self.bn1(self.conv1(x))

    def body(self, x):
        x = self.maxpool(run(self.sn1, x))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(features), 2))

    def layer_sequence(self) -> LayerSequence:
        stages = [(f"layer{i}", getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1)]
        return LayerSequence(stem=(("conv1", self.conv1), ("bn1", self.bn1)),
                             body=(("sn1", self.sn1), ("maxpool", self.maxpool), *stages),
                             head=(("avgpool", self.avgpool), ("flatten", layer.Flatten(start_dim=1, step_mode="m")),
                                   ("fc", self.fc)))


def _resnet_doc(family: str, depth: int) -> str:
    block, layers = RESNET_LAYOUTS[depth]
    title = {"sew": "SEW", "spiking": "Spiking", "plain": "Plain"}[family]
    return f"{title} ResNet-{depth} (torchvision layout {list(layers)}, {block.__name__}); kwargs: see SpikingResNet."


#: name -> (family, depth): the registered ResNets.
RESNET_VARIANTS = {
    "sew_resnet18": ("sew", 18), "sew_resnet34": ("sew", 34), "sew_resnet50": ("sew", 50),
    "sew_resnet101": ("sew", 101), "sew_resnet152": ("sew", 152),
    "spiking_resnet18": ("spiking", 18), "spiking_resnet34": ("spiking", 34), "spiking_resnet50": ("spiking", 50),
    "spiking_resnet101": ("spiking", 101), "spiking_resnet152": ("spiking", 152),
    "plain_resnet18": ("plain", 18), "plain_resnet34": ("plain", 34), "plain_resnet50": ("plain", 50),
    "plain_resnet101": ("plain", 101), "plain_resnet152": ("plain", 152),
}

for _name, (_family, _depth) in RESNET_VARIANTS.items():
    _block, _layers = RESNET_LAYOUTS[_depth]
    register_variant(_name, SpikingResNet, _resnet_doc(_family, _depth),
                     fixed=dict(block=_block, layers=_layers, family=_family))
