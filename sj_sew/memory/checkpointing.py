"""Exact gradient checkpointing for spiking networks.

A checkpointed run of modules keeps only its input and is recomputed in backward. Spiking neurons carry
state, so the recomputation starts from the neurons' state as it was before the forward pass, and neuron
state and BatchNorm running statistics are left as the forward pass left them: outputs, gradients and
buffers equal the default mode's.

- :class:`SegmentedSequential` -- the container of sj_sew's network stages; with ``segment_size`` set it
  checkpoints runs of that many children.
- :func:`mark_checkpointed` / :func:`run` -- a single module checkpointed alone wherever the network
  calls it through :func:`run` (stem and head neurons, blocks outside stages).
- :func:`memory_saving` -- switch a whole sj_sew network to this mode (it plans segments through the
  network's ``set_grad_checkpointing``); ``budget='speed'|'balanced'|'memory'`` picks a plan.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import base, neuron as sj_neuron
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from .. import _compat
from ..neurons.fused import fast_path_applies, saved_tensors_recomputed, settings_covered
from . import packing

_MARK = "sj_sew_checkpointed"
_COMPACT = "sj_sew_compact"


def stateful_parts(modules: Sequence[nn.Module]):
    """The modules whose state a forward pass of ``modules`` changes: (SpikingJelly memory modules, BatchNorm
    layers that track running statistics)."""
    memories = [m for mod in modules for m in mod.modules() if isinstance(m, base.MemoryModule)]
    norms = [m for mod in modules for m in mod.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    return memories, norms


def checkpointed_run(modules: Sequence[nn.Module], x: torch.Tensor, compact: bool = False) -> torch.Tensor:
    """Run ``modules`` in sequence under one non-reentrant checkpoint, recomputed exactly in backward.
    With ``compact``, the input kept for the recomputation is stored by :func:`~.packing.pack` (exact)."""
    memories, norms = stateful_parts(modules)
    before = [dict(m._memories) for m in memories]
    calls = []
    box = [x]  # the checkpoint holds the box; after the forward pass it holds the packed input
    needs_grad = x.requires_grad

    def sequence(inp, recomputing=False):
        with saved_tensors_recomputed():  # the checkpoint recomputes them for every backward pass
            for mod in modules[:-1]:
                inp = mod(inp)
            last = modules[-1]
            # a recomputation is run for the saved tensors alone: a fused neuron that ends it need not keep spikes
            if recomputing and fast_path_applies(last, inp):
                with saved_tensors_recomputed(spikes_unused=True):
                    return last(inp)
            return last(inp)

    def recompute(held):
        if not calls:  # the forward pass
            calls.append(1)
            return sequence(held[0])
        inp = held[0]
        if isinstance(inp, packing.Packed):
            inp = packing.unpack(inp).requires_grad_(needs_grad)
        after = [dict(m._memories) for m in memories]
        stats = [{k: b.clone() for k, b in bn.named_buffers(recurse=False)} for bn in norms]
        for m, state in zip(memories, before):
            m._memories.update(state)
        try:
            return sequence(inp, recomputing=True)
        finally:
            for m, state in zip(memories, after):
                m._memories.update(state)
            for bn, saved in zip(norms, stats):
                for k, b in bn.named_buffers(recurse=False):
                    b.copy_(saved[k])

    with set_checkpoint_early_stop(_early_stop_safe(memories)):
        out = checkpoint(recompute, box, use_reentrant=False)
    if compact:
        box[0] = packing.pack(x)
    return out


def _early_stop_safe(memories) -> bool:
    """Early stop ends a recomputation (and frees its tail) by raising inside autograd; TorchScript code in the
    segment (SpikingJelly 0.0.0.0.14's own neuron steps, e.g. PLIF's reset) turns that into an opaque
    RuntimeError. Safe where every SpikingJelly neuron of the segment runs sj_sew's fused step instead."""
    if not _compat.neurons_use_torchscript():
        return True
    return all(settings_covered(m) for m in memories if isinstance(m, sj_neuron.BaseNode))


def mark_checkpointed(module: nn.Module, enabled: bool = True, compact: bool = False) -> None:
    """Have :func:`run` checkpoint ``module`` alone (while autograd records), its input packed if ``compact``."""
    setattr(module, _MARK, bool(enabled))
    setattr(module, _COMPACT, bool(enabled and compact))


def is_checkpointed(module: nn.Module) -> bool:
    return getattr(module, _MARK, False)


def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, checkpointed alone if it was marked and autograd is recording."""
    if is_checkpointed(module) and torch.is_grad_enabled():
        return checkpointed_run([module], x, getattr(module, _COMPACT, False))
    return module(x)


class SegmentedSequential(nn.Sequential):
    """``nn.Sequential`` (same state-dict keys) that checkpoints runs of ``segment_size`` consecutive
    children while autograd records, and otherwise calls each child through :func:`run`."""

    segment_size: int | None = None
    compact: bool = False  # store each segment's input packed (exact)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        children = list(self)
        if self.segment_size and torch.is_grad_enabled():
            for i in range(0, len(children), self.segment_size):
                x = checkpointed_run(children[i: i + self.segment_size], x, self.compact)
            return x
        for child in children:
            x = run(child, x)
        return x

    def extra_repr(self) -> str:
        if not self.segment_size:
            return ""
        return f"segment_size={self.segment_size}" + (", compact=True" if self.compact else "")


#: budget -> plan: (blocks per segment, checkpoint the last stage, pack saved tensors and segment inputs).
#: 'speed' recomputes nothing and only packs what autograd saves; 'balanced' checkpoints sqrt(blocks)-block
#: segments in every stage; 'memory' checkpoints every block alone. Peak memory of a checkpointed network
#: is (kept segment inputs) + (one segment's activations) + (gradients); with packed inputs the first term
#: is ~1/32 of float32, so the smallest segments minimise the peak (measured: BENCHMARKS.md, "Memory").
BUDGETS = {
    "speed": (None, False, True),
    "balanced": ("sqrt", True, True),
    "memory": (1, True, True),
}


def plan(budget: str) -> dict:
    """The ``set_grad_checkpointing`` arguments a budget stands for."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {budget!r}")
    segment, last, compact = BUDGETS[budget]
    return {"enable": segment is not None, "blocks_per_segment": segment or "sqrt",
            "checkpoint_last_stage": last, "compact": compact}


def memory_saving(model: nn.Module, blocks_per_segment: int | str = "sqrt",
                  checkpoint_last_stage: bool = False, budget: str | None = None,
                  compact: bool = False) -> nn.Module:
    """Train an sj_sew network with less memory, exactly (in place; returns the model).

    Without ``budget``: exact gradient checkpointing. Every stage is split into segments of
    ``blocks_per_segment`` blocks (``'sqrt'``: ceil(sqrt(blocks in the stage)), so stored activations grow
    like sqrt(depth)); the last stage is left alone unless ``checkpoint_last_stage`` (it costs as much to
    recompute as any other but holds the smallest activations). Blocks outside stages and the stem's and
    head's neurons are checkpointed alone. ``compact=True`` also stores segment inputs and everything
    autograd saves outside the segments in :func:`~.packing.pack`'s exact compact form.

    ``budget`` (``'speed'``, ``'balanced'``, ``'memory'``) picks all of these instead (:data:`BUDGETS`).
    Outputs, gradients (bit for bit), BatchNorm statistics and neuron state equal the default mode's;
    parameters, buffers and the state dict are unchanged. Without autograd (eval, ``torch.no_grad``) the
    model runs as before. Works for every family; ``model.set_grad_checkpointing(False)`` undoes it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"memory_saving takes an nn.Module, got {type(model).__name__}")
    if not hasattr(model, "set_grad_checkpointing"):
        raise ValueError(f"{type(model).__name__} has no sj_sew residual blocks to checkpoint: memory_saving "
                         "works on sj_sew networks (sj_sew.create_model, NotationNet, ...)")
    if budget is not None:
        model.set_grad_checkpointing(**plan(budget))
        return model
    model.set_grad_checkpointing(True, blocks_per_segment=blocks_per_segment,
                                 checkpoint_last_stage=checkpoint_last_stage, compact=compact)
    return model
