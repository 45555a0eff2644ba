"""Folding BatchNorm into the convolution before it (deployment and ANN-to-SNN conversion).

Any normalisation that is an affine map per channel in eval mode folds: ``BatchNorm2d``, and every layer
that says how through an ``eval_affine()`` method returning (scale, shift) per channel (DS-ResNet's tdBN)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def foldable(norm: nn.Module) -> bool:
    """Whether ``norm`` is a per-channel affine map in eval mode that :func:`fold_conv_bn` can fold."""
    if hasattr(norm, "eval_affine"):
        return True
    return isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats and norm.running_mean is not None


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    if hasattr(bn, "eval_affine"):
        scale, shift = bn.eval_affine()
        weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        return weight, bias * scale + shift
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    return weight, (bias - bn.running_mean) * scale + bn.bias


def fused_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (same class, so multi-step layers keep their step mode) computing ``bn(conv(x))``."""
    fused = copy.deepcopy(conv)
    weight, bias = fold_conv_bn(conv, bn)
    fused.weight = nn.Parameter(weight)
    fused.bias = nn.Parameter(bias)
    return fused


def _fold_children(parent: nn.Module) -> int:
    """Fold each BN into the conv feeding it among ``parent``'s direct children; returns how many."""
    children = dict(parent.named_children())
    names = list(children)
    pairs = list(zip(names, names[1:])) if isinstance(parent, nn.Sequential) else []
    pairs += [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in children]
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = children[conv_name], children[bn_name]
        if isinstance(conv, nn.Conv2d) and foldable(bn):
            setattr(parent, conv_name, fused_conv(conv, bn))  # Sequential children are named "0", "1", ...
            setattr(parent, bn_name, nn.Identity())
            children[bn_name] = None
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every foldable normalisation (:func:`foldable`) that directly follows a Conv2d
    (``convK``/``bnK`` siblings or neighbours in an ``nn.Sequential``) into that conv. Returns the number of folds."""
    return sum(_fold_children(m) for m in list(model.modules()))
