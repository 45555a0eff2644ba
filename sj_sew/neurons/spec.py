"""Neuron and surrogate selection over both SpikingJelly lines (the backend is :mod:`.backend`'s decision).

:class:`NeuronSpec` turns the keyword arguments every sj_sew factory takes (``neuron``, ``backend``,
``v_threshold``, ``v_reset``, ``tau``/``init_tau``, ``detach_reset``, ``surrogate_function``) into
a factory of fresh multi-step SpikingJelly neurons. Defaults are the paper's: Vth = 1, Vreset = 0,
ATan(alpha = 2), detached reset.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import math
from typing import Any

import torch
from spikingjelly.activation_based import base, neuron as sj_neuron

from . import backend as backends
from .backend import BACKENDS  # noqa: F401  (re-exported: sj_sew.neurons.BACKENDS)
from .fused import fused_neuron_class
from .surrogate import make_surrogate

PAPER_DEFAULTS: dict[str, Any] = {"v_threshold": 1.0, "v_reset": 0.0, "detach_reset": True}

#: Short names of SpikingJelly's neurons that the paper uses (any other neuron class is accepted as a class).
NEURONS = {"if": sj_neuron.IFNode, "lif": sj_neuron.LIFNode, "plif": sj_neuron.ParametricLIFNode}


def list_neurons() -> list[str]:
    """The names ``neuron=`` accepts."""
    return sorted(NEURONS)


def _neuron_class(neuron):
    if isinstance(neuron, str):
        try:
            return NEURONS[neuron.lower()]
        except KeyError:
            raise ValueError(f"unknown neuron {neuron!r}; valid: {list_neurons()} or a SpikingJelly neuron class") from None
    if inspect.isclass(neuron) and issubclass(neuron, base.MemoryModule):
        return neuron
    raise TypeError(f"neuron must be one of {list_neurons()} or a SpikingJelly neuron class, got {neuron!r}")


class UnknownNeuronArgument(TypeError):
    """Keyword arguments that a neuron class does not take (``unknown``; ``valid`` are those it takes)."""

    def __init__(self, cls: type, unknown: list[str], valid: list[str]):
        self.cls, self.unknown, self.valid = cls, list(unknown), list(valid)
        super().__init__(f"{cls.__name__} does not take {self.unknown}{close_matches(self.unknown, valid)}; "
                         f"valid: {self.valid}")


def close_matches(names, valid, hint: str = "{match} (for {name})") -> str:
    """'; did you mean X?' for the names with a close match in ``valid`` ('' for none); ``hint`` words each."""
    hints = [hint.format(match=m[0], name=n) for n in names for m in [difflib.get_close_matches(n, list(valid), n=1)]
             if m]
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _check_parameters(cls: type, kwargs: dict) -> None:
    """ValueError naming the parameter for values SpikingJelly would reject with a bare AssertionError
    (or silently misuse): non-numeric or non-finite numbers, tau <= 1, a threshold <= 0 or <= the reset."""
    for key in ("v_threshold", "v_reset", "tau", "init_tau"):
        value = kwargs.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
    decays = [k for k, base_cls in (("tau", sj_neuron.LIFNode), ("init_tau", sj_neuron.ParametricLIFNode))
              if issubclass(cls, base_cls) and kwargs.get(k) is not None]
    for key in decays:
        if kwargs[key] <= 1:
            raise ValueError(f"{key} of {cls.__name__} must be > 1 (the membrane time constant in steps: the "
                             f"decay is 1/{key}), got {kwargs[key]!r}")
    vth, vreset = kwargs.get("v_threshold"), kwargs.get("v_reset")
    if vth is not None and vth <= 0:
        raise ValueError(f"v_threshold must be > 0 (the paper: 1.0), got {vth!r}")
    if vth is not None and vreset is not None and vreset >= vth:
        raise ValueError(f"v_reset must be below v_threshold (or None for a soft reset), got v_reset={vreset!r} "
                         f">= v_threshold={vth!r}")


class NeuronSpec:
    """A neuron model with its parameters and backend name; :meth:`make` builds one neuron.

    Args:
        neuron: ``'if'``, ``'lif'``, ``'plif'`` or a SpikingJelly neuron class.
        backend: ``'auto'`` (fastest for the device the model runs on), ``'torch'``, ``'cupy'``
            (SpikingJelly 0.0.0.0.14 only), ``'cuda'``/``'triton'`` (2.x only: its native CUDA or Triton
            kernel on a GPU, for this model's neurons alone; CPU always runs the torch path), or ``'fused'``
            (sj_sew's own: the fused path on CPU, its Triton kernels for IF/LIF/PLIF with ATan or Sigmoid on
            CUDA). Checked, and applied, by :mod:`sj_sew.neurons.backend`.
        **kwargs: neuron parameters; ``tau`` is accepted as ``init_tau`` for PLIF.
    """

    def __init__(self, neuron="if", backend: str = "auto", **kwargs):
        self.cls = _neuron_class(neuron)
        params = inspect.signature(self.cls.__init__).parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if "tau" in kwargs and "tau" not in params and "init_tau" in params:
            kwargs["init_tau"] = kwargs.pop("tau")
        unknown = [k for k in kwargs if k not in params and not accepts_any]
        if unknown or "backend" in kwargs or "step_mode" in kwargs:
            valid = sorted(k for k in params if k not in ("self", "step_mode", "backend"))
            raise UnknownNeuronArgument(self.cls, unknown or ["backend/step_mode"], valid)
        merged = {k: v for k, v in PAPER_DEFAULTS.items() if k in params or accepts_any}
        merged.update(kwargs)
        _check_parameters(self.cls, merged)
        merged["surrogate_function"] = make_surrogate(merged.get("surrogate_function"))
        for key in ("v_threshold", "v_reset", "tau", "init_tau"):  # SpikingJelly 2.x asserts floats
            if merged.get(key) is not None and key in merged:
                merged[key] = float(merged[key])
        self.kwargs = merged
        backends.check_choice(backend, self.cls, merged["surrogate_function"])
        self.backend = backend

    @property
    def kernel(self) -> str | None:
        """The GPU kernel this spec pins on a line where SpikingJelly picks it per device (2.x: 'cuda',
        'triton' or 'torch'); None where SpikingJelly's own choice applies ('auto') or ``backend`` selects it."""
        return backends.pinned_kernel(self.backend, self.cls)

    def backend_for(self, device: torch.device | str | None) -> str | None:
        """The SpikingJelly backend name to use on ``device``; None where the line picks by itself (2.x)."""
        return backends.backend_attribute(self.backend, self.cls, self.kwargs["surrogate_function"], device)

    def sync(self, modules, device) -> None:
        """Point this spec's neurons among ``modules`` at the backend for ``device`` (see
        :func:`sj_sew.neurons.backend.sync_neurons`)."""
        backends.sync_neurons(modules, self.backend, self.cls, self.kwargs["surrogate_function"], device)

    def make(self) -> base.MemoryModule:
        """A new multi-step neuron with its own copy of every parameter (surrogates included).

        IF and LIF come as the fused subclasses of :mod:`sj_sew.neurons.fused`: same spikes and gradients, faster on CPU."""
        extra = {"step_mode": "m"}
        initial = self.backend_for(None)
        if initial is not None:
            extra["backend"] = initial
        own = self.backend == "fused"
        node = fused_neuron_class(self.cls, kernels=own)(**copy.deepcopy(self.kwargs), **extra)
        if own:
            node.sj_sew_kernels = True
        backends.install_hooks(node, self.backend, self.cls)
        return node

    @property
    def v_threshold(self) -> float:
        return float(self.kwargs.get("v_threshold", 1.0))

    def firing_input(self, steps: int = 16) -> float:
        """A constant input that makes this neuron fire at every one of ``steps`` steps.

        Used to hold the last neuron of an AND block at A == 1. Found by running the neuron
        itself on candidates Vth * 1.25 * 2^k, so it holds for any neuron model.
        """
        probe = self.cls(**copy.deepcopy(self.kwargs), step_mode="m")
        candidate = 1.25 * max(abs(self.v_threshold), 1e-3)
        for _ in range(20):
            probe.reset()
            with torch.no_grad():
                out = probe(torch.full((steps, 1), candidate))
            if bool((out == 1).all()):
                return candidate
            candidate *= 2
        raise ValueError(f"{self.cls.__name__} with {self.kwargs} does not fire at every step for any "
                         "constant input up to 1e6; AND blocks cannot be initialised to identity")

    def __repr__(self) -> str:
        return f"NeuronSpec({self.cls.__name__}, backend={self.backend!r}, {self.kwargs})"
