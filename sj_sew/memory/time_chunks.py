"""Checkpointing over time, for nets whose layers do not mix time steps: :func:`time_chunked_backward` runs one
training step's forward and backward in chunks of time steps (memory ~ sqrt(T)); :func:`freeze_batchnorm` makes
a net's BatchNorm layers step-local."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

from .checkpointing import stateful_parts


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
    run chunk by chunk). Neurons are left at rest. Composes with :func:`~sj_sew.memory.memory_saving` (checkpointing over
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
    memories, _ = stateful_parts([model])
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
