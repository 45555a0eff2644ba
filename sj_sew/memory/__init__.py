"""Training with less memory, exactly.

- :mod:`.packing` -- :func:`pack` / :func:`unpack` / :func:`compact_saved_tensors`: store what autograd keeps
  for backward in the smallest exact form (0/1 spikes as packed bits, small non-negative integers as uint8,
  integer indices in the narrowest integer type); any other value is kept as it is, so gradients are bit-equal.
  :func:`mark_binary` declares a tensor 0/1 by construction (sj_sew's neurons mark their spikes): packed without a
  value check, by a Triton kernel on CUDA (:mod:`.triton_pack`), with no host sync.
- :mod:`.checkpointing` -- exact gradient checkpointing over depth: :class:`SegmentedSequential`,
  :func:`mark_checkpointed` / :func:`run`, :func:`memory_saving` and its budgets (:data:`BUDGETS`).
- :mod:`.time_chunks` -- checkpointing over time: :func:`time_chunked_backward` runs one step's forward and
  backward in chunks of time steps (memory ~ sqrt(T)), for nets whose layers do not mix time steps
  (:func:`freeze_batchnorm`).
"""
from .checkpointing import (BUDGETS, SegmentedSequential, checkpointed_run, is_checkpointed, mark_checkpointed,
                            memory_saving, plan, run)
from .packing import (MIN_COMPACT_NUMEL, Packed, compact_saved_tensors, is_compact, mark_binary, pack, set_compact,
                      unpack)
from .time_chunks import freeze_batchnorm, time_chunked_backward

__all__ = ["Packed", "pack", "unpack", "mark_binary", "compact_saved_tensors", "set_compact", "is_compact",
           "MIN_COMPACT_NUMEL",
           "SegmentedSequential", "checkpointed_run", "mark_checkpointed", "is_checkpointed", "run",
           "BUDGETS", "plan", "memory_saving", "freeze_batchnorm", "time_chunked_backward"]
