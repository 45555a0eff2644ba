"""Streaming inference: one time step per call, neuron state kept between calls (online event streams).

:class:`StreamingModel` feeds each frame ``[N, C, H, W]`` through the network's stem, body and head as a
one-step sequence (SpikingJelly's multi-step convention with T = 1), so sj_sew's fused neurons, MLF neurons and
every block family run unchanged and carry their membranes to the next call. T calls give exactly the per-step
logits of one multi-step call on the same T frames, and :meth:`StreamingModel.average` their mean, exactly the
multi-step forward's output.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from .inference import InferenceModel


def _network_of(model: nn.Module) -> tuple[nn.Module, bool]:
    """The sj_sew network inside ``model`` and whether it is a deployment copy (run under inference mode)."""
    deployed = isinstance(model, InferenceModel)
    net = model.model if deployed else model
    missing = [m for m in ("stem", "body", "head", "check_frame") if not callable(getattr(net, m, None))]
    if missing:
        raise TypeError(f"streaming needs an sj_sew network (SpikingNetwork: stem/body/head) or an InferenceModel "
                        f"of one; {type(net).__name__} has no {missing}")
    return net, deployed


class StreamingModel(nn.Module):
    """One time step per call: ``logits_t = stream(frame_t)`` with ``frame_t`` of shape ``[N, C, H, W]``.

    The wrapped network (not a copy: weights are shared) keeps its neuron state between calls until
    :meth:`reset`. Its train/eval mode is left as it is; an :class:`InferenceModel` runs under
    ``torch.inference_mode``. A static image is streamed by passing it at every step.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        net, self.deployed = _network_of(model)
        self.net = net
        self._logits: list[torch.Tensor] = []
        self.reset()

    @property
    def steps(self) -> int:
        """Time steps fed since the last :meth:`reset`."""
        return len(self._logits)

    def reset(self) -> None:
        """Back to rest: neuron states and the collected logits are cleared (start of a new stream)."""
        functional.reset_net(self.net)
        self._logits = []

    def _context(self):
        return torch.inference_mode() if self.deployed else contextlib.nullcontext()

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """The logits of this time step, ``[N, num_classes]``."""
        self.net.check_frame(frame)  # the network's own input contract, for one time step
        with self._context():
            seq = frame.unsqueeze(0)  # a one-step sequence [1, N, C, H, W]
            if hasattr(self.net, "sync_backend"):
                self.net.sync_backend(frame.device)
            logits = self.net.head(self.net.body(self.net.stem(seq)))[0]
        self._logits.append(logits)
        return logits

    def average(self) -> torch.Tensor:
        """The logits averaged over the steps fed so far: after T steps, equal to the multi-step forward."""
        if not self._logits:
            raise RuntimeError("no time step has been fed since the last reset()")
        return torch.stack(self._logits).mean(0)

    def run(self, sequence: torch.Tensor) -> torch.Tensor:
        """Feed a whole sequence ``[T, N, C, H, W]`` step by step; returns :meth:`average`."""
        if not isinstance(sequence, torch.Tensor) or sequence.dim() != 5:
            raise ValueError(f"run takes a sequence [T, N, C, H, W]; got "
                             f"{tuple(sequence.shape) if isinstance(sequence, torch.Tensor) else sequence!r}")
        for frame in sequence:
            self(frame)
        return self.average()


def streaming(model: nn.Module) -> StreamingModel:
    """A :class:`StreamingModel` over ``model`` (an sj_sew network or its :func:`inference_model`), at rest."""
    return StreamingModel(model)
