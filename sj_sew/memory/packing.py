"""Compact, exact storage of what autograd saves for backward: 0/1 spikes as packed bits, small non-negative
integers as uint8, integer indices in the narrowest integer type; any other value is kept as it is, so
gradients are bit-equal.

- :func:`pack` / :func:`unpack` -- one tensor to its smallest exact form (:class:`Packed`) and back.
- :func:`mark_binary` -- declare a tensor 0/1 by construction (sj_sew's neurons mark their spikes): :func:`pack`
  then packs it to bits without looking at its values, one kernel on CUDA (:mod:`.triton_pack`).
- :func:`compact_saved_tensors` -- a context in which autograd stores what it saves through them.
- :func:`set_compact` / :func:`is_compact` -- run a module's forward in that context.

Host synchronisation on CUDA: packing a marked tensor (or a bool one) and every unpack never synchronise, so
they run inside CUDA-graph capture. An unmarked float or integer tensor is checked value by value, which
synchronises once or twice per saved tensor; during CUDA-graph capture, where that is not allowed, such a tensor
is kept as it is (exact, not compact).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..binary_marks import is_marked_binary as _marked_binary, mark_binary, owns_storage as _owns_storage  # noqa: F401
from .triton_pack import pack_bits, unpack_bits

#: tensors smaller than this are kept as they are (the check would cost more than it saves)
MIN_COMPACT_NUMEL = 4096
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INTS = (torch.int64, torch.int32, torch.int16)


class Packed:
    """A tensor stored compactly: ``kind`` is ``'bits'`` (0/1, 8 values a byte), ``'u8'`` (integers 0..255)
    or ``'int'`` (an integer tensor in a narrower integer type); :func:`unpack` restores it exactly."""

    __slots__ = ("kind", "data", "shape", "dtype")

    def __init__(self, kind, data, shape, dtype):
        self.kind, self.data, self.shape, self.dtype = kind, data, shape, dtype

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


def pack(t):
    """``t`` in its smallest exact form (a :class:`Packed`), or ``t`` itself where no smaller form is exact:
    floats that are not integers in 0..255 (or are -0.0 or NaN), integers out of range, views, small tensors,
    parameters. A tensor marked by :func:`mark_binary` is packed to bits unchecked; during CUDA-graph capture an
    unmarked float or integer tensor is kept (its check would synchronise)."""
    if (not isinstance(t, torch.Tensor) or t.numel() < MIN_COMPACT_NUMEL or (t.is_leaf and t.requires_grad)
            or not _owns_storage(t)):
        return t
    with torch.no_grad():
        if t.dtype == torch.bool or _marked_binary(t):
            return Packed("bits", pack_bits(t), t.shape, t.dtype)
        if t.is_cuda and torch.cuda.is_current_stream_capturing():
            return t
        if t.dtype in _FLOATS:
            head = t.view(-1)[:1024]  # most float tensors (potentials, BN inputs) fail here, cheaply
            if not torch.equal(head.to(torch.uint8).to(t.dtype), head):
                return t
            u = t.to(torch.uint8)  # out-of-range or fractional values come back different
            if not torch.equal(u.to(t.dtype), t) or bool(torch.signbit(t).any()):
                return t
            if int(u.max()) <= 1:
                return Packed("bits", pack_bits(u), t.shape, t.dtype)
            return Packed("u8", u, t.shape, t.dtype)
        if t.dtype in _INTS:
            lo, hi = (int(v) for v in torch.aminmax(t))
            for narrow in (torch.uint8, torch.int8, torch.int16, torch.int32):
                info = torch.iinfo(narrow)
                if narrow.itemsize < t.element_size() and info.min <= lo and hi <= info.max:
                    return Packed("int", t.to(narrow), t.shape, t.dtype)
    return t


def unpack(p):
    """The tensor :func:`pack` stored (a new tensor with the same values, dtype and shape)."""
    if not isinstance(p, Packed):
        return p
    if p.kind == "bits":
        return unpack_bits(p.data, math.prod(p.shape), p.dtype).view(p.shape)
    return p.data.to(p.dtype)


def compact_saved_tensors():
    """Context manager: autograd keeps what it saves for backward in :func:`pack`'s compact form (exact)."""
    return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


class _CompactScope:
    """Forward pre-/post-hooks that run a module's forward under :func:`compact_saved_tensors`."""

    def __init__(self):
        self._open = []

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._open = []

    def enter(self, module, args):
        scope = compact_saved_tensors() if torch.is_grad_enabled() else None
        if scope is not None:
            scope.__enter__()
        self._open.append(scope)

    def exit(self, module, args, output):
        scope = self._open.pop() if self._open else None
        if scope is not None:
            scope.__exit__(None, None, None)


def set_compact(model: nn.Module, enabled: bool) -> None:
    """Run ``model``'s forward under :func:`compact_saved_tensors` (or stop doing so)."""
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key in [k for k, h in hooks.items() if isinstance(getattr(h, "__self__", None), _CompactScope)]:
            del hooks[key]
            getattr(model, "_forward_hooks_always_called", {}).pop(key, None)
    if enabled:
        scope = _CompactScope()
        model.register_forward_pre_hook(scope.enter)
        model.register_forward_hook(scope.exit, always_call=True)


def is_compact(model: nn.Module) -> bool:
    return any(isinstance(getattr(h, "__self__", None), _CompactScope) for h in model._forward_pre_hooks.values())
