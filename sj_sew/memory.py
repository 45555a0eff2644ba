"""Memory-saving training: exact gradient checkpointing for spiking networks.

A checkpointed run of modules keeps only its input and is recomputed in backward. Spiking neurons carry
state, so the recomputation starts from the neurons' state as it was before the forward pass, and neuron
state and BatchNorm running statistics are left as the forward pass left them: outputs, gradients and
buffers equal the default mode's.

- :class:`SegmentedSequential` -- the container of sj_sew's network stages; with ``segment_size`` set it
  checkpoints runs of that many children.
- :func:`mark_checkpointed` / :func:`run` -- a single module checkpointed alone wherever the network
  calls it through :func:`run` (stem and head neurons, blocks outside stages).
- :func:`memory_saving` -- switch a whole sj_sew network to this mode (it plans segments through the
  network's ``set_grad_checkpointing``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import base, neuron as sj_neuron
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from . import _compat
from .neurons.fused import settings_covered

_MARK = "sj_sew_checkpointed"


def _stateful_parts(modules: Sequence[nn.Module]):
    memories = [m for mod in modules for m in mod.modules() if isinstance(m, base.MemoryModule)]
    norms = [m for mod in modules for m in mod.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    return memories, norms


def checkpointed_run(modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run ``modules`` in sequence under one non-reentrant checkpoint, recomputed exactly in backward."""
    memories, norms = _stateful_parts(modules)
    before = [dict(m._memories) for m in memories]
    calls = []

    def sequence(inp):
        for mod in modules:
            inp = mod(inp)
        return inp

    def recompute(inp):
        if not calls:  # the forward pass
            calls.append(1)
            return sequence(inp)
        after = [dict(m._memories) for m in memories]
        stats = [{k: b.clone() for k, b in bn.named_buffers(recurse=False)} for bn in norms]
        for m, state in zip(memories, before):
            m._memories.update(state)
        try:
            return sequence(inp)
        finally:
            for m, state in zip(memories, after):
                m._memories.update(state)
            for bn, saved in zip(norms, stats):
                for k, b in bn.named_buffers(recurse=False):
                    b.copy_(saved[k])

    with set_checkpoint_early_stop(_early_stop_safe(memories)):
        return checkpoint(recompute, x, use_reentrant=False)


def _early_stop_safe(memories) -> bool:
    """Early stop ends a recomputation (and frees its tail) by raising inside autograd; TorchScript code in the
    segment (SpikingJelly 0.0.0.0.14's own neuron steps, e.g. PLIF's reset) turns that into an opaque
    RuntimeError. Safe where every SpikingJelly neuron of the segment runs sj_sew's fused step instead."""
    if not _compat.neurons_use_torchscript():
        return True
    return all(settings_covered(m) for m in memories if isinstance(m, sj_neuron.BaseNode))


def mark_checkpointed(module: nn.Module, enabled: bool = True) -> None:
    """Have :func:`run` checkpoint ``module`` alone (while autograd records)."""
    setattr(module, _MARK, bool(enabled))


def is_checkpointed(module: nn.Module) -> bool:
    return getattr(module, _MARK, False)


def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, checkpointed alone if it was marked and autograd is recording."""
    if is_checkpointed(module) and torch.is_grad_enabled():
        return checkpointed_run([module], x)
    return module(x)


class SegmentedSequential(nn.Sequential):
    """``nn.Sequential`` (same state-dict keys) that checkpoints runs of ``segment_size`` consecutive
    children while autograd records, and otherwise calls each child through :func:`run`."""

    segment_size: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        children = list(self)
        if self.segment_size and torch.is_grad_enabled():
            for i in range(0, len(children), self.segment_size):
                x = checkpointed_run(children[i: i + self.segment_size], x)
            return x
        for child in children:
            x = run(child, x)
        return x

    def extra_repr(self) -> str:
        return f"segment_size={self.segment_size}" if self.segment_size else ""


def memory_saving(model: nn.Module, blocks_per_segment: int | str = "sqrt",
                  checkpoint_last_stage: bool = False) -> nn.Module:
    """Train an sj_sew network with exact gradient checkpointing (in place; returns the model).

    Every stage is split into segments of ``blocks_per_segment`` blocks (``'sqrt'``: ceil(sqrt(blocks in
    the stage)), so stored activations grow like sqrt(depth)); the last stage is left alone unless
    ``checkpoint_last_stage`` (it costs as much to recompute as any other but holds the smallest
    activations). Blocks outside stages and the stem's and head's neurons are checkpointed alone.
    Outputs and gradients equal the default mode's; parameters, buffers and the state dict are unchanged.
    Without autograd (eval, ``torch.no_grad``) the model runs as before. Works for every family.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"memory_saving takes an nn.Module, got {type(model).__name__}")
    if not hasattr(model, "set_grad_checkpointing"):
        raise ValueError(f"{type(model).__name__} has no sj_sew residual blocks to checkpoint: memory_saving "
                         "works on sj_sew networks (sj_sew.create_model, NotationNet, ...)")
    model.set_grad_checkpointing(True, blocks_per_segment=blocks_per_segment,
                                 checkpoint_last_stage=checkpoint_last_stage)
    return model
