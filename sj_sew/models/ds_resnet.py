"""Spiking DS-ResNet (dormant-suppressed) with multi-level firing neurons (Feng et al., IJCAI 2022).

Block (:class:`sj_sew.blocks.BasicBlock` with ``family='ds'``):
``out = MLF(BN(conv3x3(MLF(BN(conv3x3(x)))))) + shortcut(x)``, shortcut the identity or conv1x1-BN-MLF, and no
activation after the sum, so a block passes discrete spike counts through unchanged
when its residual branch is silent. Networks are CIFAR-style (conv3x3-BN-MLF stem, three stages of n blocks,
GAP, FC, depth 6n + 2): ``ds_resnet14/20/32/44/68`` with channels 64/128/256, ``ds_resnet(depth=...)``
for any other depth, and the authors' two event-frame nets: ``ds_resnet_dvs`` (DVS128 Gesture: depth 20,
channels 16/32/64, a non-affine tdBN on the input frames, 11 classes) and ``ds_resnet_dvs_cifar10``
(CIFAR10-DVS: depth 14, channels 32/64/128, 10 classes). ``levels=K`` sets the MLF levels; K = 1 is the
single-level baseline.

As in the authors' code (github:langfengQ/MLF-DSResNet), every normalisation is their tdBN
(:class:`TDBatchNorm`: ``theta_1 * (x - mean) / (sqrt(var) + eps) * weight + bias``, weight 1), convs and the
classifier start Kaiming-normal with fan-in, and a static image is repeated T times before the stem.
``norm='bn'`` builds the earlier reading instead (``BatchNorm2d`` with weight theta_1, eps inside the square
root, fan-out init), whose checkpoints load with it.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from ..blocks import BasicBlock, conv_bn
from ..memory import run
from ..neurons import mlf_spec
from .base import LayerSequence, SpikingNetwork
from .init import init_weights
from .layouts import build_stages, cifar_blocks_per_stage
from .registry import register_model, register_variant

NORMS = ("td", "bn")


class TDBatchNorm(nn.modules.batchnorm._BatchNorm):
    """tdBN as the MLF authors compute it, over ``[N, C, H, W]`` or multi-step ``[T, N, C, H, W]`` (statistics
    over T, N, H, W): ``y = scale * (x - mean) / (sqrt(var) + eps)``, then ``* weight + bias`` if affine.

    ``scale`` is alpha * Vth (theta_1 = 0.6 in DS-ResNet). Running statistics are updated as ``BatchNorm2d``
    does (unbiased variance, ``momentum``). Not a ``BatchNorm2d`` (the eps placement differs); it tells BN
    folding (:mod:`sj_sew.deploy`) its eval-mode affine map through :meth:`eval_affine`.
    """

    def __init__(self, num_features: int, scale: float = 0.6, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True)
        self.scale = float(scale)

    def _check_input_dim(self, x):
        if x.dim() not in (4, 5):
            raise ValueError(f"TDBatchNorm expects [N, C, H, W] or [T, N, C, H, W], got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        shape = x.shape
        x = x.flatten(0, 1) if x.dim() == 5 else x
        if self.training:
            self.num_batches_tracked += 1
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            mean = x.mean([0, 2, 3], keepdim=True)
            var = x.var([0, 2, 3], keepdim=True, unbiased=False)
            n = x.numel() / x.size(1)
            with torch.no_grad():
                self.running_mean.copy_(factor * mean[0, :, 0, 0] + (1 - factor) * self.running_mean)
                self.running_var.copy_(factor * var[0, :, 0, 0] * n / (n - 1) + (1 - factor) * self.running_var)
        else:
            mean = self.running_mean[None, :, None, None]
            var = self.running_var[None, :, None, None]
        y = self.scale * (x - mean) / (torch.sqrt(var) + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.reshape(shape)

    @torch.no_grad()
    def eval_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) per channel with ``y = scale * x + shift`` in eval mode (for BN folding)."""
        scale = self.scale / (torch.sqrt(self.running_var) + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -self.running_mean * scale + (self.bias if self.affine else 0.0)
        return scale, shift

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale={self.scale}"


def _to_tdbn(model: nn.Module, scale: float) -> None:
    """Replace every BatchNorm2d of ``model`` by a :class:`TDBatchNorm` (same state-dict keys)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, TDBatchNorm(child.num_features, scale, child.eps, child.momentum))


class DSResNet(SpikingNetwork):
    """CIFAR-style Spiking DS-ResNet of depth 6n + 2 with MLF neurons.

    Args:
        depth: 6n + 2 (14, 20, 32, 44, 68, ...).
        widths: channels of the three stages (64/128/256 for CIFAR-10, 16/32/64 for DVS Gesture, 32/64/128
            for CIFAR10-DVS).
        levels, thresholds, decay, detach_reset, surrogate_function, backend: the MLF neuron (:func:`mlf_spec`;
            ``tau`` is the deprecated name of ``decay``).
        input_bn: a non-affine tdBN on the input frames before the first conv (the authors' DVS Gesture net).
        norm: ``'td'`` (the authors' tdBN, :class:`TDBatchNorm`, and fan-in Kaiming init) or ``'bn'``
            (``BatchNorm2d`` with weight theta_1 and fan-out init: sj_sew's reading before it followed them).
        zero_init_residual: start each block as the identity (the paper does not; off by default).
        neuron: only ``'mlf'`` (accepted so generic scripts can pass it).
        in_channels, num_classes, T: see :class:`SpikingNetwork`.
    """

    def __init__(self, depth: int = 20, widths=(64, 128, 256), levels: int = 3, thresholds=None,
                 decay: float = 0.25, detach_reset: bool = False, surrogate_function="rectangular",
                 backend: str = "auto", in_channels: int = 3, num_classes: int = 10, T: int | None = None,
                 zero_init_residual: bool = False, neuron: str | None = None, input_bn: bool = False,
                 norm: str = "td", tau: float | None = None):
        if neuron not in (None, "mlf"):
            raise ValueError(f"DS-ResNet uses MLF neurons (neuron='mlf'); got neuron={neuron!r}. "
                             "Set levels=1 for the single-level baseline")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid: {list(NORMS)}")
        n = cifar_blocks_per_stage(depth)
        spec = mlf_spec(levels, thresholds, decay, detach_reset, surrogate_function, backend, tau=tau)
        super().__init__(spec, in_channels, num_classes, T)
        self.stem_once = False  # the authors repeat a static image T times before conv1
        self.depth, self.norm = depth, norm
        self.bn0 = None
        self.conv1, self.bn1 = conv_bn(in_channels, widths[0], 3, 1)
        self.sn1 = spec.make()
        stages, channels = build_stages(BasicBlock, widths[0], widths, [n] * len(widths), family="ds", neuron=spec)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.num_stages = len(stages)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")
        theta1 = float(spec.kwargs["thresholds"][0])
        if norm == "td":
            _to_tdbn(self, theta1)
            if input_bn:
                self.bn0 = TDBatchNorm(in_channels, theta1, affine=False)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight)  # fan-in, as the authors
            init_weights(self, kaiming_convs=False, zero_init_residual=zero_init_residual)
        else:
            init_weights(self, bn_weight=theta1, zero_init_residual=zero_init_residual)
            if input_bn:
                self.bn0 = layer.BatchNorm2d(in_channels, affine=False, step_mode="m")

    def stem(self, x):
        if self.bn0 is not None:
            x = self.bn0(x)
        return self.bn1(self.conv1(x))

    def body(self, x):
        x = run(self.sn1, x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def head(self, features):
        return self.fc(torch.flatten(self.avgpool(features), 2))

    def layer_sequence(self) -> LayerSequence:
        stages = [(f"layer{i}", getattr(self, f"layer{i}")) for i in range(1, self.num_stages + 1)]
        input_bn = () if self.bn0 is None else (("bn0", self.bn0),)
        return LayerSequence(stem=(*input_bn, ("conv1", self.conv1), ("bn1", self.bn1)),
                             body=(("sn1", self.sn1), *stages),
                             head=(("avgpool", self.avgpool), ("flatten", layer.Flatten(start_dim=1, step_mode="m")),
                                   ("fc", self.fc)))


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


register_variant("ds_resnet_dvs", DSResNet, "DS-ResNet-20 for DVS128 Gesture as the authors' code: channels 16/32/64, "
                 "a non-affine tdBN on the input frames, 11 classes; kwargs: see DSResNet.",
                 defaults=dict(depth=20, in_channels=2, widths=(16, 32, 64), input_bn=True, num_classes=11))
register_variant("ds_resnet_dvs_cifar10", DSResNet, "DS-ResNet-14 for CIFAR10-DVS as the authors' code: channels "
                 "32/64/128, 10 classes; kwargs: see DSResNet.",
                 defaults=dict(depth=14, in_channels=2, widths=(32, 64, 128), num_classes=10))
