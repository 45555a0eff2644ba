"""S-ResNet (Hu, Tang, Pan 2018): ANN-to-SNN conversion of a residual network, and SpikingJelly's converter.

:func:`ann_resnet` builds the ReLU twin of the package's CIFAR-style nets (conv3x3-BN-ReLU stem, three
stages of post-activation basic blocks ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``, GAP, FC).
:func:`convert` turns a trained one into an :class:`SResNet`:

1. BN is folded into the conv before it (:func:`sj_sew.fuse.fold_conv_bn`).
2. Each ReLU site k gets a scale lambda_k: the ``percentile``-th percentile of its positive activations on the
   calibration data (the input has lambda = 1: the analog image is fed unscaled as a constant current).
3. Every layer is rescaled, W <- W * lambda_in / lambda_out, b <- b / lambda_out. In a block the last conv
   uses lambda at the ReLU after the sum, and the shortcut is normalised the same way: a conv shortcut is
   rescaled like any layer, an identity shortcut is multiplied by lambda_block_in / lambda_block_out
   (S-ResNet's shortcut normalisation), so both summed paths are in the same units.
4. ReLUs become IF neurons (threshold 1, reset by subtraction, membrane starting at 0.5 x threshold, the
   compensation for the discretisation error). The FC layer drives IF output neurons of the same kind,
   normalised by its own percentile.

Readout: ``'count+membrane'`` (default) ranks classes by output spike count plus the output membrane, so
the membrane breaks ties between equal counts. With reset by subtraction, count + membrane = 0.5 + the
total input current, so this is the same ranking as a non-spiking accumulating last layer.
``'count'`` uses the spike count alone (ties go to the lowest class index).

:func:`spikingjelly_convert` runs SpikingJelly's own ``ann2snn`` converter (both release lines) on the same
ANN as a baseline; :func:`accuracy_vs_time` evaluates either kind of SNN at several T in one simulation.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import base, functional

from ._compat import SJ2
from .fuse import fold_conv_bn

READOUTS = ("count+membrane", "count")


# --- the ANN -------------------------------------------------------------------------------------
class ANNBasicBlock(nn.Module):
    """Post-activation basic block with its own ReLU modules (so converters can find each site)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + shortcut)


class ANNResNet(nn.Module):
    """CIFAR-style ReLU ResNet of depth 6n + 2: the ANN twin of the package's spiking nets."""

    def __init__(self, depth: int = 8, widths=(16, 32, 64), in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth!r}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu1 = nn.ReLU()
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            for j in range(n):
                blocks.append(ANNBasicBlock(channels, width, 2 if (i > 0 and j == 0) else 1))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.relu1(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def ann_resnet(depth: int = 8, **kwargs) -> ANNResNet:
    """The ReLU twin of ``ms_resnet``/SEW CIFAR-style nets, for conversion (kwargs: see ANNResNet)."""
    return ANNResNet(depth, **kwargs)


def train_ann(ann: nn.Module, loader: Iterable, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0) -> nn.Module:
    """A plain Adam + cross-entropy loop (cosine learning rate); returns ``ann`` in eval mode."""
    opt = torch.optim.Adam(ann.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    for _ in range(epochs):
        ann.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(ann(x), y).backward()
            opt.step()
        sched.step()
    return ann.eval()


@torch.no_grad()
def ann_accuracy(ann: nn.Module, loader: Iterable) -> float:
    ann.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((ann(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


# --- the SNN -------------------------------------------------------------------------------------
class SubtractiveIF(base.MemoryModule):
    """Single-step IF neuron: v += x; spike where v >= threshold; v -= threshold * spike; v starts at
    ``v_init * threshold`` (0.5: S-ResNet's compensation for the discretisation error)."""

    def __init__(self, v_threshold: float = 1.0, v_init: float = 0.5):
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.v_init = float(v_init)
        self.register_memory("v", self.v_init * self.v_threshold)
        self.step_mode = "s"

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v + x
        spike = (v >= self.v_threshold).to(x.dtype)
        self.v = v - spike * self.v_threshold
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

    :meth:`step` advances one step; :meth:`scores` gives the readout so far; ``forward(x)`` runs ``T``
    steps on a static batch ``[N, C, H, W]`` from rest and returns scores / T ``[N, classes]``.
    """

    def __init__(self, stem: nn.Conv2d, blocks: Sequence[SBlock], fc: nn.Linear, scales: dict[str, float],
                 readout: str = "count+membrane", v_init: float = 0.5, T: int = 64):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; valid: {list(READOUTS)}")
        self.conv1, self.sn1 = stem, SubtractiveIF(v_init=v_init)
        self.blocks = nn.Sequential(*blocks)
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
        out = self.sn_out(self.fc(torch.flatten(F.adaptive_avg_pool2d(s, 1), 1)))
        self.count = out if self.count.numel() == 0 else self.count + out
        return out

    def scores(self) -> torch.Tensor:
        if self.readout == "count":
            return self.count
        return self.count + self.sn_out.v

    @torch.no_grad()
    def forward(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        T = self.T if T is None else T
        self.reset()
        for _ in range(T):
            self.step(x)
        out = self.scores() / T
        self.reset()
        return out


@torch.no_grad()
def activation_scales(ann: ANNResNet, loader: Iterable, percentile: float = 99.9,
                      max_values: int = 2_000_000) -> dict[str, float]:
    """lambda per ReLU site (and ``'fc'``): the percentile of positive activations on ``loader``.

    At most ``max_values`` positive values per site are kept (a random subset), to bound memory.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    sites = {name: m for name, m in ann.named_modules() if isinstance(m, nn.ReLU)}
    sites["fc"] = ann.fc
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    generator = torch.Generator().manual_seed(0)

    def hook(name):
        def record(_module, _inputs, output):
            positive = output[output > 0].flatten()
            if positive.numel() > max_values:
                positive = positive[torch.randperm(positive.numel(), generator=generator)[:max_values]]
            seen[name].append(positive)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in sites.items()]
    ann.eval()
    try:
        for batch in loader:
            ann(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for h in handles:
            h.remove()
    scales = {}
    for name, chunks in seen.items():
        values = torch.cat(chunks) if chunks else torch.zeros(0)
        if values.numel() > max_values:
            values = values[torch.randperm(values.numel(), generator=generator)[:max_values]]
        scales[name] = float(np.percentile(values.numpy(), percentile)) if values.numel() else 1.0
        scales[name] = max(scales[name], 1e-6)
    return scales


@torch.no_grad()
def convert(ann: ANNResNet, calibration_loader: Iterable, percentile: float = 99.9, v_init: float = 0.5,
            readout: str = "count+membrane", T: int = 64) -> SResNet:
    """S-ResNet conversion of a trained :class:`ANNResNet` (see the module docstring for every step).

    Args:
        ann: the trained ReLU+BN network (left unchanged).
        calibration_loader: batches ``(x, y)`` or ``x`` used to find the activation scales.
        percentile: activation percentile that maps to the maximum firing rate (99.9 on CIFAR in the paper).
        v_init: initial membrane as a fraction of the threshold.
        readout: ``'count+membrane'`` or ``'count'``.
        T: default number of steps of ``SResNet.forward``.
    """
    if not isinstance(ann, ANNResNet):
        raise TypeError(f"convert needs an sj_sew.conversion.ANNResNet (see ann_resnet), got {type(ann).__name__}")
    ann = copy.deepcopy(ann).eval()
    lam = activation_scales(ann, calibration_loader, percentile)
    stem = _scaled_conv(ann.conv1, ann.bn1, 1.0, lam["relu1"])
    blocks, lam_in = [], lam["relu1"]
    for i, blk in enumerate(ann.blocks):
        lam_mid, lam_out = lam[f"blocks.{i}.relu1"], lam[f"blocks.{i}.relu2"]
        conv1 = _scaled_conv(blk.conv1, blk.bn1, lam_in, lam_mid)
        conv2 = _scaled_conv(blk.conv2, blk.bn2, lam_mid, lam_out)
        shortcut = None if blk.downsample is None else _scaled_conv(blk.downsample[0], blk.downsample[1], lam_in, lam_out)
        blocks.append(SBlock(conv1, conv2, shortcut, lam_in / lam_out, v_init))
        lam_in = lam_out
    fc = nn.Linear(ann.fc.in_features, ann.fc.out_features)
    fc.weight.data.copy_(ann.fc.weight * (lam_in / lam["fc"]))
    fc.bias.data.copy_(ann.fc.bias / lam["fc"])
    return SResNet(stem, blocks, fc, lam, readout, v_init, T).eval()


# --- SpikingJelly's converter as a baseline ------------------------------------------------------
def spikingjelly_convert(ann: nn.Module, calibration_loader: Iterable, mode: str | float = "99.9%") -> nn.Module:
    """SpikingJelly's ``ann2snn`` on a copy of ``ann``; ``mode`` is ``'Max'``, ``'<p>%'`` or a float in (0, 1].

    0.0.0.0.14: ``Converter(dataloader, mode=...)(ann)``; 2.x: ``Converter(RateCodingRecipe(...)).convert(ann)``.
    The result is single-step: call it once per time step and sum its outputs.
    """
    from spikingjelly.activation_based import ann2snn

    ann = copy.deepcopy(ann).eval()
    if SJ2:
        return ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=calibration_loader, mode=mode)).convert(ann)
    return ann2snn.Converter(calibration_loader, mode=mode)(ann)


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


@torch.no_grad()
def accuracy_vs_time(snn, loader: Iterable, time_steps: Sequence[int], progress: bool = False) -> dict[int, float]:
    """Test accuracy after each T in ``time_steps``, from one simulation of max(T) steps per batch.

    ``snn`` is an :class:`SResNet` or an :class:`AccumulatedOutput` (anything with reset/step/scores).
    """
    steps = sorted(set(int(t) for t in time_steps))
    if not steps or steps[0] < 1:
        raise ValueError(f"time_steps must be positive ints, got {list(time_steps)}")
    correct = dict.fromkeys(steps, 0)
    total = 0
    batches = loader
    if progress:
        from tqdm import tqdm
        batches = tqdm(loader, desc="SNN", leave=False)
    for x, y in batches:
        snn.reset()
        for t in range(1, steps[-1] + 1):
            snn.step(x)
            if t in correct:
                correct[t] += int((snn.scores().argmax(1) == y).sum())
        total += len(y)
    snn.reset()
    return {t: correct[t] / total for t in steps}
