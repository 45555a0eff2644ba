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
  network's ``set_grad_checkpointing``); ``budget='speed'|'balanced'|'memory'`` picks a plan.
- :func:`pack` / :func:`unpack` / :func:`compact_saved_tensors` -- store what autograd keeps for backward
  in the smallest exact form (0/1 spikes as packed bits, small non-negative integers as uint8, integer
  indices in the narrowest integer type); any other value is kept as it is, so gradients are bit-equal.
- :func:`time_chunked_backward` -- checkpointing over time: one step's forward and backward in chunks of time
  steps (memory ~ sqrt(T)), for nets whose layers do not mix time steps (:func:`freeze_batchnorm`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import base, functional, neuron as sj_neuron
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from .. import _compat
from ..neurons.fused import fast_path_applies, saved_tensors_recomputed, settings_covered

_MARK = "sj_sew_checkpointed"
_COMPACT = "sj_sew_compact"


# --------------------------------------------------------------------------------------------------
# Compact, exact storage of saved tensors
# --------------------------------------------------------------------------------------------------

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


def _stateful_parts(modules: Sequence[nn.Module]):
    memories = [m for mod in modules for m in mod.modules() if isinstance(m, base.MemoryModule)]
    norms = [m for mod in modules for m in mod.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    return memories, norms


def checkpointed_run(modules: Sequence[nn.Module], x: torch.Tensor, compact: bool = False) -> torch.Tensor:
    """Run ``modules`` in sequence under one non-reentrant checkpoint, recomputed exactly in backward.
    With ``compact``, the input kept for the recomputation is stored by :func:`pack` (exact)."""
    memories, norms = _stateful_parts(modules)
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
        if isinstance(inp, Packed):
            inp = unpack(inp).requires_grad_(needs_grad)
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
        box[0] = pack(x)
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
    autograd saves outside the segments in :func:`pack`'s exact compact form.

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


# --------------------------------------------------------------------------------------------------
# Checkpointing over time (nets whose layers do not mix time steps)
# --------------------------------------------------------------------------------------------------

def _time_mixing_norms(model: nn.Module) -> list[str]:
    """The BatchNorm layers that normalise with batch statistics (training mode, or no running statistics):
    over T x N samples, they mix time steps."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None)]


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Put every BatchNorm of ``model`` in eval mode (running statistics, no updates), e.g. to fine-tune with
    :func:`time_chunked_backward`; returns the model. ``model.train()`` undoes it."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _neuron_state(memories) -> list[dict]:
    """Each stateful module's state, detached (the neurons replace their state tensors, never modify them)."""
    return [{k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in m._memories.items()} for m in memories]


def time_chunked_backward(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss_fn=None,
                          chunk_steps: int | str = "sqrt") -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward of one training step over chunks of time steps: memory grows like sqrt(T), not T.

    For networks whose layers do not mix time steps: every BatchNorm frozen (:func:`freeze_batchnorm`) or none.
    BatchNorm in training mode normalises over all T x N samples and its backward sums over them, so no chunk
    of time could be computed alone; that case raises ValueError. The model's output must be the mean over
    time of per-step logits (every sj_sew network's is).

    A first pass without autograd runs the chunks in order and keeps the neuron state at each chunk's start;
    the loss is taken on the mean logits; then each chunk, the last first, is run again from its saved state
    and back-propagated with the loss gradient of its steps and, at its end, the gradient of the neuron state
    that the later chunk handed back (exact backpropagation through time). Gradients accumulate into ``.grad``
    as ``loss.backward()`` would, equal to the whole-sequence backward up to float rounding (sums over time
    run chunk by chunk). Neurons are left at rest. Composes with :func:`memory_saving` (checkpointing over
    depth inside each chunk).

    Args:
        x: ``[T, N, ...]`` sequence, or ``[N, C, H, W]`` static images (repeated over ``model.T`` steps).
        target: what ``loss_fn`` takes with the logits (class indices for the default cross-entropy).
        loss_fn: ``loss_fn(logits, target)`` -> scalar; default ``torch.nn.functional.cross_entropy``.
        chunk_steps: steps per chunk, or ``'sqrt'`` (ceil(sqrt(T)), least memory for a given T).
    Returns:
        ``(loss, logits)``, both detached.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    mixing = _time_mixing_norms(model)
    if mixing:
        raise ValueError(f"time_chunked_backward: {len(mixing)} BatchNorm layer(s) in training mode (first: "
                         f"{mixing[0]!r}) normalise over all T x N samples, so a chunk of time steps cannot be "
                         "computed alone; freeze them (sj_sew.memory.freeze_batchnorm(model)) or checkpoint over "
                         "depth only (memory_saving)")
    built_T = getattr(model, "T", None)
    if x.dim() == 4:
        if not isinstance(built_T, int):
            raise ValueError("time_chunked_backward: static images [N, C, H, W] need a model with an integer .T; "
                             "pass a [T, N, ...] sequence instead")
        x = x.unsqueeze(0).expand(built_T, *x.shape)
    T = x.shape[0]
    if chunk_steps == "sqrt":
        chunk_steps = math.ceil(math.sqrt(T))
    if not isinstance(chunk_steps, int) or chunk_steps < 1:
        raise ValueError(f"chunk_steps must be a positive int or 'sqrt', got {chunk_steps!r}")
    bounds = [(s, min(s + chunk_steps, T)) for s in range(0, T, chunk_steps)]

    if isinstance(built_T, int):  # a net built for T steps checks its input's length: chunks are shorter
        model.T = None
    try:
        return _run_time_chunks(model, x, target, loss_fn, bounds)
    finally:
        if isinstance(built_T, int):
            model.T = built_T


def _run_time_chunks(model, x, target, loss_fn, bounds):
    T = x.shape[0]
    memories, _ = _stateful_parts([model])
    functional.reset_net(model)
    starts, rng = [], []
    total = None
    with torch.no_grad():
        for s, e in bounds:
            starts.append(_neuron_state(memories))
            rng.append(torch.random.get_rng_state())
            part = model(x[s:e]) * (e - s)
            total = part if total is None else total + part
    rng_after = torch.random.get_rng_state()
    logits = (total / T).requires_grad_()
    loss = loss_fn(logits, target)
    (grad_logits,) = torch.autograd.grad(loss, logits)

    carry: dict = {}  # (neuron index, state name) -> gradient of the state at the end of the previous chunk
    try:
        for c in reversed(range(len(bounds))):
            s, e = bounds[c]
            leaves = {}
            for i, (m, state) in enumerate(zip(memories, starts[c])):
                for k, v in state.items():
                    if isinstance(v, torch.Tensor) and v.is_floating_point():
                        v = v.requires_grad_()  # the snapshot itself: it is used once
                        leaves[(i, k)] = v
                    m._memories[k] = v
            starts[c] = None  # the leaves hold what is still needed
            torch.random.set_rng_state(rng[c])
            out = model(x[s:e])
            tensors, grads = [out], [grad_logits * ((e - s) / T)]
            for (i, k), g in carry.items():
                end = memories[i]._memories.get(k)
                if isinstance(end, torch.Tensor) and end.requires_grad:
                    tensors.append(end)
                    grads.append(g)
            torch.autograd.backward(tensors, grads)
            carry = {key: leaf.grad for key, leaf in leaves.items() if leaf.grad is not None}
    finally:
        functional.reset_net(model)
        torch.random.set_rng_state(rng_after)
    return loss.detach(), logits.detach()
