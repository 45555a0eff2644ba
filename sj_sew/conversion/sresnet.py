"""S-ResNet's conversion of a trained :class:`~sj_sew.conversion.ANNResNet` into a spiking ResNet: activation
scales, layer and shortcut normalisation, IF neurons with reset by subtraction (see :mod:`sj_sew.conversion`)."""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import base

from ..deploy import fold_conv_bn
from ..neurons import dynamics
from .ann import ANNResNet

READOUTS = ("count+softmax", "count+membrane", "count")
#: How a site's scale lambda is read off its activations: ``'sorted'`` (the authors' MATLAB code: element
#: floor(p/100 * n) of all n sorted activations, zeros and negatives included) or ``'positive'`` (the
#: percentile of the positive activations only, sj_sew's earlier reading).
SCALE_METHODS = ("sorted", "positive")


class SubtractiveIF(base.MemoryModule):
    """Single-step IF neuron with soft reset (:mod:`sj_sew.neurons.dynamics`): v += x; spike where
    v >= threshold; v -= threshold * spike; v starts at ``v_init * threshold`` (0.5: S-ResNet's compensation for
    the discretisation error)."""

    def __init__(self, v_threshold: float = 1.0, v_init: float = 0.5):
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.v_init = float(v_init)
        self.register_memory("v", self.v_init * self.v_threshold)
        self.step_mode = "s"

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        spike, self.v = dynamics.fire_and_reset(dynamics.charge_if(self.v, x), self.v_threshold, None)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, v_init={self.v_init}"


def _scaled_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, lam_in: float, lam_out: float) -> nn.Conv2d:
    weight, bias = fold_conv_bn(conv, bn)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
    out.weight.data.copy_(weight * (lam_in / lam_out))
    out.bias.data.copy_(bias / lam_out)
    return out


class SBlock(nn.Module):
    """A converted block: IF(conv2(IF(conv1(s))) + shortcut(s)), shortcut a conv or ``identity_scale * s``."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, shortcut: nn.Conv2d | None, identity_scale: float,
                 v_init: float):
        super().__init__()
        self.conv1, self.sn1 = conv1, SubtractiveIF(v_init=v_init)
        self.conv2, self.sn2 = conv2, SubtractiveIF(v_init=v_init)
        self.shortcut = shortcut
        self.identity_scale = identity_scale

    def forward(self, s):
        skip = s * self.identity_scale if self.shortcut is None else self.shortcut(s)
        return self.sn2(self.conv2(self.sn1(self.conv1(s))) + skip)

    def extra_repr(self) -> str:
        return f"identity_scale={self.identity_scale:.4f}" if self.shortcut is None else ""


class SResNet(nn.Module):
    """The converted spiking ResNet; single-step (one call = one time step of constant input current).

    As the authors' code: the global average pool of the last block's spikes drives an IF neuron (``sn_pool``)
    whose spikes drive the FC layer and its IF output neurons; ``pool_neuron=False`` feeds the pooled rates to
    the FC directly instead.

    :meth:`step` advances one step; :meth:`scores` gives the readout so far; ``forward(x)`` runs ``T``
    steps on a static batch ``[N, C, H, W]`` from rest and returns scores / T ``[N, classes]``.
    """

    def __init__(self, stem: nn.Conv2d, blocks: Sequence[SBlock], fc: nn.Linear, scales: dict[str, float],
                 readout: str = "count+softmax", v_init: float = 0.5, T: int = 64, pool_neuron: bool = True):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; valid: {list(READOUTS)}")
        self.conv1, self.sn1 = stem, SubtractiveIF(v_init=v_init)
        self.blocks = nn.Sequential(*blocks)
        self.sn_pool = SubtractiveIF(v_init=v_init) if pool_neuron else None
        self.fc, self.sn_out = fc, SubtractiveIF(v_init=v_init)
        self.scales = dict(scales)
        self.readout = readout
        self.T = T
        self.register_buffer("count", torch.zeros(0), persistent=False)

    def reset(self) -> None:
        """Back to rest: neurons at their initial membrane, no counts (``functional.reset_net`` calls this)."""
        for m in self.modules():
            if isinstance(m, SubtractiveIF):
                m.reset()
        self.count = torch.zeros(0)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One time step with the analog input ``x`` as current; returns the output spikes."""
        s = self.blocks(self.sn1(self.conv1(x)))
        pooled = torch.flatten(F.adaptive_avg_pool2d(s, 1), 1)
        out = self.sn_out(self.fc(pooled if self.sn_pool is None else self.sn_pool(pooled)))
        self.count = out if self.count.numel() == 0 else self.count + out
        return out

    def scores(self) -> torch.Tensor:
        """The readout so far (see :data:`READOUTS`)."""
        if self.readout == "count":
            return self.count
        v = self.sn_out.v
        if self.readout == "count+softmax":  # the authors': spike count + softmax of the output membrane
            v = torch.softmax(torch.as_tensor(v, dtype=self.count.dtype).expand_as(self.count), dim=1)
        return self.count + v

    @torch.no_grad()
    def forward(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        T = self.T if T is None else T
        self.reset()
        for _ in range(T):
            self.step(x)
        out = self.scores() / T
        self.reset()
        return out


def _percentile_scale(values: torch.Tensor, percentile: float, method: str = "sorted") -> float:
    if not values.numel():
        return 1.0
    if method == "sorted":  # MATLAB's final(floor(numel * p)) on the sorted values, 1-based
        k = max(1, int(np.floor(values.numel() * percentile / 100.0)))
        scale = float(torch.sort(values.flatten().double()).values[k - 1])
    else:
        scale = float(np.percentile(values.numpy(), percentile))
    return max(scale, 1e-6)


@torch.no_grad()
def activation_scales(ann: ANNResNet, loader: Iterable, percentile: float = 99.9,
                      max_values: int = 2_000_000, method: str = "sorted") -> dict[str, float]:
    """lambda per ReLU site (and ``'fc'``) from the activations on ``loader`` (see :data:`SCALE_METHODS`).

    At most ``max_values`` values per site are kept (a random subset), to bound memory; below that the
    ``'sorted'`` scale is exactly the authors' element.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if method not in SCALE_METHODS:
        raise ValueError(f"unknown scale method {method!r}; valid: {list(SCALE_METHODS)}")
    sites = {name: m for name, m in ann.named_modules() if isinstance(m, nn.ReLU)}
    sites["fc"] = ann.fc
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    generator = torch.Generator().manual_seed(0)

    def subset(values: torch.Tensor) -> torch.Tensor:
        if values.numel() <= max_values:
            return values
        return values[torch.randperm(values.numel(), generator=generator)[:max_values]]

    def hook(name):
        def record(_module, _inputs, output):
            values = output.flatten() if method == "sorted" else output[output > 0].flatten()
            seen[name].append(subset(values.detach().cpu()))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in sites.items()]
    ann.eval()
    try:
        for batch in loader:
            ann(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for h in handles:
            h.remove()
    return {name: _percentile_scale(subset(torch.cat(chunks) if chunks else torch.zeros(0)), percentile, method)
            for name, chunks in seen.items()}


@torch.no_grad()
def convert(ann: ANNResNet, calibration_loader: Iterable, percentile: float = 99.9, v_init: float = 0.5,
            readout: str = "count+softmax", T: int = 64, scale_method: str = "sorted",
            pool_neuron: bool = True) -> SResNet:
    """S-ResNet conversion of a trained :class:`ANNResNet` (see :mod:`sj_sew.conversion` for every step).

    Args:
        ann: the trained ReLU+BN network (left unchanged).
        calibration_loader: batches ``(x, y)`` or ``x`` used to find the activation scales.
        percentile: activation percentile that maps to the maximum firing rate (99.9 on CIFAR in the paper).
        v_init: initial membrane as a fraction of the threshold.
        readout: ``'count+softmax'`` (the authors'), ``'count+membrane'`` or ``'count'``.
        T: default number of steps of ``SResNet.forward``.
        scale_method: ``'sorted'`` (the authors') or ``'positive'`` (:data:`SCALE_METHODS`).
        pool_neuron: an IF neuron after the average pooling (the authors').
    """
    if not isinstance(ann, ANNResNet):
        raise TypeError(f"convert needs an sj_sew.conversion.ANNResNet (see ann_resnet), got {type(ann).__name__}")
    ann = copy.deepcopy(ann).eval()
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; valid: {list(READOUTS)}")
    lam = activation_scales(ann, calibration_loader, percentile, method=scale_method)
    stem = _scaled_conv(ann.conv1, ann.bn1, 1.0, lam["relu1"])
    blocks, lam_in = [], lam["relu1"]
    for i, blk in enumerate(ann.blocks):
        lam_mid, lam_out = lam[f"blocks.{i}.relu1"], lam[f"blocks.{i}.relu2"]
        conv1 = _scaled_conv(blk.conv1, blk.bn1, lam_in, lam_mid)
        conv2 = _scaled_conv(blk.conv2, blk.bn2, lam_mid, lam_out)
        shortcut = None if blk.downsample is None else _scaled_conv(*blk.downsample, lam_in, lam_out)
        blocks.append(SBlock(conv1, conv2, shortcut, lam_in / lam_out, v_init))
        lam_in = lam_out
    fc = nn.Linear(ann.fc.in_features, ann.fc.out_features)
    fc.weight.data.copy_(ann.fc.weight * (lam_in / lam["fc"]))
    fc.bias.data.copy_(ann.fc.bias / lam["fc"])
    return SResNet(stem, blocks, fc, lam, readout, v_init, T, pool_neuron).eval()
