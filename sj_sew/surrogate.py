"""Surrogate gradients the SEW paper uses beyond SpikingJelly's set (Appendix A.5, Table 9).

Both follow SpikingJelly's ``SurrogateFunctionBase`` protocol (``spiking_function``,
``primitive_function``) and carry the CUDA snippets its CuPy backend (0.0.0.0.14) compiles in:
``cuda_codes`` (``float``/``half2``, the current kernels) and ``cuda_code`` (``fp32``/``fp16``, older ones).

- :class:`Rectangular` -- sigma'(x) = 1/alpha for |x| < alpha/2, else 0. ``alpha=1`` is the paper's
  ``sign(|x| < 1/2)``; it is also MS-ResNet's and the MLF neuron's window.
- :class:`Constant` -- sigma'(x) = 1 everywhere ("Constant 1").
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based.surrogate import SurrogateFunctionBase, heaviside

from . import _compat


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
