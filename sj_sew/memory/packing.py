"""Compact, exact storage of what autograd saves for backward: 0/1 spikes as packed bits, small non-negative
integers as uint8, integer indices in the narrowest integer type; any other value is kept as it is, so
gradients are bit-equal.

- :func:`pack` / :func:`unpack` -- one tensor to its smallest exact form (:class:`Packed`) and back.
- :func:`compact_saved_tensors` -- a context in which autograd stores what it saves through them.
- :func:`set_compact` / :func:`is_compact` -- run a module's forward in that context.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

#: tensors smaller than this are kept as they are (the check would cost more than it saves)
MIN_COMPACT_NUMEL = 4096
_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INTS = (torch.int64, torch.int32, torch.int16)
_BYTE_SPREAD = 0x0102040810204080  # x * this >> 56 gathers the low bit of 8 little-endian bytes into one byte


class Packed:
    """A tensor stored compactly: ``kind`` is ``'bits'`` (0/1, 8 values a byte), ``'u8'`` (integers 0..255)
    or ``'int'`` (an integer tensor in a narrower integer type); :func:`unpack` restores it exactly."""

    __slots__ = ("kind", "data", "shape", "dtype")

    def __init__(self, kind, data, shape, dtype):
        self.kind, self.data, self.shape, self.dtype = kind, data, shape, dtype

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


def _owns_storage(t: torch.Tensor) -> bool:
    """Contiguous, dense and the only user of its whole storage (compacting a view would add memory)."""
    return (t.layout == torch.strided and t.is_contiguous() and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size())


def _to_bits(u: torch.Tensor) -> torch.Tensor:
    flat = u.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    words = flat.view(torch.int64)
    return ((words * _BYTE_SPREAD) >> 56).to(torch.uint8)  # wraps mod 2^64; the top byte is exact


def _from_bits(bits: torch.Tensor, numel: int) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    return ((bits.unsqueeze(1) >> shifts) & 1).reshape(-1)[:numel]


def pack(t):
    """``t`` in its smallest exact form (a :class:`Packed`), or ``t`` itself where no smaller form is exact:
    floats that are not integers in 0..255 (or are -0.0 or NaN), integers out of range, views, small tensors,
    parameters."""
    if (not isinstance(t, torch.Tensor) or t.numel() < MIN_COMPACT_NUMEL or (t.is_leaf and t.requires_grad)
            or not _owns_storage(t)):
        return t
    with torch.no_grad():
        if t.dtype in _FLOATS:
            head = t.view(-1)[:1024]  # most float tensors (potentials, BN inputs) fail here, cheaply
            if not torch.equal(head.to(torch.uint8).to(t.dtype), head):
                return t
            u = t.to(torch.uint8)  # out-of-range or fractional values come back different
            if not torch.equal(u.to(t.dtype), t) or bool(torch.signbit(t).any()):
                return t
            if int(u.max()) <= 1:
                return Packed("bits", _to_bits(u), t.shape, t.dtype)
            return Packed("u8", u, t.shape, t.dtype)
        if t.dtype == torch.bool:
            return Packed("bits", _to_bits(t.view(torch.uint8)), t.shape, t.dtype)
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
        u = _from_bits(p.data, math.prod(p.shape)).view(p.shape)
        return u.view(torch.bool) if p.dtype == torch.bool else u.to(p.dtype)
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
