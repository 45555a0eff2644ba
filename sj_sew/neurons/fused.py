"""Fused multi-step IF and LIF neurons: SpikingJelly's neurons with one autograd function for the whole
T-sequence (identical spikes, equal gradients, faster and lighter than SpikingJelly's torch loop).

:class:`sj_sew.NeuronSpec` builds these by default, so every sj_sew model uses them. They take the fused
path where :func:`fast_path_applies`: on CPU, and on a GPU with SpikingJelly 0.0.0.0.14 and
``backend='torch'``; elsewhere SpikingJelly's own kernels run (CuPy on 0.0.0.0.14, CUDA/Triton on 2.x), except
with ``backend='fused'``: then IF, LIF and PLIF run sj_sew's own kernels on CUDA (:mod:`sj_sew.neurons.ops`), the
kernel route (:func:`kernel_route`; :func:`kernel_route_forced` takes it on every device, for tests).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import partial

import torch
from spikingjelly.activation_based import neuron

from .. import _compat
from . import dynamics, ops
from .ops import bptt
from .surrogate import fused_derivative


class _RecomputeState(threading.local):
    on = False  # inside a checkpointed segment: backward may overwrite the saved potentials
    spikes_unused = False  # a neuron that ends a segment's recomputation: keep no spike sequence


_recomputed = _RecomputeState()


@contextmanager
def saved_tensors_recomputed(spikes_unused: bool = False):
    """Within this context the fused neurons' backward writes its input gradient over the potentials it saved,
    one sequence-sized tensor less at the peak; with ``spikes_unused`` their forward also keeps one step of
    spikes at a time and returns a placeholder (all zeros, no memory) instead of the spike sequence.

    Only for sj_sew.memory's checkpointed segments: their saved tensors are recomputed for every backward pass
    (elsewhere a second backward, ``retain_graph``, would read overwritten potentials), and a segment's
    recomputation is run for its saved tensors alone (``spikes_unused`` is for a neuron that ends it)."""
    before = (_recomputed.on, _recomputed.spikes_unused)
    _recomputed.on, _recomputed.spikes_unused = True, spikes_unused
    try:
        yield
    finally:
        _recomputed.on, _recomputed.spikes_unused = before


class _MultiStepSpike(torch.autograd.Function):
    """Charge-fire-reset over all T steps; saves only the charged potential H.

    Each step is :mod:`sj_sew.neurons.dynamics`' IF charge (``tau is None``) or LIF charge with decay_input,
    fire and hard/soft reset, in place; the same floating-point operations as SpikingJelly, so spikes and states
    are bit-identical. Backward is BPTT with the surrogate derivative, step by step so each step's data
    stays in cache; with ``detach_reset`` the reset passes no gradient through S, as in SpikingJelly.
    """

    @staticmethod
    def forward(ctx, x_seq, v, v_threshold, v_reset, tau, detach_reset, grad_fn):
        needs_grad = any(ctx.needs_input_grad[:2])
        spikes_unused = _recomputed.spikes_unused
        spikes = torch.empty_like(x_seq[:1] if spikes_unused else x_seq)
        charged = torch.empty_like(x_seq) if needs_grad else None
        step = torch.empty_like(x_seq[0])  # H when it need not be kept; one buffer for every step
        v_next = torch.empty_like(x_seq[0])  # V[t], overwritten at each step
        scratch = torch.empty_like(x_seq[0]) if tau is not None else None
        for t in range(x_seq.shape[0]):
            h = dynamics.charge_(charged[t] if needs_grad else step, v, x_seq[t], tau, v_reset, scratch)
            s = dynamics.fire_(spikes[0 if spikes_unused else t], h, v_threshold)
            v = dynamics.reset_(v_next, h, s, v_threshold, v_reset)
        if needs_grad:
            ctx.save_for_backward(charged)
            ctx.params = (v_threshold, v_reset, tau, detach_reset, grad_fn)
            ctx.overwrite_saved = _recomputed.on
        if spikes_unused:
            spikes = x_seq.new_zeros(()).expand(x_seq.shape)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_last):
        (charged,) = ctx.saved_tensors
        v_threshold, v_reset, tau, detach_reset, grad_fn = ctx.params
        # step t reads H[t] before it writes dL/dX[t], so the gradient may take the potentials' place
        grad_x, carry, _ = bptt(charged, grad_spikes, grad_v_last, v_threshold, v_reset, detach_reset, grad_fn,
                                tau=tau, grad_x=charged if ctx.overwrite_saved else None)
        return grad_x, carry, None, None, None, None, None


def settings_covered(node) -> bool:
    """Whether ``node`` is a fused neuron whose settings (surrogate, reset, stored state, LIF decay) the fused
    function covers; whether it then takes the fused path depends on the input (:func:`fast_path_applies`)."""
    if not isinstance(node, _FusedMultiStep) or isinstance(node, neuron.ParametricLIFNode):
        return False  # (PLIF: a learned tau, SpikingJelly's own path on CPU)
    if getattr(node, "store_v_seq", False) or not isinstance(node.v_threshold, float):
        return False
    if fused_derivative(node.surrogate_function) is None or not node.surrogate_function.spiking:
        return False
    if not (node.v_reset is None or isinstance(node.v_reset, float)):
        return False
    return not isinstance(node, neuron.LIFNode) or (node.decay_input and isinstance(node.tau, float))


def fast_path_applies(node, x_seq: torch.Tensor) -> bool:
    """Whether ``node`` runs this input through :class:`_MultiStepSpike` rather than SpikingJelly.

    On CPU whenever the neuron's settings are covered; on a GPU only on the 0.0.0.0.14 line with
    ``backend='torch'`` (with ``'cupy'`` SpikingJelly's CuPy kernel runs; 2.x picks its CUDA/Triton kernel).
    """
    if not settings_covered(node) or not x_seq.is_floating_point():
        return False
    if x_seq.device.type == "cpu":
        return getattr(node, "backend", "torch") == "torch"
    return not _compat.kernel_chosen_by_device() and getattr(node, "backend", None) == "torch"


class _KernelRouteForced(threading.local):
    on = False


_kernel_route_forced = _KernelRouteForced()


@contextmanager
def kernel_route_forced():
    """For tests: within this context the neurons built with ``backend='fused'`` take their kernel route on every
    device, as on CUDA (off CUDA the ops run their reference), and so do the SEW blocks' fused outputs."""
    before = _kernel_route_forced.on
    _kernel_route_forced.on = True
    try:
        yield
    finally:
        _kernel_route_forced.on = before


def kernel_route(node, x_seq: torch.Tensor) -> bool:
    """Whether neuron ``node`` runs ``x_seq`` through sj_sew's kernels (:func:`ops.multistep`): a neuron built for
    ``backend='fused'`` (:attr:`_FusedMultiStep.sj_sew_kernels`) in multi-step mode, on a CUDA input (on any
    device within :func:`kernel_route_forced`)."""
    return (getattr(node, "sj_sew_kernels", False) and node.step_mode == "m"
            and (x_seq.is_cuda or _kernel_route_forced.on))


class _FusedMultiStep:
    """Mixin: the multi-step forward of a SpikingJelly neuron through :class:`_MultiStepSpike` or, on CUDA with
    ``backend='fused'`` (:attr:`sj_sew_kernels`), through sj_sew's Triton kernels (:mod:`sj_sew.neurons.ops`)."""

    #: Set by :class:`~sj_sew.NeuronSpec` for ``backend='fused'``: CUDA inputs run sj_sew's own kernels.
    sj_sew_kernels = False

    def _tau(self):
        return None

    def _inv_tau(self):
        return None

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        if not args and not kwargs and kernel_route(self, x_seq):
            return self._kernel_forward(x_seq)
        if args or kwargs or not fast_path_applies(self, x_seq):
            return super().multi_step_forward(x_seq, *args, **kwargs)
        grad_fn = fused_derivative(self.surrogate_function)
        spikes, self.v = _MultiStepSpike.apply(
            x_seq, self._initial_v(x_seq), self.v_threshold, self.v_reset, self._tau(), self.detach_reset,
            partial(grad_fn, alpha=float(self.surrogate_function.alpha)))
        return spikes

    def _initial_v(self, x_seq):
        v = self.v
        if not isinstance(v, torch.Tensor):
            return torch.full_like(x_seq[0], float(v))
        return v.expand(x_seq.shape[1:]) if v.shape != x_seq.shape[1:] else v

    def _kernel_forward(self, x_seq, *, bn=None, shortcut=None, connect=None):
        """The spikes of ``x_seq`` through :func:`ops.multistep` (the state V[T-1] kept in :attr:`v`, as every
        multi-step call does). With ``bn``, ``shortcut`` and ``connect``, what ops.multistep fuses beside the
        neuron: the output is then O = connect(spikes of bn(x_seq), shortcut), the state that of the spikes."""
        cfg = ops.neuron_config(self)
        if cfg is None:
            raise ValueError(f"backend='fused': sj_sew's kernels do not cover this {type(self).__name__} "
                             f"({ops.refusal(type(self), self.surrogate_function) or 'its settings'}); "
                             "use backend='auto'")
        out, self.v = ops.multistep(x_seq, self._initial_v(x_seq), self._inv_tau(), cfg, bn=bn, shortcut=shortcut,
                                    connect=connect)
        return out


class IFNode(_FusedMultiStep, neuron.IFNode):
    """SpikingJelly's ``IFNode`` with the fused multi-step path (same spikes, same gradients)."""


class LIFNode(_FusedMultiStep, neuron.LIFNode):
    """SpikingJelly's ``LIFNode`` with the fused multi-step path (decay_input=True; otherwise SpikingJelly's)."""

    def _tau(self):
        return self.tau


class ParametricLIFNode(_FusedMultiStep, neuron.ParametricLIFNode):
    """SpikingJelly's ``ParametricLIFNode``, on CUDA with ``backend='fused'`` through sj_sew's kernels (on CPU
    SpikingJelly's own path)."""

    def _inv_tau(self):
        return dynamics.plif_inv_tau(self.w)


#: SpikingJelly neuron class -> its fused subclass.
FUSED_NEURONS = {neuron.IFNode: IFNode, neuron.LIFNode: LIFNode}
#: ... and with ``backend='fused'`` (sj_sew's kernels on CUDA), where PLIF has one too.
KERNEL_NEURONS = {**FUSED_NEURONS, neuron.ParametricLIFNode: ParametricLIFNode}


def fused_neuron_class(cls, kernels: bool = False):
    """The fused subclass of a SpikingJelly neuron class (with ``kernels``: for ``backend='fused'``), or the
    class itself where there is none."""
    return (KERNEL_NEURONS if kernels else FUSED_NEURONS).get(cls, cls)
