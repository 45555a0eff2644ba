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


def _in_order(entries) -> list[tuple[str, nn.Module]]:
    """(path, module) in forward order, with every ``nn.Sequential`` among ``entries`` opened."""
    opened = []
    for path, module in entries:
        if isinstance(module, nn.Sequential):
            opened += _in_order((f"{path}.{name}", child) for name, child in module.named_children())
        else:
            opened.append((path, module))
    return opened


def _fold_pairs(parent: nn.Module) -> list[tuple[str, str]]:
    """(conv path, norm path) candidates in ``parent``: neighbours in a network's own layer order
    (``layer_sequence``), else neighbours in an ``nn.Sequential`` and ``convK``/``bnK`` siblings."""
    describe = getattr(parent, "layer_sequence", None)
    if callable(describe):
        order = [path for path, _ in _in_order(describe())]
        return list(zip(order, order[1:]))
    names = [name for name, _ in parent.named_children()]
    pairs = list(zip(names, names[1:])) if isinstance(parent, nn.Sequential) else []
    return pairs + [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in names]


def _replace(parent: nn.Module, path: str, module: nn.Module) -> None:
    owner, _, name = path.rpartition(".")
    setattr(parent.get_submodule(owner), name, module)  # Sequential children are named "0", "1", ...


def _find(parent: nn.Module, path: str) -> nn.Module | None:
    """The submodule at ``path``, or None (a layer the forward applies as a function, e.g. ``'flatten'``)."""
    try:
        return parent.get_submodule(path)
    except AttributeError:
        return None


def _fold_children(parent: nn.Module) -> int:
    """Fold each BN into the conv feeding it among ``parent``'s layers (:func:`_fold_pairs`); returns how many."""
    folded = 0
    for conv_path, norm_path in _fold_pairs(parent):
        conv, norm = (_find(parent, p) for p in (conv_path, norm_path))
        if isinstance(conv, nn.Conv2d) and foldable(norm):
            _replace(parent, conv_path, fused_conv(conv, norm))
            _replace(parent, norm_path, nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every foldable normalisation (:func:`foldable`) that directly follows a Conv2d in the order
    the forward runs them (a network's ``layer_sequence``; elsewhere ``convK``/``bnK`` siblings or neighbours in an
    ``nn.Sequential``) into that conv. Returns the number of folds."""
    return sum(_fold_children(m) for m in list(model.modules()))
