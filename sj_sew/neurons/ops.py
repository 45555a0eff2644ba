"""sj_sew's multi-step IF/LIF/PLIF neuron as torch custom ops (``torch.ops.sj_sew``), for ``backend='fused'``.

- ``sj_sew::neuron_forward`` -- charge, fire and reset over T steps: (spikes in the input dtype, V[T-1] and, for
  backward, the charged potentials H, both float32);
- ``sj_sew::neuron_backward`` -- BPTT with the surrogate derivative: (dL/dX, dL/dV[-1], dL/d(1/tau)).

On CUDA both launch the Triton kernels of :mod:`sj_sew.neurons.triton_kernels`; on any other device they run
the reference: :mod:`sj_sew.neurons.dynamics` for the forward and :func:`bptt` (also the CPU fused path's
backward) for the backward, so the ops exist, trace and compile on a CPU. Both have
fake (meta) implementations and the forward has its autograd formula registered, so ``torch.compile(
fullgraph=True)`` and CUDA graphs capture a training step through them. :func:`multistep` is the entry point;
:func:`neuron_config` says whether a neuron's settings have a kernel (:data:`KERNEL_NEURONS`,
:data:`KERNEL_SURROGATES`).
"""
from __future__ import annotations

import importlib
from dataclasses import astuple, dataclass
from functools import partial
from typing import Optional

import torch
from spikingjelly.activation_based import neuron as sj_neuron

from . import dynamics
from .surrogate import SURROGATES

#: The neurons the kernels run, in their kernel code order (index = the kernels' KIND).
KERNEL_NEURONS = ("if", "lif", "plif")
#: The surrogates whose derivative the backward kernel computes: name (as in :data:`SURROGATES`) -> kernel code.
KERNEL_SURROGATES = {"atan": 0, "sigmoid": 1}

_NEURON_CLASSES = (("plif", sj_neuron.ParametricLIFNode), ("lif", sj_neuron.LIFNode), ("if", sj_neuron.IFNode))


@dataclass(frozen=True)
class NeuronConfig:
    """The settings the kernels take (``tau`` is LIF's; PLIF's 1/tau is a tensor argument of the ops)."""

    kind: str
    v_threshold: float
    v_reset: Optional[float]
    tau: float = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    surrogate: str = "atan"
    alpha: float = 2.0

    @property
    def kind_code(self) -> int:
        return KERNEL_NEURONS.index(self.kind)

    @property
    def surrogate_code(self) -> int:
        return KERNEL_SURROGATES[self.surrogate]


def neuron_kind(neuron_cls) -> str | None:
    """'if', 'lif' or 'plif' for a SpikingJelly neuron class (or a subclass), else None."""
    if not isinstance(neuron_cls, type):
        return None
    return next((kind for kind, base in _NEURON_CLASSES if issubclass(neuron_cls, base)), None)


def surrogate_name(surrogate_function) -> str | None:
    """The :data:`KERNEL_SURROGATES` name of this surrogate instance's exact class, or None."""
    return next((name for name in KERNEL_SURROGATES if type(surrogate_function) is SURROGATES[name].cls), None)


def refusal(neuron_cls, surrogate_function) -> str | None:
    """Why the kernels cannot run this neuron class with this surrogate (None: they can)."""
    if neuron_kind(neuron_cls) is None:
        return f"{getattr(neuron_cls, '__name__', neuron_cls)} has no sj_sew kernel (IF, LIF and PLIF have)"
    if surrogate_name(surrogate_function) is None:
        return (f"surrogate {type(surrogate_function).__name__} has no sj_sew kernel "
                f"({', '.join(SURROGATES[n].cls.__name__ for n in KERNEL_SURROGATES)} have)")
    return None


def neuron_config(node) -> NeuronConfig | None:
    """The kernel settings of neuron ``node``, or None where the kernels do not cover them (another surrogate,
    a non-spiking surrogate, a tensor threshold, ``store_v_seq``)."""
    kind, name = neuron_kind(type(node)), surrogate_name(node.surrogate_function)
    if kind is None or name is None or not node.surrogate_function.spiking or getattr(node, "store_v_seq", False):
        return None
    if not isinstance(node.v_threshold, float) or not (node.v_reset is None or isinstance(node.v_reset, float)):
        return None
    tau = getattr(node, "tau", 0.0) if kind == "lif" else 0.0
    if not isinstance(tau, float):
        return None
    return NeuronConfig(kind, node.v_threshold, node.v_reset, tau, bool(getattr(node, "decay_input", True)),
                        bool(node.detach_reset), name, float(node.surrogate_function.alpha))


def multistep(x_seq: torch.Tensor, v0: torch.Tensor, inv_tau: torch.Tensor | None, cfg: NeuronConfig
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes [T, ...] in ``x_seq``'s dtype, V[T-1] float32) of the neuron ``cfg`` from V[-1] = ``v0`` (any
    shape that broadcasts to one step); PLIF takes ``inv_tau`` = sigmoid(w), a 0-dim tensor. Differentiable
    in ``x_seq``, ``v0`` and ``inv_tau``."""
    v0 = v0.expand(x_seq.shape[1:])
    if cfg.kind == "plif" and inv_tau is None:
        raise ValueError("PLIF needs inv_tau = sigmoid(w)")
    keep_h = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x_seq, v0, inv_tau))
    spikes, v_last, _ = torch.ops.sj_sew.neuron_forward(x_seq, v0, inv_tau if cfg.kind == "plif" else None,
                                                        *astuple(cfg), keep_h)
    return spikes, v_last


# --- BPTT in torch ----------------------------------------------------------------------------------------
def bptt(charged, grad_spikes, grad_v_last, v_threshold, v_reset, detach_reset, grad_fn, *, tau=None,
         decay_input=True, inv_tau=None, v0=None, grad_x=None):
    """Backpropagation through the T charge-fire-reset steps of an IF (``tau`` and ``inv_tau`` None), LIF
    (``tau``) or PLIF (``inv_tau`` = sigmoid(w), a tensor; it needs V[-1] = ``v0``) neuron from its charged
    potentials H (``charged``, [T, ...]), with the surrogate derivative ``grad_fn`` (in place).

    Returns (dL/dX written into ``grad_x`` or a new tensor, dL/dV[-1] (None when ``grad_v_last`` is None for
    IF), dL/d(inv_tau) (None unless PLIF)). Step by step, so each step's data stays in cache."""
    grad_x = torch.empty_like(charged) if grad_x is None else grad_x
    sg_buf, through = torch.empty_like(charged[0]), torch.empty_like(charged[0])
    carry = grad_v_last  # dL/dV[t], from the later steps
    keep = None if tau is None else 1.0 - 1.0 / tau  # dH[t]/dV[t-1] (1 for IF)
    grad_k = None
    if inv_tau is not None:
        keep, grad_k = 1.0 - inv_tau, charged.new_zeros(())
    for t in range(charged.shape[0] - 1, -1, -1):
        h = charged[t]
        if grad_k is not None:  # dH/d(inv_tau) needs V[t-1]: H[t-1] reset again, or v0; read before H[t] is
            v_prev = v0 if t == 0 else dynamics.fire_and_reset(charged[t - 1], v_threshold, v_reset)[1]
            dh_dk = (h - v_prev) / inv_tau if decay_input else (v_prev if v_reset is None else v_prev - v_reset).neg()
        sg = grad_fn(torch.sub(h, v_threshold, out=sg_buf))
        if carry is not None and v_reset is not None:  # dV/dH = 1 - S (+ (V_reset - H) * sg)
            torch.lt(h, v_threshold, out=through)
            if not detach_reset:
                through.addcmul_(torch.sub(v_reset, h), sg)
        grad_h = torch.mul(grad_spikes[t], sg, out=grad_x[t])
        if carry is not None:
            if v_reset is None:  # dV/dH = 1 - Vth * sg (0 through S if detached)
                if detach_reset:
                    grad_h.add_(carry)
                else:
                    grad_h.addcmul_(carry, torch.mul(sg, -v_threshold, out=through).add_(1))
            else:
                grad_h.addcmul_(carry, through)
        if grad_k is not None:
            grad_k = grad_k + (grad_h * dh_dk).sum()
        carry = grad_h if keep is None else grad_h * keep
    if decay_input and tau is not None:
        grad_x.div_(tau)  # dH[t]/dX[t] = 1/tau
    elif decay_input and inv_tau is not None:
        grad_x.mul_(inv_tau)
    return grad_x, carry, grad_k


# --- the ops ----------------------------------------------------------------------------------------------
@torch.library.custom_op("sj_sew::neuron_forward", mutates_args=())
def neuron_forward(x_seq: torch.Tensor, v0: torch.Tensor, inv_tau: Optional[torch.Tensor], kind: str,
                   v_threshold: float, v_reset: Optional[float], tau: float, decay_input: bool, detach_reset: bool,
                   surrogate: str, alpha: float, keep_h: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference forward (every device but CUDA): :mod:`dynamics` step by step in float32."""
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    charge = _charge(cfg, inv_tau)
    v = v0.to(torch.float32).expand(x_seq.shape[1:])
    spikes = torch.empty_like(x_seq)
    h_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device) if keep_h else v.new_empty((0,))
    for t in range(x_seq.shape[0]):
        h = charge(v, x_seq[t].to(torch.float32))
        s, v = dynamics.fire_and_reset(h, v_threshold, v_reset)
        spikes[t] = s
        if keep_h:
            h_seq[t] = h
    return spikes, v.clone(), h_seq


def _charge(cfg: NeuronConfig, inv_tau):
    if cfg.kind == "if":
        return dynamics.charge_if
    if cfg.kind == "lif":
        return partial(dynamics.charge_lif, tau=cfg.tau, v_reset=cfg.v_reset, decay_input=cfg.decay_input)
    return partial(dynamics.charge_plif, inv_tau=inv_tau.to(torch.float32), v_reset=cfg.v_reset,
                   decay_input=cfg.decay_input)


def _triton_kernels():
    try:
        triton_kernels = importlib.import_module(".triton_kernels", __package__)
    except ImportError as e:
        raise ImportError(f"backend='fused' on CUDA needs the triton package (it comes with CUDA builds of torch on "
                          f"Linux); or use backend='auto' ({e})") from None
    return triton_kernels


@neuron_forward.register_kernel("cuda")
def _forward_cuda(x_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha,
                  keep_h):
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    return _triton_kernels().forward(x_seq, v0, inv_tau, cfg, keep_h)


@neuron_forward.register_fake
def _forward_fake(x_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha,
                  keep_h):
    h_shape = x_seq.shape if keep_h else (0,)
    return (torch.empty_like(x_seq), x_seq.new_empty(x_seq.shape[1:], dtype=torch.float32),
            x_seq.new_empty(h_shape, dtype=torch.float32))


@torch.library.custom_op("sj_sew::neuron_backward", mutates_args=())
def neuron_backward(grad_spikes: torch.Tensor, grad_v_last: Optional[torch.Tensor], h_seq: torch.Tensor,
                    v0: torch.Tensor, inv_tau: Optional[torch.Tensor], kind: str, v_threshold: float,
                    v_reset: Optional[float], tau: float, decay_input: bool, detach_reset: bool, surrogate: str,
                    alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference backward (every device but CUDA): the fused path's BPTT in float32."""
    grad_x, grad_v0, grad_k = bptt(
        h_seq, grad_spikes.to(torch.float32), None if grad_v_last is None else grad_v_last.to(torch.float32),
        v_threshold, v_reset, detach_reset, partial(SURROGATES[surrogate].derivative, alpha=alpha),
        tau=tau if kind == "lif" else None, decay_input=decay_input,
        inv_tau=inv_tau.to(torch.float32) if kind == "plif" else None,
        v0=v0.to(torch.float32).expand(h_seq.shape[1:]))
    grad_v0 = torch.zeros_like(h_seq[0]) if grad_v0 is None else grad_v0.expand(h_seq.shape[1:]).clone()
    grad_k = h_seq.new_zeros(()) if grad_k is None else grad_k
    return grad_x.to(grad_spikes.dtype), grad_v0, grad_k


@neuron_backward.register_kernel("cuda")
def _backward_cuda(grad_spikes, grad_v_last, h_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input,
                   detach_reset, surrogate, alpha):
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    return _triton_kernels().backward(grad_spikes, grad_v_last, h_seq, v0, inv_tau, cfg, grad_spikes.dtype)


@neuron_backward.register_fake
def _backward_fake(grad_spikes, grad_v_last, h_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input,
                   detach_reset, surrogate, alpha):
    return (torch.empty_like(grad_spikes), h_seq.new_empty(h_seq.shape[1:]), h_seq.new_empty(()))


def _setup_context(ctx, inputs, output):
    x_seq, v0, inv_tau, *settings, keep_h = inputs
    ctx.settings = settings
    ctx.save_for_backward(output[2], v0, inv_tau)


def _backward(ctx, grad_spikes, grad_v_last, _grad_h):
    h_seq, v0, inv_tau = ctx.saved_tensors
    if h_seq.shape != grad_spikes.shape:
        raise RuntimeError("sj_sew::neuron_forward kept no potentials (keep_h=False): no backward through it")
    grad_x, grad_v0, grad_k = neuron_backward(grad_spikes, grad_v_last, h_seq, v0, inv_tau, *ctx.settings)
    return (grad_x, grad_v0.to(v0.dtype), None if inv_tau is None else grad_k.to(inv_tau.dtype).reshape(inv_tau.shape),
            *([None] * (len(ctx.settings) + 1)))


torch.library.register_autograd("sj_sew::neuron_forward", _backward, setup_context=_setup_context)
