"""The multi-level firing (MLF) neuron of Feng et al. (IJCAI 2022), as a SpikingJelly memory module.

K levels share the input x[t]; level i keeps its own membrane and fires against its own threshold:

    u_i[t] = decay * u_i[t-1] * (1 - s_i[t-1]) + x[t]
    s_i[t] = Theta(u_i[t] - theta_i)
    o[t]   = sum_i s_i[t]            in {0, ..., K}

``decay`` is the fraction of the membrane kept from one step to the next (the paper calls it tau; it is not a
time constant as LIF's tau is: an LIF without decay_input with time constant tau keeps 1 - 1/tau).
Paper setting: K = 3, theta = (0.6, 1.6, 2.6), decay = 0.25, hard reset to 0 that is not detached, and a
rectangular surrogate per level, dTheta/du_i = 1[|u_i - theta_i| < a/2] / a with a = 1 (the windows tile
[0.1, 3.1]). K = 1 is the single-level LIF-like baseline the paper compares against.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch
from spikingjelly.activation_based import base

from . import dynamics
from .surrogate import Rectangular

STEP_MODES = ("s", "m")
#: MLF's decay factor in the paper.
DEFAULT_DECAY = 0.25


def default_thresholds(levels: int, first: float = 0.6, spacing: float = 1.0) -> tuple[float, ...]:
    """theta_i = first + i * spacing for i = 0..K-1; K = 3 gives the paper's (0.6, 1.6, 2.6)."""
    return tuple(first + i * spacing for i in range(levels))


def decay_argument(decay: float, tau: float | None, where: str) -> float:
    """MLF's ``decay``, also given as the deprecated ``tau=`` (its old name); a finite number."""
    if tau is not None:
        if decay not in (tau, DEFAULT_DECAY):
            raise TypeError(f"{where}: give decay= alone (tau= is its deprecated old name), got decay={decay!r} "
                            f"and tau={tau!r}")
        warnings.warn(f"{where}: tau= is MLF's decay factor and is now named decay=; tau= will be removed",
                      DeprecationWarning, stacklevel=3)
        decay = tau
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay):
        raise ValueError(f"decay must be a finite number (the fraction of the membrane kept per step; the paper: "
                         f"0.25), got {decay!r}")
    return decay


class MLFNode(base.MemoryModule):
    """Multi-level firing neuron; input ``[N, ...]`` (step_mode 's') or ``[T, N, ...]`` ('m').

    Args:
        levels: K, the number of firing levels (output in {0..K}).
        thresholds: theta_1..theta_K; default :func:`default_thresholds` (0.6, 1.6, 2.6 for K = 3).
        decay: the fraction of the membrane kept from one step to the next (0.25 in the paper, which calls it
            tau); ``tau=`` is still accepted for it, deprecated.
        surrogate_function: the surrogate applied to u_i - theta_i; default the paper's
            ``Rectangular(alpha=1)`` (any SpikingJelly surrogate works).
        detach_reset: detach s_i[t-1] in the reset term (the paper does not).
        step_mode: ``'s'`` or ``'m'``.

    The membrane ``v`` holds all levels stacked on a leading dimension, ``[K, N, ...]``.
    """

    def __init__(self, levels: int = 3, thresholds: Sequence[float] | None = None, decay: float = DEFAULT_DECAY,
                 surrogate_function=None, detach_reset: bool = False, step_mode: str = "m", *,
                 tau: float | None = None):
        super().__init__()
        decay = decay_argument(decay, tau, "MLFNode")
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive int (K >= 1), got {levels!r}")
        if thresholds is None:
            thresholds = default_thresholds(levels)
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != levels:
            raise ValueError(f"need one threshold per level: levels={levels}, thresholds={thresholds}")
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValueError(f"thresholds must increase strictly, got {thresholds}")
        if step_mode not in STEP_MODES:
            raise ValueError(f"unknown step_mode {step_mode!r}; valid: {list(STEP_MODES)}")
        self.levels = levels
        self.decay = float(decay)
        self.detach_reset = detach_reset
        self.surrogate_function = Rectangular(alpha=1.0) if surrogate_function is None else surrogate_function
        self.register_buffer("thresholds", torch.tensor(thresholds), persistent=False)
        self.register_memory("v", 0.0)
        self.step_mode = step_mode

    def _theta(self, x: torch.Tensor) -> torch.Tensor:
        return self.thresholds.to(x).reshape(self.levels, *([1] * x.dim()))

    def level_step(self, x: torch.Tensor, v) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: per-level spikes ``[K, *x.shape]`` and membranes after reset, from x[t] and v."""
        h = dynamics.charge_mlf(v, x.unsqueeze(0), self.decay)  # v already holds u_i[t-1] * (1 - s_i[t-1])
        s = self.surrogate_function(h - self._theta(x))
        return s, dynamics.reset_by_product(h, s.detach() if self.detach_reset else s)

    def step(self, x: torch.Tensor, v) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: output o[t] = sum of the level spikes, and membranes after reset."""
        s, v = self.level_step(x, v)
        return s.sum(0), v

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        out, self.v = self.step(x, self.v)
        return out

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        v, outputs = self.v, []
        for t in range(x_seq.shape[0]):
            out, v = self.step(x_seq[t], v)
            outputs.append(out)
        self.v = v
        return torch.stack(outputs)

    # SpikingJelly 2.x functional interface (explicit state in, state out; ignored by 0.0.0.0.14).
    def single_step_functional_forward(self, inputs, states, **kwargs):
        out, v = self.step(inputs[0], states[0])
        return (out,), (v,)

    def extra_repr(self) -> str:
        thresholds = tuple(round(t, 6) for t in self.thresholds.tolist())
        return (f"levels={self.levels}, thresholds={thresholds}, decay={self.decay}, "
                f"detach_reset={self.detach_reset}, step_mode={self.step_mode}")
