"""MS-ResNet (Hu et al., membrane shortcut): pre-activation blocks whose shortcut carries membrane input.

Block (paper, and the authors' CIFAR code): ``out = BN(conv(SN(BN(conv(SN(x)))))) + shortcut(x)`` where x is
a real-valued membrane input, not spikes; the shortcut is the identity, conv1x1-BN, or (ResNet-104)
AvgPool-conv1x1-BN. The readout is SN -> global average pool -> FC, averaged over T.

Neuron preset (:data:`MS_NEURON`): u[t] = 0.25 u[t-1] (1 - s[t-1]) + x[t], s = Theta(u - 0.5), i.e. LIF with
tau = 4/3, decay_input=False, Vth = 0.5, hard reset to 0 (detached, as in the authors' code), rectangular
surrogate 1[|u - 0.5| < 0.5].

Layouts: ``ms_resnet18/34`` (stem conv7x7 s2 + BN, no max-pool; the first stage has stride 2 so feature
sizes match torchvision's, as in SpikingJelly 2.0's ``model.ms_resnet``), ``ms_resnet104`` (three-conv3x3
stem, stages [3, 8, 32, 8], AvgPool shortcut) and the CIFAR-style ``ms_resnet(depth=6n+2)`` (conv3x3 stem,
three stages of n blocks, widths 16/32/64; depth 482 is n = 80).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from ..blocks import SumBlock, conv_bn
from ..neurons import NeuronSpec
from ._registry import register_model
from .base import SpikingNetwork

#: The paper's neuron: u = 0.25 u (1 - s) + x, Vth = 0.5, hard reset, rectangular window |u - 0.5| < 0.5.
MS_NEURON = dict(neuron="lif", tau=4.0 / 3.0, decay_input=False, v_threshold=0.5, v_reset=0.0,
                 detach_reset=True, surrogate_function="rectangular")

SHORTCUTS = ("conv", "avgpool")
STEMS = ("conv7", "conv3", "deep")


def ms_neuron_spec(neuron=None, backend: str = "auto", **neuron_kwargs) -> NeuronSpec:
    """The MS-ResNet neuron preset, with any of its parameters overridden (``neuron`` swaps the model)."""
    params = {k: v for k, v in MS_NEURON.items() if k != "neuron"}
    if neuron is not None and neuron != MS_NEURON["neuron"]:
        params = {}  # another neuron model: take only what the caller gives
    params.update(neuron_kwargs)
    return NeuronSpec(neuron or MS_NEURON["neuron"], backend, **params)


class MSBlock(SumBlock):
    """Membrane-shortcut basic block on multi-step membrane input ``[T, N, C, H, W]``.

    ``shortcut``: ``'conv'`` (conv1x1(stride)-BN) or ``'avgpool'`` (AvgPool(stride)-conv1x1-BN, ResNet-104)
    when the shape changes; the identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, neuron: NeuronSpec | None = None,
                 shortcut: str = "conv"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: {list(SHORTCUTS)}")
        neuron = neuron if neuron is not None else ms_neuron_spec()
        self.sn1 = neuron.make()
        self.conv1, self.bn1 = conv_bn(in_channels, out_channels, 3, stride)
        self.sn2 = neuron.make()
        self.conv2, self.bn2 = conv_bn(out_channels, out_channels, 3, 1)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "conv":
                self.downsample = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
            else:
                pool = layer.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False, step_mode="m")
                self.downsample = nn.Sequential(pool, *conv_bn(in_channels, out_channels, 1, 1))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.sn2(self.bn1(self.conv1(self.sn1(x))))))


class MSResNet(SpikingNetwork):
    """A membrane-shortcut ResNet.

    Args:
        layers: blocks per stage.
        widths: channels per stage (the stem outputs ``widths[0]``, or ``stem_width`` for the deep stem).
        stem: ``'conv7'`` (7x7 s2 + BN, ImageNet), ``'conv3'`` (3x3 s1 + BN, CIFAR) or ``'deep'``
            (conv3x3 s2-BN-SN-conv3x3-BN-SN-conv3x3-BN, ResNet-104).
        first_stride: stride of the first stage (2 for the ImageNet layouts, which have no max-pool).
        shortcut: ``'conv'`` or ``'avgpool'`` for the downsampling shortcut.
        zero_init_residual: zero the last BN of every block, so each block starts as the identity
            on its membrane input; otherwise that BN starts at 0.2 * Vth as in the authors' code.
        neuron, backend, **neuron_kwargs: override the :data:`MS_NEURON` preset.
        in_channels, num_classes, T: see :class:`SpikingNetwork`.
    """

    def __init__(self, layers, widths=(64, 128, 256, 512), stem: str = "conv7", first_stride: int = 2,
                 shortcut: str = "conv", zero_init_residual: bool = True, neuron=None, backend: str = "auto",
                 in_channels: int = 3, num_classes: int = 1000, T: int | None = None, stem_width: int = 32,
                 **neuron_kwargs):
        for key in ("connect", "family"):
            if key in neuron_kwargs:
                raise ValueError(f"MS-ResNet has membrane shortcuts, not SEW/spiking/plain blocks: {key!r} does not "
                                 "apply (use sew_resnet*/spiking_resnet*/plain_resnet* for it)")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {list(STEMS)}")
        if len(layers) != len(widths) or not layers or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be equally long, "
                             "with at least one block per stage")
        spec = ms_neuron_spec(neuron, backend, **neuron_kwargs)
        super().__init__(spec, in_channels, num_classes, T)
        self.stem_kind = stem
        if stem == "deep":
            self.conv1, self.bn1 = conv_bn(in_channels, stem_width, 3, 2)
            self.stem_rest = nn.Sequential(spec.make(), *conv_bn(stem_width, stem_width, 3, 1),
                                           spec.make(), *conv_bn(stem_width, widths[0], 3, 1))
        else:
            self.conv1, self.bn1 = conv_bn(in_channels, widths[0], 7 if stem == "conv7" else 3,
                                           2 if stem == "conv7" else 1)
            self.stem_rest = None
        channels = widths[0]
        for i, (n_blocks, width) in enumerate(zip(layers, widths)):
            stage_stride = first_stride if i == 0 else 2
            blocks = [MSBlock(channels if j == 0 else width, width, stage_stride if j == 0 else 1, spec, shortcut)
                      for j in range(n_blocks)]
            channels = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.sn = spec.make()
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        self._init_bn(zero_init_residual)

    @torch.no_grad()
    def _init_bn(self, zero_init_residual: bool) -> None:
        """BN weights at Vth (the authors' tdBN-style init), then the last BN of each block."""
        vth = self.neuron_spec.v_threshold
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, vth)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MSBlock):
                if zero_init_residual:
                    m.zero_init_last()
                else:
                    nn.init.constant_(m.bn2.weight, 0.2 * vth)

    @property
    def depth(self) -> int:
        """Weighted layers: stem convs + two per block + the FC."""
        blocks = sum(len(getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1))
        return (3 if self.stem_kind == "deep" else 1) + 2 * blocks + 1

    def stem(self, x):
        return self.bn1(self.conv1(x))

    def body(self, x):
        if self.stem_rest is not None:
            x = self.stem_rest(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(self.sn(features)), 2))


#: name -> MSResNet arguments of the paper's ImageNet networks.
MS_RESNET_LAYOUTS = {
    "ms_resnet18": dict(layers=(2, 2, 2, 2), stem="conv7"),
    "ms_resnet34": dict(layers=(3, 4, 6, 3), stem="conv7"),
    "ms_resnet104": dict(layers=(3, 8, 32, 8), stem="deep", shortcut="avgpool"),
}


def _ms_factory(name: str, layout: dict):
    def factory(**kwargs) -> MSResNet:
        return MSResNet(**{**layout, **kwargs})

    factory.__name__ = name
    factory.__doc__ = f"MS-ResNet {layout}; kwargs: see MSResNet."
    return factory


for _name, _layout in MS_RESNET_LAYOUTS.items():
    register_model(_ms_factory(_name, _layout))


def cifar_blocks_per_stage(depth: int) -> int:
    """n for a CIFAR-style ResNet of depth 6n + 2 (three stages of n two-conv blocks, stem, FC)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR-style depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, 482, ...), "
                         f"got {depth!r}")
    return (depth - 2) // 6


@register_model
def ms_resnet(depth: int = 20, widths=(16, 32, 64), **kwargs) -> MSResNet:
    """CIFAR-style MS-ResNet of depth 6n + 2 (conv3x3 stem, three stages of n blocks); depth=482 is n = 80."""
    n = cifar_blocks_per_stage(depth)
    kwargs.setdefault("num_classes", 10)
    return MSResNet(layers=(n, n, n), widths=tuple(widths), stem="conv3", first_stride=1, **kwargs)
