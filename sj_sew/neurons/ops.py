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

Both ops fuse, optionally, what sits beside the neuron: an eval-mode BatchNorm before it (the charge is
X * scale + shift per channel, :func:`batchnorm_affine`; gradients for X, scale and shift) and the SEW block's
connect function g after it (the output is O = g(A, S) of the spikes A and the shortcut S, :data:`KERNEL_CONNECTS`;
gradients for X and S, A recomputed from the saved potentials).
"""
from __future__ import annotations

import importlib
from dataclasses import astuple, dataclass
from functools import partial
from typing import Optional

import torch
from spikingjelly.activation_based import neuron as sj_neuron

from ..connect import Connect, get_connect
from . import dynamics
from .surrogate import SURROGATES

#: The neurons the kernels run, in their kernel code order (index = the kernels' KIND).
KERNEL_NEURONS = ("if", "lif", "plif")
#: The surrogates whose derivative the backward kernel computes: name (as in :data:`SURROGATES`) -> kernel code.
KERNEL_SURROGATES = {"atan": 0, "sigmoid": 1}
#: The connect functions g(A, S) of :mod:`sj_sew.connect` the kernels apply to the spikes A: name -> kernel code
#: (0: none); the ops' ``connect`` argument is the name ('' for none).
KERNEL_CONNECTS = {"ADD": 1, "AND": 2, "IAND": 3}
#: (dL/dA, dL/dS) of O = g(A, S) from dL/dO, A and S: the reference backward's closed forms of connect.py's g.
_CONNECT_GRADS = {"ADD": lambda g, a, s: (g, g), "AND": lambda g, a, s: (g * s, g * a),
                  "IAND": lambda g, a, s: (-(g * s), g * (1.0 - a))}

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


def multistep(x_seq: torch.Tensor, v0: torch.Tensor, inv_tau: torch.Tensor | None, cfg: NeuronConfig, *,
              bn=None, shortcut: torch.Tensor | None = None, connect: str | Connect | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(spikes [T, ...] in ``x_seq``'s dtype, V[T-1] float32) of the neuron ``cfg`` from V[-1] = ``v0`` (any
    shape that broadcasts to one step); PLIF takes ``inv_tau`` = sigmoid(w), a 0-dim tensor. Differentiable
    in ``x_seq``, ``v0`` and ``inv_tau``.

    Fused beside the neuron, both optional:

    - ``bn``: an eval-mode BatchNorm module, or its ``(scale, shift)`` (:func:`batchnorm_affine`), applied to
      ``x_seq`` [T, N, C, ...] (channel axis 2) before the charge; differentiable in scale and shift (so in the
      module's weight and bias);
    - ``connect`` (a name of :data:`KERNEL_CONNECTS` or its :class:`~sj_sew.connect.Connect`) with ``shortcut``
      (``x_seq``'s shape): the first output is O = g(spikes, shortcut) instead of the spikes, in the dtype
      ``x_seq`` and ``shortcut`` promote to; differentiable in ``shortcut``."""
    v0 = v0.expand(x_seq.shape[1:])
    if cfg.kind == "plif" and inv_tau is None:
        raise ValueError("PLIF needs inv_tau = sigmoid(w)")
    bn_scale, bn_shift = batchnorm_affine(bn) if isinstance(bn, torch.nn.Module) else (bn or (None, None))
    if bn_scale is not None and (x_seq.dim() < 3 or bn_scale.shape != (x_seq.shape[2],)
                                 or bn_shift.shape != bn_scale.shape):
        raise ValueError(f"the BatchNorm's scale and shift must have one value per channel (axis 2 of [T, N, C, "
                         f"...]); got {tuple(bn_scale.shape)} and {tuple(bn_shift.shape)} for {tuple(x_seq.shape)}")
    name = _connect_name(connect, shortcut, x_seq)
    tensors = (x_seq, v0, inv_tau, bn_scale, bn_shift, shortcut)
    keep_h = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    out, v_last, _ = torch.ops.sj_sew.neuron_forward(x_seq, v0, inv_tau if cfg.kind == "plif" else None,
                                                     *astuple(cfg), keep_h, bn_scale, bn_shift,
                                                     shortcut if name else None, name)
    return out, v_last


def _connect_name(connect, shortcut, x_seq) -> str:
    """The :data:`KERNEL_CONNECTS` name of ``connect`` ('' for None), with ``shortcut`` checked against it."""
    if connect is None:
        if shortcut is not None:
            raise ValueError("a shortcut without a connect function: give connect='ADD', 'AND' or 'IAND'")
        return ""
    name = get_connect(connect).name
    if name not in KERNEL_CONNECTS or get_connect(name) is not get_connect(connect):
        raise ValueError(f"connect function {name!r} has no sj_sew kernel ({', '.join(KERNEL_CONNECTS)} have)")
    if shortcut is None or shortcut.shape != x_seq.shape:
        got = None if shortcut is None else tuple(shortcut.shape)
        raise ValueError(f"connect={name!r} needs a shortcut of the input's shape {tuple(x_seq.shape)}, got {got}")
    return name


def batchnorm_affine(bn: torch.nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), float32 [C], of an eval-mode BatchNorm: bn(x) = x * scale + shift per channel, as torch's
    CPU kernel computes it (scale = rsqrt(running_var + eps) * weight, shift = bias - running_mean * scale with
    one rounding). Differentiable in ``bn.weight`` and ``bn.bias``. A BatchNorm in training mode, or one
    without running statistics, normalises with the batch's statistics: it has no fixed affine (ValueError)."""
    if bn.training or bn.running_mean is None:
        mode = "training mode" if bn.training else "eval mode without running statistics"
        raise ValueError(f"{type(bn).__name__} in {mode} normalises with batch statistics: only an eval-mode "
                         "BatchNorm with running statistics fuses into the neuron (call .eval())")
    scale = torch.rsqrt(bn.running_var.to(torch.float32) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(torch.float32)
    bias = bn.bias.to(torch.float64) if bn.bias is not None else 0.0
    shift = (bias - bn.running_mean.to(torch.float64) * scale.to(torch.float64)).to(torch.float32)
    return scale, shift


def batchnorm_apply(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """X * scale + shift in float32, channel axis 1 of ``x``: the BatchNorm prologue of the ops (what the kernels
    compute), a fused multiply-add as torch's CPU BatchNorm computes it (here the product exact in float64, the sum
    rounded to float64 and then float32: the same result but for ties at the second rounding)."""
    view = (-1,) + (1,) * (x.dim() - 2)
    return (x.to(torch.float64) * scale.to(torch.float64).view(view)
            + shift.to(torch.float64).view(view)).to(torch.float32)


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
                   surrogate: str, alpha: float, keep_h: bool, bn_scale: Optional[torch.Tensor] = None,
                   bn_shift: Optional[torch.Tensor] = None, shortcut: Optional[torch.Tensor] = None,
                   connect: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference forward (every device but CUDA): :mod:`dynamics` step by step in float32, after
    :func:`batchnorm_apply` (``bn_scale``/``bn_shift``) and followed by connect.py's g (``connect``, ``shortcut``)."""
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    charge = _charge(cfg, inv_tau)
    g = get_connect(connect).fn if connect else None
    v = v0.to(torch.float32).expand(x_seq.shape[1:])
    out = torch.empty(x_seq.shape, dtype=_out_dtype(x_seq, shortcut, connect), device=x_seq.device)
    h_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device) if keep_h else v.new_empty((0,))
    for t in range(x_seq.shape[0]):
        x = x_seq[t].to(torch.float32)
        h = charge(v, x if bn_scale is None else batchnorm_apply(x, bn_scale, bn_shift))
        s, v = dynamics.fire_and_reset(h, v_threshold, v_reset)
        out[t] = s if g is None else g(s.to(x_seq.dtype), shortcut[t])
        if keep_h:
            h_seq[t] = h
    return out, v.clone(), h_seq


def _out_dtype(x_seq, shortcut, connect) -> torch.dtype:
    return torch.promote_types(x_seq.dtype, shortcut.dtype) if connect else x_seq.dtype


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
                  keep_h, bn_scale=None, bn_shift=None, shortcut=None, connect=""):
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    return _triton_kernels().forward(x_seq, v0, inv_tau, cfg, keep_h, bn_scale, bn_shift, shortcut,
                                     KERNEL_CONNECTS.get(connect, 0))


@neuron_forward.register_fake
def _forward_fake(x_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha,
                  keep_h, bn_scale=None, bn_shift=None, shortcut=None, connect=""):
    h_shape = x_seq.shape if keep_h else (0,)
    return (x_seq.new_empty(x_seq.shape, dtype=_out_dtype(x_seq, shortcut, connect)),
            x_seq.new_empty(x_seq.shape[1:], dtype=torch.float32), x_seq.new_empty(h_shape, dtype=torch.float32))


@torch.library.custom_op("sj_sew::neuron_backward", mutates_args=())
def neuron_backward(grad_out: torch.Tensor, grad_v_last: Optional[torch.Tensor], h_seq: torch.Tensor,
                    v0: torch.Tensor, inv_tau: Optional[torch.Tensor], kind: str, v_threshold: float,
                    v_reset: Optional[float], tau: float, decay_input: bool, detach_reset: bool, surrogate: str,
                    alpha: float, x_dtype: Optional[torch.dtype] = None, x_seq: Optional[torch.Tensor] = None,
                    bn_scale: Optional[torch.Tensor] = None, shortcut: Optional[torch.Tensor] = None,
                    connect: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                torch.Tensor]:
    """The reference backward (every device but CUDA): the fused path's BPTT in float32. Returns (dL/dX in
    ``x_dtype`` (default: ``grad_out``'s), dL/dV[-1], dL/d(1/tau), dL/dscale, dL/dshift, dL/dshortcut), the last
    three empty without ``bn_scale`` (``x_seq``: the forward's input) or ``connect``."""
    grad_a, grad_sc = grad_out.to(torch.float32), h_seq.new_empty((0,))
    if connect:
        spikes = dynamics.fire(h_seq, v_threshold).to(torch.float32)
        grad_a, grad_sc = _CONNECT_GRADS[connect](grad_a, spikes, shortcut.to(torch.float32))
        grad_sc = grad_sc.to(shortcut.dtype, copy=True)
    grad_x, grad_v0, grad_k = bptt(
        h_seq, grad_a, None if grad_v_last is None else grad_v_last.to(torch.float32),
        v_threshold, v_reset, detach_reset, partial(SURROGATES[surrogate].derivative, alpha=alpha),
        tau=tau if kind == "lif" else None, decay_input=decay_input,
        inv_tau=inv_tau.to(torch.float32) if kind == "plif" else None,
        v0=v0.to(torch.float32).expand(h_seq.shape[1:]))
    grad_scale, grad_shift = h_seq.new_empty((0,)), h_seq.new_empty((0,))  # (distinct: no aliased outputs)
    if bn_scale is not None:  # grad_x is dL/dY of Y = X * scale + shift
        dims = (0, 1, *range(3, h_seq.dim()))
        grad_shift, grad_scale = grad_x.sum(dims), (grad_x * x_seq.to(torch.float32)).sum(dims)
        grad_x = grad_x * bn_scale.to(torch.float32).view((-1,) + (1,) * (h_seq.dim() - 3))
    grad_v0 = torch.zeros_like(h_seq[0]) if grad_v0 is None else grad_v0.expand(h_seq.shape[1:]).clone()
    grad_k = h_seq.new_zeros(()) if grad_k is None else grad_k
    return grad_x.to(x_dtype or grad_out.dtype), grad_v0, grad_k, grad_scale, grad_shift, grad_sc


@neuron_backward.register_kernel("cuda")
def _backward_cuda(grad_out, grad_v_last, h_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input,
                   detach_reset, surrogate, alpha, x_dtype=None, x_seq=None, bn_scale=None, shortcut=None,
                   connect=""):
    cfg = NeuronConfig(kind, v_threshold, v_reset, tau, decay_input, detach_reset, surrogate, alpha)
    return _triton_kernels().backward(grad_out, grad_v_last, h_seq, v0, inv_tau, cfg, x_dtype or grad_out.dtype,
                                      x_seq, bn_scale, shortcut, KERNEL_CONNECTS.get(connect, 0))


@neuron_backward.register_fake
def _backward_fake(grad_out, grad_v_last, h_seq, v0, inv_tau, kind, v_threshold, v_reset, tau, decay_input,
                   detach_reset, surrogate, alpha, x_dtype=None, x_seq=None, bn_scale=None, shortcut=None,
                   connect=""):
    channels = (h_seq.shape[2],) if bn_scale is not None else (0,)
    return (h_seq.new_empty(h_seq.shape, dtype=x_dtype or grad_out.dtype), h_seq.new_empty(h_seq.shape[1:]),
            h_seq.new_empty(()), h_seq.new_empty(channels), h_seq.new_empty(channels),
            torch.empty_like(shortcut) if connect else h_seq.new_empty((0,)))


def _setup_context(ctx, inputs, output):
    x_seq, v0, inv_tau, *settings, keep_h, bn_scale, bn_shift, shortcut, connect = inputs
    ctx.settings, ctx.x_dtype = settings, x_seq.dtype
    ctx.shortcut_dtype = shortcut.dtype if connect else None
    # ADD: dL/dA = dL/dS = dL/dO, so its backward is the plain neuron's and the shortcut need not be kept
    ctx.connect = "" if connect == "ADD" else connect
    ctx.save_for_backward(output[2], v0, inv_tau, x_seq if bn_scale is not None else None, bn_scale, bn_shift,
                          shortcut if ctx.connect else None)


def _backward(ctx, grad_out, grad_v_last, _grad_h):
    h_seq, v0, inv_tau, x_seq, bn_scale, bn_shift, shortcut = ctx.saved_tensors
    if h_seq.shape != grad_out.shape:
        raise RuntimeError("sj_sew::neuron_forward kept no potentials (keep_h=False): no backward through it")
    grad_x, grad_v0, grad_k, grad_scale, grad_shift, grad_sc = neuron_backward(
        grad_out, grad_v_last, h_seq, v0, inv_tau, *ctx.settings, ctx.x_dtype, x_seq, bn_scale, shortcut,
        ctx.connect)
    if ctx.shortcut_dtype is not None and not ctx.connect:  # ADD
        grad_sc = grad_out.to(ctx.shortcut_dtype)
    affine = bn_scale is not None
    return (grad_x, grad_v0.to(v0.dtype), None if inv_tau is None else grad_k.to(inv_tau.dtype).reshape(inv_tau.shape),
            *([None] * (len(ctx.settings) + 1)), grad_scale.to(bn_scale.dtype) if affine else None,
            grad_shift.to(bn_shift.dtype) if affine else None, grad_sc if ctx.shortcut_dtype is not None else None,
            None)


torch.library.register_autograd("sj_sew::neuron_forward", _backward, setup_context=_setup_context)
