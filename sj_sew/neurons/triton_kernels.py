"""sj_sew's multi-step IF/LIF/PLIF neuron kernels in Triton: forward and BPTT backward over a whole sequence.

One program per block of ``BLOCK`` neurons loops over the T steps with the membrane potential in registers
(float32 whatever the input dtype: float32, bfloat16 or float16). The forward evaluates
:mod:`sj_sew.neurons.dynamics`' operations in their order (charge, fire with H >= V_th, hard or soft reset),
so on float32 input its spikes equal the CPU fused path's bit for bit; spikes come out in the input dtype.
The backward is BPTT with the surrogate derivative computed in the kernel (ATan or Sigmoid, the codes of
:data:`sj_sew.neurons.ops.KERNEL_SURROGATES`), ``detach_reset`` and both resets; PLIF's gradient with respect
to 1/tau is reduced per block (one partial sum per program, summed by torch: deterministic).

Two optional fusions, selected by constexpr flags of the same bodies: ``AFFINE``, an eval BatchNorm's apply
before the charge (Y = X * scale + shift per channel, computed as a fused multiply-add in float64 as torch's CPU
BatchNorm does it; the backward gives dL/dX = dL/dY * scale and, per element, dL/dY and dL/dY * X summed over the
T steps, which torch sums per channel: deterministic); ``CONNECT``, the SEW connect function g after the fire
(the kernel writes O = g(A, S) of the spikes A and the shortcut S instead of A; the backward recomputes A from H
as the forward fired and gives dL/dS).

Each kernel is a plain function turned into a compiled Triton kernel for CUDA tensors and into a Triton
interpreter kernel (``triton.runtime.interpreter``, NumPy on the CPU) for CPU tensors, so the same source runs
in the CPU test suite without ``TRITON_INTERPRET=1`` (which, set before triton's import, would make every
kernel of the process an interpreted one). Hence the kernels call Triton builtins only: the library's
``@triton.jit`` helpers (``tl.zeros``, ``tl.sigmoid``, ``tl.sum``) cannot run in an interpreter started this
way. The custom ops of :mod:`sj_sew.neurons.ops` call :func:`forward` and :func:`backward`; models use the ops.
"""
from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl

BLOCK = 256  # neurons per program


@triton.jit
def _add(a, b):
    return a + b


def _forward_body(x_ptr, v0_ptr, k_ptr, bn_scale_ptr, bn_shift_ptr, sc_ptr, s_ptr, v_ptr, h_ptr, numel, steps,
                  inner, channels, tau, v_th, v_rs,
                  KIND: tl.constexpr, HARD: tl.constexpr, DECAY_INPUT: tl.constexpr, KEEP_H: tl.constexpr,
                  AFFINE: tl.constexpr, CONNECT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    k = 0.0
    if KIND == 2:  # PLIF: 1/tau = sigmoid(w), computed by torch
        k = tl.load(k_ptr).to(tl.float32)
    if AFFINE:  # BatchNorm apply: each element's channel's scale and shift
        channel = (offs // inner) % channels
        bn_a = tl.load(bn_scale_ptr + channel, mask=mask, other=0.0).to(tl.float64)
        bn_b = tl.load(bn_shift_ptr + channel, mask=mask, other=0.0).to(tl.float64)
    at = offs  # int64 offsets of step t's elements, advanced step by step (t * numel may pass 2^31)
    for t in range(steps):
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if AFFINE:  # X * scale + shift as a fused multiply-add, as torch's CPU BN: exact product in float64
            x = (x.to(tl.float64) * bn_a + bn_b).to(tl.float32)
        if KIND == 0:
            h = v + x
        else:
            above = v
            if HARD:
                above = v - v_rs
            if DECAY_INPUT:
                if KIND == 1:
                    h = v + tl.math.div_rn(x - above, tau)  # IEEE division, as the CPU's (`/` is approximate)
                else:
                    h = v + (x - above) * k
            else:
                if KIND == 1:
                    h = v - tl.math.div_rn(above, tau) + x
                else:
                    h = v - above * k + x
        fired = h >= v_th
        s = tl.where(fired, 1.0, 0.0)  # (a bool -> bf16 cast fails in the interpreter)
        out = s
        if CONNECT != 0:  # O = g(A, S) in place of the spikes A (codes: ops.KERNEL_CONNECTS)
            shortcut = tl.load(sc_ptr + at, mask=mask, other=0.0).to(tl.float32)
            if CONNECT == 1:  # ADD
                out = s + shortcut
            elif CONNECT == 2:  # AND
                out = s * shortcut
            else:  # IAND
                out = (1.0 - s) * shortcut
        tl.store(s_ptr + at, out.to(s_ptr.dtype.element_ty), mask=mask)
        if KEEP_H:
            tl.store(h_ptr + at, h, mask=mask)
        if HARD:
            v = tl.where(fired, v_rs, h)
        else:
            v = h - s * v_th
        at += numel
    tl.store(v_ptr + offs, v, mask=mask)


def _backward_body(gs_ptr, gv_ptr, h_ptr, v0_ptr, k_ptr, x_ptr, bn_scale_ptr, sc_ptr, gx_ptr, gv0_ptr, gk_ptr,
                   gsc_ptr, g_scale_ptr, g_shift_ptr, numel, steps, last, inner, channels, tau, keep, v_th, v_rs,
                   alpha, sg_scale,
                   KIND: tl.constexpr, HARD: tl.constexpr, DECAY_INPUT: tl.constexpr, DETACH: tl.constexpr,
                   SURROGATE: tl.constexpr, HAS_GV: tl.constexpr, AFFINE: tl.constexpr, CONNECT: tl.constexpr,
                   BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    carry = tl.full([BLOCK], 0.0, tl.float32)  # dL/dV[t]
    if HAS_GV:
        carry = tl.load(gv_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    k = 0.0
    if KIND == 2:
        k = tl.load(k_ptr).to(tl.float32)
        keep = 1.0 - k
    if AFFINE:  # dL/dscale and dL/dshift: each element's sums over the T steps, summed per channel by torch
        bn_a = tl.load(bn_scale_ptr + (offs // inner) % channels, mask=mask, other=0.0).to(tl.float32)
        g_scale = tl.full([BLOCK], 0.0, tl.float32)
        g_shift = tl.full([BLOCK], 0.0, tl.float32)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dk = tl.full([BLOCK], 0.0, tl.float32)
    at = offs + last  # int64 (last = (steps - 1) * numel), stepped back each step
    for i in range(steps):
        t = steps - 1 - i
        h = tl.load(h_ptr + at, mask=mask, other=0.0)
        u = h - v_th
        z = u * sg_scale  # sg_scale: pi / 2 * alpha (ATan), alpha (Sigmoid)
        if SURROGATE == 0:  # ATan: (alpha / 2) / (1 + (pi / 2 * alpha * u)^2)
            sg = (alpha / 2) / (z * z + 1.0)
        else:  # Sigmoid: alpha * s * (1 - s), s = sigmoid(alpha * u)
            z = 1.0 / (1.0 + tl.exp(-z))
            sg = z * (1.0 - z) * alpha
        if HARD:  # dV/dH = 1 - S (+ (V_reset - H) * sg through S)
            through = tl.where(h < v_th, 1.0, 0.0)
            if not DETACH:
                through += (v_rs - h) * sg
        else:  # dV/dH = 1 (- V_th * sg through S)
            through = tl.full([BLOCK], 1.0, tl.float32)
            if not DETACH:
                through = 1.0 - v_th * sg
        grad_a = tl.load(gs_ptr + at, mask=mask, other=0.0).to(tl.float32)  # dL/dS, or dL/dO with a connect g
        if CONNECT != 0:  # O = g(A, S): dL/dS and dL/dA, A recomputed from H as the forward fired
            a = tl.where(h >= v_th, 1.0, 0.0)
            if CONNECT == 1:  # ADD: A + S
                grad_sc = grad_a
            else:
                shortcut = tl.load(sc_ptr + at, mask=mask, other=0.0).to(tl.float32)
                if CONNECT == 2:  # AND: A * S
                    grad_sc = grad_a * a
                    grad_a = grad_a * shortcut
                else:  # IAND: (1 - A) * S
                    grad_sc = grad_a * (1.0 - a)
                    grad_a = -(grad_a * shortcut)
            tl.store(gsc_ptr + at, grad_sc.to(gsc_ptr.dtype.element_ty), mask=mask)
        grad_h = grad_a * sg + carry * through
        if KIND == 0 or not DECAY_INPUT:
            gx = grad_h
        elif KIND == 1:
            gx = tl.math.div_rn(grad_h, tau)
        else:
            gx = grad_h * k
        if AFFINE:  # gx is dL/dY of Y = X * scale + shift
            g_shift += gx
            g_scale += gx * tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
            gx = gx * bn_a
        tl.store(gx_ptr + at, gx.to(gx_ptr.dtype.element_ty), mask=mask)
        if KIND == 2:  # dH/dk from V[t-1]: recomputed from H[t-1] (or V[-1] = v0) as the forward reset it
            h_prev = tl.load(h_ptr + at - numel, mask=mask & (t > 0), other=0.0)
            fired = h_prev >= v_th
            if HARD:
                v_prev = tl.where(fired, v_rs, h_prev)
            else:
                v_prev = h_prev - tl.where(fired, 1.0, 0.0) * v_th
            v_prev = tl.where(t > 0, v_prev, v0)
            if DECAY_INPUT:
                dk += grad_h * (h - v_prev) / k  # = X - (V - V_reset)
            elif HARD:
                dk -= grad_h * (v_prev - v_rs)
            else:
                dk -= grad_h * v_prev
        if KIND == 0:
            carry = grad_h
        else:
            carry = grad_h * keep
        at -= numel
    tl.store(gv0_ptr + offs, carry, mask=mask)
    if KIND == 2:
        tl.store(gk_ptr + pid, tl.reduce(dk, 0, _add))
    if AFFINE:
        tl.store(g_scale_ptr + offs, g_scale, mask=mask)
        tl.store(g_shift_ptr + offs, g_shift, mask=mask)


_VARIANTS: dict = {}


def _kernel(body, device: torch.device):
    """``body`` as a Triton kernel for ``device``: compiled for CUDA, interpreted (NumPy) for CPU tensors."""
    interpret = device.type == "cpu"
    key = (body, interpret)
    if key not in _VARIANTS:
        if interpret:
            from triton.runtime.interpreter import InterpretedFunction

            _VARIANTS[key] = InterpretedFunction(body)
        else:
            _VARIANTS[key] = triton.jit(body)
    return _VARIANTS[key]


def _launch(body, device, grid, *args, **meta):
    if device.type != "cpu":
        meta["enable_fp_fusion"] = False  # no FMA contraction: the CPU's roundings, so the same spikes
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _kernel(body, device)[grid](*args, **meta)


# ``cfg``: a :class:`sj_sew.neurons.ops.NeuronConfig`
def _scalars(cfg) -> dict:
    hard = cfg.v_reset is not None
    return dict(tau=float(cfg.tau) if cfg.kind == "lif" else 1.0, v_th=float(cfg.v_threshold),
                v_rs=float(cfg.v_reset) if hard else 0.0)


def _meta(cfg) -> dict:
    return dict(KIND=cfg.kind_code, HARD=cfg.v_reset is not None, DECAY_INPUT=cfg.decay_input, BLOCK=BLOCK)


def _surrogate_scale(cfg) -> float:
    return math.pi / 2 * cfg.alpha if cfg.surrogate == "atan" else float(cfg.alpha)


def _channel_layout(x_seq: torch.Tensor, bn_scale: torch.Tensor | None) -> dict:
    """(inner, channels) of the BatchNorm prologue: the channel is axis 2 of [T, N, C, *rest], axis 1 of a step."""
    if bn_scale is None:
        return dict(inner=1, channels=1)
    return dict(inner=math.prod(x_seq.shape[3:]), channels=x_seq.shape[2])


def forward(x_seq: torch.Tensor, v0: torch.Tensor, inv_tau: torch.Tensor | None, cfg, keep_h: bool,
            bn_scale: torch.Tensor | None = None, bn_shift: torch.Tensor | None = None,
            shortcut: torch.Tensor | None = None, connect: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(spikes in ``x_seq``'s dtype, V[T-1] float32, H float32 [T, ...] or an empty tensor unless ``keep_h``).

    With ``bn_scale``/``bn_shift`` (float32 [C], C = ``x_seq.shape[2]``) the neuron is charged with
    X * scale + shift; with a ``connect`` code (``ops.KERNEL_CONNECTS``) and ``shortcut`` (``x_seq``'s shape) the
    first output is O = g(spikes, shortcut), in the dtype ``x_seq`` and ``shortcut`` promote to."""
    steps, numel = x_seq.shape[0], x_seq[0].numel()
    x = x_seq.contiguous()
    v0 = v0.to(torch.float32).expand(x_seq.shape[1:]).contiguous()
    k = (inv_tau if inv_tau is not None else v0.new_zeros(())).to(torch.float32).contiguous()
    affine = bn_scale is not None
    a, b = (bn_scale.to(torch.float32).contiguous(), bn_shift.to(torch.float32).contiguous()) if affine else (k, k)
    sc = shortcut.contiguous() if connect else x
    out = torch.empty(x.shape, dtype=torch.promote_types(x.dtype, sc.dtype), device=x.device)
    v_last = torch.empty_like(v0)
    h = torch.empty(x.shape, dtype=torch.float32, device=x.device) if keep_h else v0.new_empty((0,))
    if numel and steps:
        _launch(_forward_body, x.device, (triton.cdiv(numel, BLOCK),), x, v0, k, a, b, sc, out, v_last,
                h if keep_h else v_last, numel, steps, **_channel_layout(x, bn_scale), **_scalars(cfg),
                KEEP_H=keep_h, AFFINE=affine, CONNECT=connect, **_meta(cfg))
    else:
        v_last.copy_(v0)
    return out, v_last, h


def backward(grad_out: torch.Tensor, grad_v_last: torch.Tensor | None, h_seq: torch.Tensor,
             v0: torch.Tensor, inv_tau: torch.Tensor | None, cfg, x_dtype: torch.dtype,
             x_seq: torch.Tensor | None = None, bn_scale: torch.Tensor | None = None,
             shortcut: torch.Tensor | None = None, connect: int = 0
             ) -> tuple[torch.Tensor, ...]:
    """(dL/dX in ``x_dtype``, dL/dV[-1] float32, dL/d(1/tau) float32 scalar (zero for IF and LIF), dL/dscale and
    dL/dshift float32 [C] (with ``bn_scale``; ``x_seq`` is the forward's input), dL/dshortcut in its dtype (with a
    ``connect`` code)); absent ones are empty tensors. ``grad_out``: dL/dspikes, or dL/dO with a connect g."""
    steps, numel = h_seq.shape[0], h_seq[0].numel()
    device = h_seq.device
    gs = grad_out.contiguous()
    v0 = v0.to(torch.float32).expand(h_seq.shape[1:]).contiguous()
    k = (inv_tau if inv_tau is not None else v0.new_zeros(())).to(torch.float32).contiguous()
    gx = torch.empty(h_seq.shape, dtype=x_dtype, device=device)
    gv0 = torch.empty_like(v0)
    blocks = triton.cdiv(numel, BLOCK)
    gk = torch.zeros(blocks if cfg.kind == "plif" else 1, dtype=torch.float32, device=device)
    has_gv = grad_v_last is not None
    gv = grad_v_last.to(torch.float32).expand(h_seq.shape[1:]).contiguous() if has_gv else gv0
    keep = 1.0 - 1.0 / cfg.tau if cfg.kind == "lif" else 1.0
    affine = bn_scale is not None
    x = x_seq.contiguous() if affine else k
    a = bn_scale.to(torch.float32).contiguous() if affine else k
    g_scale, g_shift = (torch.zeros_like(v0), torch.zeros_like(v0)) if affine else (gk.new_empty(0), gk.new_empty(0))
    sc = shortcut.contiguous() if connect else k
    gsc = torch.empty_like(sc) if connect else gk.new_empty(0)
    if numel and steps:
        _launch(_backward_body, device, (blocks,), gs, gv, h_seq.contiguous(), v0, k, x, a, sc, gx, gv0, gk, gsc,
                g_scale if affine else gk, g_shift if affine else gk, numel, steps, (steps - 1) * numel,
                **_channel_layout(h_seq, bn_scale), keep=keep, alpha=float(cfg.alpha),
                sg_scale=_surrogate_scale(cfg), **_scalars(cfg), DETACH=cfg.detach_reset,
                SURROGATE=cfg.surrogate_code, HAS_GV=has_gv, AFFINE=affine, CONNECT=connect, **_meta(cfg))
    else:
        gv0.copy_(gv if has_gv else torch.zeros_like(gv0))
    if affine:  # the per-element sums over T, summed over every axis but the channel's
        g_scale, g_shift = (g.reshape(h_seq.shape[1], h_seq.shape[2], -1).sum((0, 2)) for g in (g_scale, g_shift))
    return gx, gv0, gk.sum(), g_scale, g_shift, gsc
