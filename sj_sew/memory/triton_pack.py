"""Packed bits: 0/1 tensors stored 8 values a byte (bit i of byte j is element 8j + i), for :mod:`.packing`.

- :func:`pack_bits` -- a tensor to its bits, ``t != 0`` per element (float32, bfloat16, float16, bool, uint8);
- :func:`unpack_bits` -- the bits back to a 0/1 tensor of any of those dtypes.

On CUDA both are one Triton kernel each: one pass over the tensor, no host synchronisation, so they run inside
CUDA-graph capture. Elsewhere (CPU tensors, or no triton package) they run the torch reference
(:func:`_to_bits` / :func:`_from_bits`), which gives the same bytes. ``kernel=True`` runs the Triton kernels on
CPU tensors too, in Triton's interpreter (how the tests check the kernels against the reference without a GPU);
the launch is :mod:`sj_sew.neurons.triton_kernels`' (compiled for CUDA, interpreted for CPU).
"""
from __future__ import annotations

import importlib

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

#: bytes each kernel program writes or reads (8 elements each)
BYTES_PER_PROGRAM = 512
_BYTE_SPREAD = 0x0102040810204080  # x * this >> 56 gathers the low bit of 8 little-endian bytes into one byte


# --- the torch reference ----------------------------------------------------------------------------------
def _to_bits(u: torch.Tensor) -> torch.Tensor:
    """Packed bits of a uint8 (or bool) tensor of 0s and 1s."""
    flat = u.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    words = flat.view(torch.int64)
    return ((words * _BYTE_SPREAD) >> 56).to(torch.uint8)  # wraps mod 2^64; the top byte is exact


def _from_bits(bits: torch.Tensor, numel: int) -> torch.Tensor:
    """The first ``numel`` bits of ``bits`` as a uint8 tensor of 0s and 1s."""
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    return ((bits.unsqueeze(1) >> shifts) & 1).reshape(-1)[:numel]


# --- the kernels (plain functions: compiled or interpreted by triton_kernels' launcher) ----------------------
if triton is not None:
    @triton.jit
    def _bit_or(a, b):
        return a | b


def _pack_body(t_ptr, bits_ptr, numel, n_bytes, BYTES: tl.constexpr):
    byte = tl.program_id(0).to(tl.int64) * BYTES + tl.arange(0, BYTES)
    lane = tl.arange(0, 8)
    at = byte[:, None] * 8 + lane[None, :]  # [BYTES, 8]: a contiguous tile, element 8j + i is bit i of byte j
    x = tl.load(t_ptr + at, mask=at < numel, other=0)
    word = tl.reduce(tl.where(x != 0, 1, 0) << lane[None, :], 1, _bit_or)
    tl.store(bits_ptr + byte, word.to(tl.uint8), mask=byte < n_bytes)


def _unpack_body(bits_ptr, out_ptr, numel, n_bytes, BYTES: tl.constexpr):
    byte = tl.program_id(0).to(tl.int64) * BYTES + tl.arange(0, BYTES)
    lane = tl.arange(0, 8)
    word = tl.load(bits_ptr + byte, mask=byte < n_bytes, other=0).to(tl.int32)
    at = byte[:, None] * 8 + lane[None, :]
    value = tl.where(((word[:, None] >> lane[None, :]) & 1) != 0, 1.0, 0.0)  # float32: int -> bf16 fails interpreted
    tl.store(out_ptr + at, value.to(out_ptr.dtype.element_ty), mask=at < numel)


def _launcher():
    """triton_kernels' launcher, or None without the triton package."""
    if tl is None:
        return None
    try:
        return importlib.import_module("sj_sew.neurons.triton_kernels")._launch
    except ImportError:
        return None


def _use_kernel(device: torch.device, kernel: bool | None) -> bool:
    if kernel is None:
        return device.type == "cuda" and _launcher() is not None
    if kernel and _launcher() is None:
        raise ImportError("the packed-bit kernels need the triton package")
    return kernel


def pack_bits(t: torch.Tensor, kernel: bool | None = None) -> torch.Tensor:
    """``t != 0`` packed 8 elements a byte (uint8, ``ceil(numel / 8)`` bytes; bit i of byte j is element 8j + i
    of ``t`` flattened; the last byte's unused bits 0). ``kernel``: None runs the Triton kernel on CUDA tensors
    and the torch reference elsewhere; True the kernel (interpreted on CPU tensors); False the reference."""
    if not _use_kernel(t.device, kernel):
        return _to_bits(t if t.dtype == torch.bool else t != 0)
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    flat = t.reshape(-1)  # (a view where t is contiguous)
    numel = flat.numel()
    bits = torch.empty((numel + 7) // 8, dtype=torch.uint8, device=t.device)
    if bits.numel():
        _launcher()(_pack_body, t.device, (_programs(bits.numel()),), flat, bits, numel, bits.numel(),
                    BYTES=BYTES_PER_PROGRAM)
    return bits


def unpack_bits(bits: torch.Tensor, numel: int, dtype: torch.dtype, kernel: bool | None = None) -> torch.Tensor:
    """The first ``numel`` bits of ``bits`` as a flat tensor of 0s and 1s in ``dtype`` (the inverse of
    :func:`pack_bits` for a 0/1 tensor); ``kernel`` as there."""
    if not _use_kernel(bits.device, kernel):
        u = _from_bits(bits, numel)
        return u.view(torch.bool) if dtype == torch.bool else u.to(dtype)
    stored = torch.uint8 if dtype == torch.bool else dtype
    out = torch.empty(numel, dtype=stored, device=bits.device)
    if numel:
        n_bytes = (numel + 7) // 8
        _launcher()(_unpack_body, bits.device, (_programs(n_bytes),), bits, out, numel, n_bytes,
                    BYTES=BYTES_PER_PROGRAM)
    return out.view(torch.bool) if dtype == torch.bool else out


def _programs(n_bytes: int) -> int:
    """Kernel programs for ``n_bytes`` bytes."""
    return -(-n_bytes // BYTES_PER_PROGRAM)
