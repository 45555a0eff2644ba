"""Marks that declare a tensor 0/1 by construction (a neuron's spikes, AND/IAND of spikes, max pooling of
spikes), so that :mod:`sj_sew.memory.packing` stores it as bits without checking a value (no host
synchronisation on CUDA). The lowest layer of the package: neurons, connect functions and memory all use it.
"""
from __future__ import annotations

import torch

_BINARY = "_sj_sew_binary_at_version"  # the attribute mark_binary sets: the tensor's version when marked


def owns_storage(t: torch.Tensor) -> bool:
    """Contiguous, dense and the only user of its whole storage (compacting a view would add memory)."""
    return (t.layout == torch.strided and t.is_contiguous() and t.storage_offset() == 0
            and t.untyped_storage().nbytes() == t.numel() * t.element_size())


def mark_binary(t: torch.Tensor) -> torch.Tensor:
    """Declare that every value of ``t`` is 0 or 1 by construction (e.g. a neuron's spikes) and return ``t``.

    :func:`sj_sew.memory.packing.pack` then stores ``t``, and any view of it with its dtype that spans its whole storage (e.g. the
    flattened input a convolution saves), as packed bits without checking a value: no host synchronisation on
    CUDA. Where ``t`` is itself a view that spans its whole storage (a reshaped kernel output), the tensor it
    views is marked too. The mark lasts while ``t`` is not written in place (it records ``t._version``) and is
    not set where nothing is saved for backward (autograd off, inference tensors) or inside ``torch.compile``'s
    tracing. A promise, not checked: a marked value that is not 0 or 1 is stored as ``value != 0`` and comes
    back as 1 (NaN and any non-zero value) or 0 (0 and -0.0), silently."""
    if (not torch.compiler.is_compiling() and isinstance(t, torch.Tensor) and torch.is_grad_enabled()
            and not t.is_inference()):
        setattr(t, _BINARY, t._version)
        base = t._base
        if base is not None and base.dtype == t.dtype and owns_storage(t):
            setattr(base, _BINARY, base._version)
    return t


def is_marked_binary(t: torch.Tensor) -> bool:
    """Whether ``t`` (which owns its storage) or the tensor it views, with ``t``'s dtype and the whole storage,
    carries :func:`mark_binary`'s mark and has not been written since."""
    for source in (t, t._base):
        mark = getattr(source, _BINARY, None)  # (None for source None)
        if (mark is not None and mark == source._version and source.dtype == t.dtype
                and (source is t or owns_storage(source))):
            return True
    return False
