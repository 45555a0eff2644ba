"""Surrogate gradients: the one table of names sj_sew accepts, with the derivatives its fused neurons use.

:data:`SURROGATES` maps each name (``surrogate_function='atan'`` ...) to its class and, where the fused
multi-step neuron (:mod:`sj_sew.neurons.fused`) can run it, the derivative sigma'(u; alpha) it computes
in place. Adding a surrogate is one :func:`register_surrogate` call.

Beyond SpikingJelly's set, the SEW paper uses two more (Appendix A.5, Table 9). Both follow SpikingJelly's ``SurrogateFunctionBase`` protocol (``spiking_function``,
``primitive_function``) and carry the CUDA snippets its CuPy backend (0.0.0.0.14) compiles in:
``cuda_codes`` (``float``/``half2``, the current kernels) and ``cuda_code`` (``fp32``/``fp16``, older ones).

- :class:`Rectangular` -- sigma'(x) = 1/alpha for |x| < alpha/2, else 0. ``alpha=1`` is the paper's
  ``sign(|x| < 1/2)``; it is also MS-ResNet's and the MLF neuron's window.
- :class:`Constant` -- sigma'(x) = 1 everywhere ("Constant 1").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from spikingjelly.activation_based import surrogate as sj_surrogate
from spikingjelly.activation_based.surrogate import SurrogateFunctionBase, heaviside

from .. import _compat


class _RectangularFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        if x.requires_grad:
            ctx.save_for_backward(x)
            ctx.alpha = alpha
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        window = (x.abs() < ctx.alpha / 2).to(grad_output.dtype)
        return grad_output * window / ctx.alpha, None


class _ConstantFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output, None


def _float_literal(value: float) -> str:
    return f"{float(value)!r}f"


class Rectangular(SurrogateFunctionBase):
    """Heaviside forward; rectangular window gradient 1/alpha on |x| < alpha/2 (paper: alpha = 1)."""

    def __init__(self, alpha: float = 1.0, spiking: bool = True):
        if alpha <= 0:
            raise ValueError(f"Rectangular surrogate needs alpha > 0 (the window width), got {alpha}")
        _compat.init_surrogate(self, SurrogateFunctionBase, float(alpha), spiking)

    @staticmethod
    def spiking_function(x, alpha):
        return _RectangularFn.apply(x, alpha)

    @staticmethod
    def primitive_function(x, alpha):
        return (x / alpha + 0.5).clamp(0.0, 1.0)

    def cuda_codes(self, y: str, x: str, dtype: str) -> str:
        half_width, height = _float_literal(self.alpha / 2), _float_literal(1.0 / self.alpha)
        if dtype == "float":
            return f"{y} = (fabsf({x}) < {half_width}) ? {height} : 0.0f;"
        if dtype == "half2":
            return (f"{y} = __hmul2(__hlt2(__habs2({x}), __float2half2_rn({half_width})), "
                    f"__float2half2_rn({height}));")
        raise NotImplementedError(dtype)

    def cuda_code(self, x: str, y: str, dtype: str = "fp32") -> str:
        if dtype == "fp32":
            return f"const float {y} = (fabsf({x}) < {_float_literal(self.alpha / 2)}) ? {_float_literal(1.0 / self.alpha)} : 0.0f;"
        if dtype == "fp16":
            return f"half2 {y}; " + self.cuda_codes(y, x, "half2")
        raise NotImplementedError(dtype)


class Constant(SurrogateFunctionBase):
    """Heaviside forward; gradient 1 everywhere (the paper's "Constant 1"). ``alpha`` is unused."""

    def __init__(self, alpha: float = 1.0, spiking: bool = True):
        _compat.init_surrogate(self, SurrogateFunctionBase, float(alpha), spiking)

    @staticmethod
    def spiking_function(x, alpha):
        return _ConstantFn.apply(x, alpha)

    @staticmethod
    def primitive_function(x, alpha):
        return x + 0.5

    def cuda_codes(self, y: str, x: str, dtype: str) -> str:
        if dtype == "float":
            return f"{y} = 1.0f;"
        if dtype == "half2":
            return f"{y} = __float2half2_rn(1.0f);"
        raise NotImplementedError(dtype)

    def cuda_code(self, x: str, y: str, dtype: str = "fp32") -> str:
        if dtype == "fp32":
            return f"const float {y} = 1.0f;"
        if dtype == "fp16":
            return f"const half2 {y} = __float2half2_rn(1.0f);"
        raise NotImplementedError(dtype)


# --------------------------------------------------------------------------------------------------
# Derivatives for the fused neuron: sigma'(u; alpha), computed in place in ``u``
# --------------------------------------------------------------------------------------------------

def atan_derivative(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """ATan's derivative, (alpha / 2) / (1 + (pi / 2 * alpha * u)^2), overwriting ``u``."""
    u.mul_(math.pi / 2 * alpha)
    return u.mul_(u).add_(1).reciprocal_().mul_(alpha / 2)


def sigmoid_derivative(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sigmoid's derivative, alpha * s * (1 - s) with s = sigmoid(alpha * u), overwriting ``u``."""
    s = u.mul_(alpha).sigmoid_()
    return s.mul_(1 - s).mul_(alpha)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SurrogateEntry:
    """A named surrogate: its class and, if the fused neuron supports it, its in-place derivative."""

    cls: type
    derivative: Optional[Callable[[torch.Tensor, float], torch.Tensor]] = None


SURROGATES: dict[str, SurrogateEntry] = {}


def register_surrogate(name: str, cls: type, derivative: Callable | None = None) -> None:
    """Make ``surrogate_function=name`` build ``cls()``; ``derivative(u, alpha)`` (may overwrite ``u``)
    lets the fused multi-step neuron run it."""
    key = name.lower()
    if key in SURROGATES:
        raise ValueError(f"surrogate {key!r} is already registered")
    SURROGATES[key] = SurrogateEntry(cls, derivative)


def list_surrogates() -> list[str]:
    """The names ``surrogate_function=`` accepts."""
    return sorted(SURROGATES)


def make_surrogate(spec) -> SurrogateFunctionBase:
    """A surrogate from an instance, a registered name, or None (the paper's ATan, alpha = 2)."""
    if spec is None:
        return sj_surrogate.ATan(alpha=2.0)
    if isinstance(spec, torch.nn.Module):
        return spec
    if isinstance(spec, str) and spec.lower() in SURROGATES:
        return SURROGATES[spec.lower()].cls()
    raise ValueError(f"unknown surrogate_function {spec!r}; give an instance or one of {list_surrogates()}")


def fused_derivative(surrogate_function) -> Callable | None:
    """The in-place derivative of this surrogate instance's exact class, or None if the fused neuron
    cannot run it."""
    for entry in SURROGATES.values():
        if type(surrogate_function) is entry.cls:
            return entry.derivative
    return None


register_surrogate("atan", sj_surrogate.ATan, atan_derivative)
register_surrogate("sigmoid", sj_surrogate.Sigmoid, sigmoid_derivative)
register_surrogate("rectangular", Rectangular)
register_surrogate("rect", Rectangular)
register_surrogate("constant", Constant)
