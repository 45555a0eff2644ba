"""The deployment model: :class:`InferenceModel` and :func:`inference_model`."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from .. import _compat
from .fold import fold_batchnorm


class ChannelsLastMaxPool2d(nn.Module):
    """Max pooling computed in channels-last layout (several times faster on CPU), same values; for
    single- or multi-step input, returned in the input's layout. Inference only: with tied maxima its
    gradient could pick another argmax than the default kernel."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        if pool.return_indices:
            raise ValueError("ChannelsLastMaxPool2d does not return indices")
        self.args = dict(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding,
                         dilation=pool.dilation, ceil_mode=pool.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            return nn.functional.max_pool2d(x, **self.args)
        frames = x.flatten(0, 1) if x.dim() == 5 else x
        y = nn.functional.max_pool2d(frames.contiguous(memory_format=torch.channels_last), **self.args)
        y = y.contiguous()
        return y.unflatten(0, x.shape[:2]) if x.dim() == 5 else y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.args.items())


def _swap_max_pools(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d) and not child.return_indices:
                setattr(parent, name, ChannelsLastMaxPool2d(child))


class InferenceModel(nn.Module):
    """A network prepared for inference; each call runs under ``torch.inference_mode`` from rest (neurons
    reset before and after), so calls are independent. The prepared network is :attr:`model`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.training = False

    def train(self, mode: bool = True) -> "InferenceModel":
        if mode:
            raise RuntimeError("an InferenceModel has its BatchNorm folded and cannot be trained; "
                               "train the original model and call inference_model on it again")
        return self

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """The wrapped network's output for ``x``; ``per_step=True`` passes on to an sj_sew network
        (logits of every step, ``[T, N, num_classes]``)."""
        with torch.inference_mode():
            functional.reset_net(self.model)
            out = self.model(x, per_step=True) if per_step else self.model(x)
            functional.reset_net(self.model)
        return out


def inference_model(model: nn.Module) -> InferenceModel:
    """A deployment copy of ``model``: BatchNorm folded into the convolutions, max pooling in channels-last
    layout (:class:`ChannelsLastMaxPool2d`), gradient checkpointing off, eval mode, no parameter gradients,
    wrapped in :class:`InferenceModel`. Predictions equal ``model.eval()``'s; the logits agree to float
    rounding. ``model`` is left unchanged."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"inference_model takes an nn.Module, got {type(model).__name__}")
    functional.reset_net(model)  # neuron states from a past forward pass cannot (and need not) be copied
    deployed = copy.deepcopy(model).eval()
    if hasattr(deployed, "set_grad_checkpointing"):
        deployed.set_grad_checkpointing(False)
    fold_batchnorm(deployed)
    _swap_max_pools(deployed)
    deployed.requires_grad_(False)
    _compat.reset_cache_invalidate(deployed)
    return InferenceModel(deployed)
