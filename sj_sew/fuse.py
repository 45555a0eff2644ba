"""Folding BatchNorm into the convolution before it (inference and ANN-to-SNN conversion)."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return weight, (bias - bn.running_mean) * scale + bn.bias


def fused_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (same class, so multi-step layers keep their step mode) computing ``bn(conv(x))``."""
    import copy

    fused = copy.deepcopy(conv)
    weight, bias = fold_conv_bn(conv, bn)
    fused.weight = nn.Parameter(weight)
    fused.bias = nn.Parameter(bias)
    return fused
