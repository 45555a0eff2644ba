"""MS-ResNet (Hu et al., membrane shortcut): pre-activation blocks whose shortcut carries membrane input.

Block (paper, and the authors' CIFAR code): ``out = BN(conv(SN(BN(conv(SN(x)))))) + shortcut(x)`` where x is
a real-valued membrane input, not spikes; the shortcut is the identity, conv1x1-BN, or (ResNet-104)
AvgPool-conv1x1-BN. The readout is SN -> global average pool -> FC, averaged over T.

The block is :class:`sj_sew.blocks.BasicBlock` with ``family='ms'``; the neuron preset is
:func:`sj_sew.neurons.ms_neuron_spec` (LIF with tau = 4/3, decay_input=False, Vth = 0.5, hard reset,
rectangular surrogate).

Layouts: ``ms_resnet18/34`` (stem conv7x7 s2 + BN, no max-pool; the first stage has stride 2 so feature
sizes match torchvision's, as in SpikingJelly 2.0's ``model.ms_resnet``), ``ms_resnet104`` (the authors'
ResNet-104, github:BICLab/MS-ResNet: a stem of three biased conv3x3 3->64 s2, 64->64, 64->64 with nothing
between them, then one BN; stages [3, 8, 32, 8] each with stride 2, AvgPool shortcut; dropout 0.2 before the
classifier) and the CIFAR-style ``ms_resnet(depth=6n+2)`` (conv3x3 stem, three stages of n blocks, widths
16/32/64; depth 482 is n = 80).

Static input is repeated T times before the stem (:attr:`SpikingNetwork.stem_once` False), as the authors do.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import layer

from ..blocks import BasicBlock, conv_bn
from ..memory import SegmentedSequential, run
from ..neurons import ms_neuron_spec
from .base import LayerSequence, SpikingNetwork
from .init import init_weights
from .layouts import build_stages, cifar_blocks_per_stage
from .registry import register_model, register_variant

STEMS = ("conv7", "conv3", "ms104", "deep")


class MSResNet(SpikingNetwork):
    """A membrane-shortcut ResNet.

    Static input is repeated T times before the stem, as in the authors' code (set ``stem_once`` True to run
    the stem once: same outputs, the stem BN's running variance then counts N instead of N*T samples).

    Args:
        layers: blocks per stage.
        widths: channels per stage (the stem outputs ``widths[0]``, or ``stem_width`` for the deep stem).
        stem: ``'conv7'`` (7x7 s2 + BN, ImageNet), ``'conv3'`` (3x3 s1 + BN, CIFAR), ``'ms104'`` (the
            authors' ResNet-104 stem: three biased conv3x3, the first s2, then one BN) or ``'deep'``
            (conv3x3 s2-BN-SN-conv3x3-BN-SN-conv3x3-BN without bias, ``stem_width`` wide: the ResNet-D-style
            reading ``ms_resnet104`` used before it followed the authors; its checkpoints load with it).
        dropout: dropout before the classifier (0.2 in the authors' ResNet-104; one mask for all T steps, so
            it equals their dropout on the time-averaged features).
        first_stride: stride of the first stage (2 for the ImageNet layouts, which have no max-pool).
        shortcut: ``'conv'`` or ``'avgpool'`` for the downsampling shortcut.
        zero_init_residual: zero the last BN of every block, so each block starts as the identity
            on its membrane input; otherwise that BN starts at 0.2 * Vth as in the authors' code.
        neuron, backend, **neuron_kwargs: override the MS-ResNet neuron preset (:func:`ms_neuron_spec`).
        in_channels, num_classes, T: see :class:`SpikingNetwork`.
    """

    def __init__(self, layers, widths=(64, 128, 256, 512), stem: str = "conv7", first_stride: int = 2,
                 shortcut: str = "conv", zero_init_residual: bool = True, neuron=None, backend: str = "auto",
                 in_channels: int = 3, num_classes: int = 1000, T: int | None = None, stem_width: int = 32,
                 dropout: float = 0.0, **neuron_kwargs):
        for key in ("connect", "family"):
            if key in neuron_kwargs:
                raise ValueError(f"MS-ResNet has membrane shortcuts, not SEW/spiking/plain blocks: {key!r} does not "
                                 "apply (use sew_resnet*/spiking_resnet*/plain_resnet* for it)")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {list(STEMS)}")
        spec = ms_neuron_spec(neuron, backend, **neuron_kwargs)
        super().__init__(spec, in_channels, num_classes, T)
        self.stem_kind = stem
        self.stem_once = False
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if stem == "ms104":
            w = widths[0]
            self.conv1 = layer.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=True, step_mode="m")
            self.stem_rest = SegmentedSequential(layer.Conv2d(w, w, 3, padding=1, bias=True, step_mode="m"),
                                                 layer.Conv2d(w, w, 3, padding=1, bias=True, step_mode="m"))
            self.bn1 = layer.BatchNorm2d(w, step_mode="m")
        elif stem == "deep":
            self.conv1, self.bn1 = conv_bn(in_channels, stem_width, 3, 2)
            self.stem_rest = SegmentedSequential(spec.make(), *conv_bn(stem_width, stem_width, 3, 1),
                                                 spec.make(), *conv_bn(stem_width, widths[0], 3, 1))
        else:
            self.conv1, self.bn1 = conv_bn(in_channels, widths[0], 7 if stem == "conv7" else 3,
                                           2 if stem == "conv7" else 1)
            self.stem_rest = None
        stages, channels = build_stages(BasicBlock, widths[0], widths, layers, first_stride, family="ms",
                                        neuron=spec, shortcut=shortcut)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(stages)
        self.sn = spec.make()
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.dropout = layer.Dropout(dropout, step_mode="m") if dropout > 0 else None
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        vth = spec.v_threshold  # BN weights at Vth (the authors' tdBN-style init)
        init_weights(self, kaiming_convs=False, bn_weight=vth, zero_init_residual=zero_init_residual,
                     last_bn_weight=0.2 * vth)

    @property
    def depth(self) -> int:
        """Weighted layers: stem convs + two per block + the FC."""
        blocks = sum(len(getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1))
        return (3 if self.stem_kind in ("ms104", "deep") else 1) + 2 * blocks + 1

    def stem(self, x):
        if self.stem_kind == "ms104":
            return self.bn1(self.stem_rest(self.conv1(x)))
        return self.bn1(self.conv1(x))

    def body(self, x):
        if self.stem_kind == "deep":
            x = self.stem_rest(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        x = torch.flatten(self.avgpool(run(self.sn, features)), 2)
        return self.fc(x if self.dropout is None else self.dropout(x))

    def layer_sequence(self) -> LayerSequence:
        stages = tuple((f"layer{i}", getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1))
        conv1, rest, bn1 = ("conv1", self.conv1), ("stem_rest", self.stem_rest), ("bn1", self.bn1)
        stem = (conv1, rest, bn1) if self.stem_kind == "ms104" else (conv1, bn1)
        body = ((rest,) if self.stem_kind == "deep" else ()) + stages
        dropout = () if self.dropout is None else (("dropout", self.dropout),)
        return LayerSequence(stem=stem, body=body,
                             head=(("sn", self.sn), ("avgpool", self.avgpool),
                                   ("flatten", layer.Flatten(start_dim=1, step_mode="m")), *dropout, ("fc", self.fc)))

register_variant("ms_resnet18", MSResNet, "MS-ResNet-18 (conv7 stem, stages [2, 2, 2, 2]); kwargs: see MSResNet.",
                 defaults=dict(layers=(2, 2, 2, 2), stem="conv7"))
register_variant("ms_resnet34", MSResNet, "MS-ResNet-34 (conv7 stem, stages [3, 4, 6, 3]); kwargs: see MSResNet.",
                 defaults=dict(layers=(3, 4, 6, 3), stem="conv7"))
register_variant("ms_resnet104", MSResNet, "MS-ResNet-104 as the authors' code (three-conv3x3 stem, stages "
                 "[3, 8, 32, 8], AvgPool shortcut, dropout 0.2); kwargs: see MSResNet.",
                 defaults=dict(layers=(3, 8, 32, 8), stem="ms104", shortcut="avgpool", dropout=0.2))


@register_model
def ms_resnet(depth: int = 20, widths=(16, 32, 64), **kwargs) -> MSResNet:
    """CIFAR-style MS-ResNet of depth 6n + 2 (conv3x3 stem, three stages of n blocks); depth=482 is n = 80."""
    n = cifar_blocks_per_stage(depth)
    kwargs.setdefault("num_classes", 10)
    return MSResNet(layers=(n, n, n), widths=tuple(widths), stem="conv3", first_stride=1, **kwargs)
