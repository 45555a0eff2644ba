"""Speed and memory: a fused multi-step neuron, a memory-saving training mode, an inference mode.

- :class:`IFNode`, :class:`LIFNode` -- SpikingJelly's neurons with one autograd function for the whole
  T-sequence on CPU (identical spikes, equal gradients; see :func:`fast_path_applies` for when it is
  used). :class:`sj_sew.NeuronSpec` builds these by default, so every sj_sew model uses them.
  On a GPU SpikingJelly's own kernels keep running (CuPy on 0.0.0.0.14, CUDA/Triton on 2.x).
- :func:`memory_saving` -- gradient checkpointing over runs of residual blocks, exact in its gradients:
  the spiking neurons' state and BatchNorm's running statistics are restored around the recomputation.
- :func:`inference_model` -- BatchNorm folded into the convolutions, channels-last max pooling, eval
  mode, ``torch.inference_mode``.
"""
from __future__ import annotations

import copy
import math
from functools import partial

import torch
import torch.nn as nn
from spikingjelly.activation_based import base, functional, neuron, surrogate
from torch.utils.checkpoint import checkpoint

from . import _compat
from .fuse import fused_conv

# --------------------------------------------------------------------------------------------------
# Fused multi-step neuron
# --------------------------------------------------------------------------------------------------


def _atan_grad(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """ATan's derivative, (alpha / 2) / (1 + (pi / 2 * alpha * u)^2), overwriting ``u``."""
    u.mul_(math.pi / 2 * alpha)
    return u.mul_(u).add_(1).reciprocal_().mul_(alpha / 2)


def _sigmoid_grad(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sigmoid's derivative, alpha * s * (1 - s) with s = sigmoid(alpha * u), overwriting ``u``."""
    s = u.mul_(alpha).sigmoid_()
    return s.mul_(1 - s).mul_(alpha)


#: SpikingJelly surrogate class -> its derivative sigma'(u; alpha) (may overwrite u). Only these take
#: the fused path.
SURROGATE_GRADS = {surrogate.ATan: _atan_grad, surrogate.Sigmoid: _sigmoid_grad}


class _MultiStepSpike(torch.autograd.Function):
    """Charge-fire-reset over all T steps; saves only the charged potential H.

    Charge ``H[t] = V[t-1] + X[t]`` (IF, ``tau is None``) or ``V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau``
    (LIF with decay_input); fire ``S = H >= Vth``; reset ``V = V_reset`` (hard) or ``H - Vth`` (soft).
    Every step is computed with the same floating-point operations as SpikingJelly, so spikes and states
    are bit-identical. Backward is BPTT with the surrogate derivative, step by step so each step's data
    stays in cache; with ``detach_reset`` the reset passes no gradient through S, as in SpikingJelly.
    """

    @staticmethod
    def forward(ctx, x_seq, v, v_threshold, v_reset, tau, detach_reset, grad_fn):
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes = torch.empty_like(x_seq)
        charged = torch.empty_like(x_seq) if needs_grad else None
        step = torch.empty_like(x_seq[0])  # H when it need not be kept; one buffer for every step
        v_next = torch.empty_like(x_seq[0])  # V[t], overwritten at each step
        scratch = torch.empty_like(x_seq[0]) if tau is not None else None
        for t in range(x_seq.shape[0]):
            h = charged[t] if needs_grad else step
            if tau is None:
                torch.add(v, x_seq[t], out=h)
            else:  # the same operations, in the same order, as SpikingJelly's LIF charge
                torch.sub(v, 0.0 if v_reset is None else v_reset, out=scratch)
                torch.sub(x_seq[t], scratch, out=scratch).div_(tau)
                torch.add(v, scratch, out=h)
            s = torch.ge(h, v_threshold, out=spikes[t])
            if v_reset is None:
                v = torch.sub(h, s, alpha=v_threshold, out=v_next)  # H - Vth * S, exact for S in {0, 1}
            elif v_reset == 0.0:
                v = torch.addcmul(h, h, s, value=-1.0, out=v_next)  # H - H * S: exactly 0 or H
            else:
                v = v_next.copy_(h).masked_fill_(s.bool(), v_reset)
        if needs_grad:
            ctx.save_for_backward(charged)
            ctx.params = (v_threshold, v_reset, tau, detach_reset, grad_fn)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_last):
        (charged,) = ctx.saved_tensors
        v_threshold, v_reset, tau, detach_reset, grad_fn = ctx.params
        grad_x = torch.empty_like(charged)
        sg_buf, through = torch.empty_like(charged[0]), torch.empty_like(charged[0])
        carry = grad_v_last  # dL/dV[t], from the later steps
        keep = None if tau is None else 1.0 - 1.0 / tau  # dH[t]/dV[t-1] (1 for IF)
        for t in range(charged.shape[0] - 1, -1, -1):
            h = charged[t]
            sg = grad_fn(torch.sub(h, v_threshold, out=sg_buf))
            grad_h = torch.mul(grad_spikes[t], sg, out=grad_x[t])
            if carry is not None:
                if v_reset is None:  # dV/dH = 1 - Vth * sg (0 through S if detached)
                    if detach_reset:
                        grad_h.add_(carry)
                    else:
                        grad_h.addcmul_(carry, torch.mul(sg, -v_threshold, out=through).add_(1))
                else:  # dV/dH = 1 - S (+ (V_reset - H) * sg)
                    torch.lt(h, v_threshold, out=through)
                    if not detach_reset:
                        through.addcmul_(torch.sub(v_reset, h), sg)
                    grad_h.addcmul_(carry, through)
            carry = grad_h if keep is None else grad_h * keep
        if tau is not None:
            grad_x.div_(tau)  # dH[t]/dX[t] = 1/tau
        return grad_x, carry, None, None, None, None, None


def fast_path_applies(node, x_seq: torch.Tensor) -> bool:
    """Whether ``node`` runs this input through :class:`_MultiStepSpike` rather than SpikingJelly.

    On CPU whenever the neuron's settings are covered; on a GPU only on the 0.0.0.0.14 line with
    ``backend='torch'`` (with ``'cupy'`` SpikingJelly's CuPy kernel runs; 2.x picks its CUDA/Triton kernel).
    """
    if getattr(node, "store_v_seq", False) or not isinstance(node.v_threshold, float):
        return False
    if type(node.surrogate_function) not in SURROGATE_GRADS or not node.surrogate_function.spiking:
        return False
    if not (node.v_reset is None or isinstance(node.v_reset, float)):
        return False
    if isinstance(node, neuron.LIFNode) and not (node.decay_input and isinstance(node.tau, float)):
        return False
    if not x_seq.is_floating_point():
        return False
    if x_seq.device.type == "cpu":
        return getattr(node, "backend", "torch") == "torch"
    return not _compat.SJ2 and getattr(node, "backend", None) == "torch"


class _FusedMultiStep:
    """Mixin: the multi-step forward of a SpikingJelly neuron through :class:`_MultiStepSpike`."""

    def _tau(self):
        return None

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if args or kwargs or not fast_path_applies(self, x_seq):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        v = self.v
        if not isinstance(v, torch.Tensor):
            v = torch.full_like(x_seq[0], float(v))
        elif v.shape != x_seq.shape[1:]:
            v = v.expand(x_seq.shape[1:])
        grad_fn = SURROGATE_GRADS[type(self.surrogate_function)]
        spikes, self.v = _MultiStepSpike.apply(
            x_seq, v, self.v_threshold, self.v_reset, self._tau(), self.detach_reset,
            partial(grad_fn, alpha=float(self.surrogate_function.alpha)))
        return spikes


class IFNode(_FusedMultiStep, neuron.IFNode):
    """SpikingJelly's ``IFNode`` with the fused multi-step path (same spikes, same gradients)."""


class LIFNode(_FusedMultiStep, neuron.LIFNode):
    """SpikingJelly's ``LIFNode`` with the fused multi-step path (decay_input=True; otherwise SpikingJelly's)."""

    def _tau(self):
        return self.tau


#: SpikingJelly neuron class -> its fused subclass.
FUSED_NEURONS = {neuron.IFNode: IFNode, neuron.LIFNode: LIFNode}


def fused_neuron_class(cls):
    """The fused subclass of a SpikingJelly neuron class, or the class itself where there is none."""
    return FUSED_NEURONS.get(cls, cls)


# --------------------------------------------------------------------------------------------------
# Memory-saving training
# --------------------------------------------------------------------------------------------------


def _stateful_parts(modules):
    memories = [m for mod in modules for m in mod.modules() if isinstance(m, base.MemoryModule)]
    norms = [m for mod in modules for m in mod.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    return memories, norms


def _checkpointed_run(modules, x):
    """Run ``modules`` in sequence under one non-reentrant checkpoint, recomputed exactly in backward.

    The recomputation starts from the neurons' state as it was before the forward pass, and leaves
    neuron state and BatchNorm running statistics as the forward pass left them.
    """
    memories, norms = _stateful_parts(modules)
    before = [dict(m._memories) for m in memories]
    calls = []

    def sequence(inp):
        for mod in modules:
            inp = mod(inp)
        return inp

    def run(inp):
        if not calls:  # the forward pass
            calls.append(1)
            return sequence(inp)
        after = [dict(m._memories) for m in memories]
        stats = [{k: b.clone() for k, b in bn.named_buffers(recurse=False)} for bn in norms]
        for m, state in zip(memories, before):
            m._memories.update(state)
        try:  # checkpoint may stop the recomputation early by raising: restore in any case
            return sequence(inp)
        finally:
            for m, state in zip(memories, after):
                m._memories.update(state)
            for bn, saved in zip(norms, stats):
                for k, b in bn.named_buffers(recurse=False):
                    b.copy_(saved[k])

    return checkpoint(run, x, use_reentrant=False)


def _segmented_forward(seq: nn.Sequential, blocks_per_segment: int, x):
    children = list(seq)
    if not torch.is_grad_enabled():
        for m in children:
            x = m(x)
        return x
    for i in range(0, len(children), blocks_per_segment):
        x = _checkpointed_run(children[i: i + blocks_per_segment], x)
    return x


def _single_forward(module: nn.Module, x):
    if not torch.is_grad_enabled():
        return type(module).forward(module, x)
    return _checkpointed_run([_Unwrapped(module)], x)


class _Unwrapped:
    """Calls a module's class forward, bypassing the checkpointing forward set on the instance."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        return type(self.module).forward(self.module, x)

    def modules(self):
        return self.module.modules()


def memory_saving(model: nn.Module, blocks_per_segment: int | str = "sqrt",
                  checkpoint_last_stage: bool = False) -> nn.Module:
    """Train ``model`` with gradient checkpointing (in place; returns the model).

    - Every ``nn.Sequential`` made only of residual blocks (a ResNet stage) is split into segments of
      ``blocks_per_segment`` consecutive blocks (``'sqrt'``: ceil(sqrt(blocks in the stage)), so the
      stored activations grow like sqrt(depth)); a segment keeps only its input and is recomputed in
      backward. The last stage is left alone unless ``checkpoint_last_stage``: it costs as many FLOPs
      to recompute as any other stage but holds the smallest activations.
    - Residual blocks outside such stages are checkpointed one by one.
    - Spiking neurons outside both (the stem's) are checkpointed alone: recomputing them is cheap and
      spares their saved membrane potentials.

    Outputs and gradients equal the default mode's; parameters, buffers and the state dict are
    unchanged. Without autograd (eval, ``torch.no_grad``) the model runs as before.
    """
    from .blocks import ResidualBlock

    if not isinstance(model, nn.Module):
        raise TypeError(f"memory_saving takes an nn.Module, got {type(model).__name__}")
    if not (blocks_per_segment == "sqrt" or (isinstance(blocks_per_segment, int) and blocks_per_segment >= 1)):
        raise ValueError(f"blocks_per_segment must be 'sqrt' or a positive int, got {blocks_per_segment!r}")
    stages = [m for m in model.modules()
              if isinstance(m, nn.Sequential) and len(m) and all(isinstance(c, ResidualBlock) for c in m)]
    loose = [m for m in model.modules() if isinstance(m, ResidualBlock) and not any(m in st for st in stages)]
    if not stages and not loose:
        raise ValueError(f"{type(model).__name__} has no sj_sew residual blocks to checkpoint")
    covered = {id(d) for unit in stages + loose for d in unit.modules()}
    for i, stage in enumerate(stages):
        if i == len(stages) - 1 and len(stages) > 1 and not checkpoint_last_stage:
            continue
        k = math.ceil(math.sqrt(len(stage))) if blocks_per_segment == "sqrt" else blocks_per_segment
        stage.forward = partial(_segmented_forward, stage, k)
    for m in loose + [m for m in model.modules() if isinstance(m, base.MemoryModule) and id(m) not in covered]:
        m.forward = partial(_single_forward, m)
    return model


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------

def _fold_children(parent: nn.Module) -> int:
    """Fold each BN into the conv feeding it among ``parent``'s direct children; returns how many."""
    children = dict(parent.named_children())
    names = list(children)
    pairs = list(zip(names, names[1:])) if isinstance(parent, nn.Sequential) else []
    pairs += [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in children]
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = children[conv_name], children[bn_name]
        if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                and bn.running_mean is not None):
            setattr(parent, conv_name, fused_conv(conv, bn))  # Sequential children are named "0", "1", ...
            setattr(parent, bn_name, nn.Identity())
            children[bn_name] = None
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d (``convK``/``bnK`` siblings or
    neighbours in an ``nn.Sequential``) into that conv. Returns the number of folds."""
    return sum(_fold_children(m) for m in list(model.modules()))


class ChannelsLastMaxPool2d(nn.Module):
    """Max pooling computed in channels-last layout (several times faster on CPU), same values; for
    single- or multi-step input, returned in the input's layout. Inference only: with tied maxima its
    gradient could pick another argmax than the default kernel."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        if pool.return_indices:
            raise ValueError("ChannelsLastMaxPool2d does not return indices")
        self.args = dict(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding,
                         dilation=pool.dilation, ceil_mode=pool.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (4, 5):
            return nn.functional.max_pool2d(x, **self.args)
        frames = x.flatten(0, 1) if x.dim() == 5 else x
        y = nn.functional.max_pool2d(frames.contiguous(memory_format=torch.channels_last), **self.args)
        y = y.contiguous()
        return y.unflatten(0, x.shape[:2]) if x.dim() == 5 else y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.args.items())


def _swap_max_pools(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d) and not child.return_indices:
                setattr(parent, name, ChannelsLastMaxPool2d(child))


def _inference_forward(model: nn.Module, forward, x):
    with torch.inference_mode():
        functional.reset_net(model)
        out = forward(model, x)
        functional.reset_net(model)
    return out


def inference_model(model: nn.Module) -> nn.Module:
    """A deployment copy of ``model``: BatchNorm folded into the convolutions, max pooling in channels-last
    layout (:class:`ChannelsLastMaxPool2d`), eval mode, no parameter gradients, and a forward that runs under ``torch.inference_mode`` from rest (neurons reset before and
    after each call). Predictions equal ``model.eval()``'s; the logits agree to float rounding."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"inference_model takes an nn.Module, got {type(model).__name__}")
    functional.reset_net(model)  # neuron states from a past forward pass cannot (and need not) be copied
    deployed = copy.deepcopy(model).eval()
    for m in deployed.modules():
        if "forward" in vars(m):  # drop a memory_saving wrapper: it has no use without autograd
            del m.forward
    fold_batchnorm(deployed)
    _swap_max_pools(deployed)
    deployed.requires_grad_(False)
    _compat.reset_cache_invalidate(deployed)
    deployed.forward = partial(_inference_forward, deployed, type(deployed).forward)
    return deployed
