"""sj_sew's own neuron kernels (issue 23), everything a CPU can show.

- The Triton kernels (:mod:`sj_sew.neurons.triton_kernels`), run by Triton's interpreter on CPU tensors: spikes
  and final potentials equal to the CPU fused path (IF, LIF) and to SpikingJelly's PLIF (``torch.equal``) in
  float32; bf16/fp16 inputs give the spikes of the same computation in float32 state; input, v0 and PLIF w
  gradients close to the reference's autograd.
- The custom ops (:mod:`sj_sew.neurons.ops`) on CPU: ``torch.library.opcheck``, their CUDA implementations'
  argument plumbing (called on CPU tensors), the neuron's kernel route, and ``torch.compile(fullgraph=True)``
  of a conv-BN-neuron step equal to eager.
- Fused beside the neuron: an eval BatchNorm's apply before it and the connect function g after it, in the kernels
  and in the ops' CPU reference, against BatchNorm2d -> neuron -> connect.py's g as modules (outputs bit for bit,
  gradients of x, v0, the shortcut, the BN's weight and bias, PLIF w); opcheck and torch.compile of the new
  arguments.
- ``backend='fused'``: what it builds, that on CPU it is bit for bit the default path, and its errors.
- The kernels compile for an H100/H200 (sm_90) here, without a GPU (Triton's compiler and ptxas run on CPU).

Gradient tolerance (rtol 1e-5, atol 1e-5; w: rtol 1e-4): both sides are float32 BPTT over T <= 4 steps with the
same surrogate; they differ in rounding only (the kernel evaluates the sigmoid as 1 / (1 + exp(-z)), takes
dH/d(1/tau) as (H - V) / (1/tau), and sums w's contributions per block of 256); over the 40 cases of
test_kernels_equal_the_cpu_path they differ by at most 4.6e-7 (x), 3.6e-7 (v0) and 1.7e-6 (w, 2.2e-6 relative).
"""
from __future__ import annotations

import sys
from pathlib import Path
from dataclasses import astuple

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate

import sj_sew
from sj_sew import _compat
from sj_sew.neurons import MLFNode, NeuronSpec
from sj_sew.neurons import backend as backends
from compiled import check_compiled_equals_eager
from sj_sew.neurons import fused, ops

tk = pytest.importorskip("sj_sew.neurons.triton_kernels", reason="needs the triton package")

T, SHAPE = 4, (3, 5, 7)  # 105 neurons: one program of 256, the tail masked
#: (kind, neuron kwargs): IF and LIF hard/soft, PLIF hard/soft, a non-zero reset, LIF/PLIF without decay_input
CASES = [("if", {}), ("if", {"v_reset": None}), ("if", {"v_reset": -0.5, "v_threshold": 0.8}),
         ("lif", {"tau": 2.0}), ("lif", {"tau": 3.0, "v_reset": None}), ("plif", {"init_tau": 2.0}),
         ("plif", {"init_tau": 3.0, "v_reset": None}), ("plif", {"init_tau": 2.0, "v_reset": -0.25}),
         ("lif", {"tau": 2.0, "decay_input": False}), ("plif", {"init_tau": 2.0, "decay_input": False})]
SURROGATES = {"atan": surrogate.ATan, "sigmoid": surrogate.Sigmoid}
NEURONS = {"if": neuron.IFNode, "lif": neuron.LIFNode, "plif": neuron.ParametricLIFNode}


def _reference_node(kind, kwargs, detach, surrogate_name):
    """The path sj_sew runs on CPU: the fused IF/LIF (SpikingJelly's own where it does not cover the settings:
    LIF without decay_input), SpikingJelly's PLIF."""
    cls = fused.fused_neuron_class(NEURONS[kind])
    alpha = 3.0 if surrogate_name == "sigmoid" else 2.0
    node = cls(step_mode="m", surrogate_function=SURROGATES[surrogate_name](alpha=alpha), detach_reset=detach,
               **kwargs)
    if kind == "plif":
        with torch.no_grad():
            node.w.add_(0.3)  # 1/tau not a power of two
    return node


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, *SHAPE, generator=g) * 2 + 0.8).to(dtype)
    v0 = torch.randn(SHAPE, generator=g) * 0.4
    return x, v0, torch.randn(T, *SHAPE, generator=g), torch.randn(SHAPE, generator=g)


class _Kernels(torch.autograd.Function):
    """The Triton kernels as an autograd function (what the CUDA ops run), here on CPU tensors; optionally with the
    BatchNorm prologue (``bn_scale``, ``bn_shift``) and the connect epilogue (``shortcut``, ``connect`` name)."""

    @staticmethod
    def forward(ctx, x, v0, inv_tau, cfg, bn_scale, bn_shift, shortcut, connect):
        code = ops.KERNEL_CONNECTS.get(connect, 0)
        out, v_last, h = tk.forward(x, v0, inv_tau, cfg, True, bn_scale, bn_shift, shortcut, code)
        ctx.save_for_backward(h, v0, inv_tau, x, bn_scale, shortcut)
        ctx.cfg, ctx.x_dtype, ctx.code = cfg, x.dtype, code
        return out, v_last

    @staticmethod
    def backward(ctx, grad_out, grad_v):
        h, v0, inv_tau, x, bn_scale, shortcut = ctx.saved_tensors
        gx, gv0, gk, g_scale, g_shift, g_sc = tk.backward(grad_out, grad_v, h, v0, inv_tau, ctx.cfg, ctx.x_dtype, x,
                                                          bn_scale, shortcut, ctx.code)
        affine = bn_scale is not None
        return (gx, gv0, gk if ctx.cfg.kind == "plif" else None, None, g_scale if affine else None,
                g_shift if affine else None, g_sc if ctx.code else None, None)


def _run_reference(node, x, v0):
    node.v = v0
    spikes = node(x)
    return spikes, node.v


def _run_kernels(node, x, v0):
    inv_tau = node.w.sigmoid() if isinstance(node, neuron.ParametricLIFNode) else None
    return _Kernels.apply(x, v0, inv_tau, ops.neuron_config(node), None, None, None, "")


def _grads(run, node, x, v0, gs, gv):
    x, v0 = x.detach().clone().requires_grad_(), v0.detach().clone().requires_grad_()
    node.zero_grad()
    spikes, v_last = run(node, x, v0)
    ((spikes.float() * gs).sum() + (v_last.float() * gv).sum()).backward()
    w = getattr(node, "w", None)
    return spikes.detach(), v_last.detach(), x.grad, v0.grad, None if w is None else w.grad.clone()


@pytest.mark.parametrize("kind,kwargs", CASES)
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("surrogate_name", ["atan", "sigmoid"])
def test_kernels_equal_the_cpu_path(kind, kwargs, detach, surrogate_name):
    node = _reference_node(kind, kwargs, detach, surrogate_name)
    x, v0, gs, gv = _inputs()
    want = _grads(_run_reference, node, x, v0, gs, gv)
    got = _grads(_run_kernels, node, x, v0, gs, gv)
    assert 0.05 < want[0].mean() < 0.95, "some neurons must fire and some not"
    assert got[0].dtype == torch.float32 and torch.equal(got[0], want[0]), "spikes"
    assert torch.equal(got[1], want[1]), "membrane potential after the last step"
    for name, a, b in zip(("x", "v0"), got[2:4], want[2:4]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    if kind == "plif":
        torch.testing.assert_close(got[4], want[4], rtol=1e-4, atol=1e-4, msg="w")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind,kwargs", [CASES[0], CASES[4], CASES[5]])
def test_half_inputs_run_in_float32_state(dtype, kind, kwargs):
    """bf16/fp16 inputs: the spikes (in the input dtype) of the same computation on the input cast to float32."""
    node = _reference_node(kind, kwargs, True, "atan")
    x, v0, gs, gv = _inputs(dtype)
    spikes, v_last = _run_kernels(node, x, v0)
    want_spikes, want_v = _run_reference(node, x.float(), v0)
    assert spikes.dtype == dtype and v_last.dtype == torch.float32
    assert torch.equal(spikes.float(), want_spikes) and torch.equal(v_last, want_v)
    got = _grads(_run_kernels, node, x, v0, gs, gv)
    want = _grads(_run_reference, node, x.float(), v0, gs.to(dtype).float(), gv)  # dL/dS comes in the spikes' dtype
    assert got[2].dtype == dtype
    torch.testing.assert_close(got[2], want[2].to(dtype))  # dL/dX, rounded to the input dtype
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-5)


# --- the custom ops on CPU --------------------------------------------------------------------------------------
def _op_args(kind, kwargs, keep_h=True, dtype=torch.float32):
    cfg = ops.neuron_config(_reference_node(kind, kwargs, False, "atan"))
    x, v0, _, _ = _inputs(dtype)
    inv_tau = torch.tensor(0.6, requires_grad=True) if kind == "plif" else None
    return (x.requires_grad_(), v0.requires_grad_(), inv_tau, *astuple(cfg), keep_h)


@pytest.mark.parametrize("case", [CASES[0], CASES[4], CASES[6]])
def test_opcheck(case):
    torch.library.opcheck(torch.ops.sj_sew.neuron_forward.default, _op_args(*case))
    x, v0, inv_tau, *settings, _ = _op_args(*case)
    spikes, v_last, h = torch.ops.sj_sew.neuron_forward(x, v0, inv_tau, *settings, True)
    grads = (torch.randn_like(h), torch.randn_like(v_last), h.detach(), v0.detach(),
             None if inv_tau is None else inv_tau.detach())
    torch.library.opcheck(torch.ops.sj_sew.neuron_backward.default, (*grads, *settings))


@pytest.mark.parametrize("kind,kwargs", CASES)
def test_cpu_op_equals_kernels(kind, kwargs):
    """The ops' CPU reference and the Triton kernels: the same spikes, potentials and gradients."""
    x, v0, inv_tau, *settings, _ = _op_args(kind, kwargs)
    cfg = ops.NeuronConfig(*settings)
    inv_tau = None if inv_tau is None else inv_tau.detach()
    ref = torch.ops.sj_sew.neuron_forward(x.detach(), v0.detach(), inv_tau, *settings, True)
    got = tk.forward(x.detach(), v0.detach(), inv_tau, cfg, True)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    no_h = tk.forward(x.detach(), v0.detach(), inv_tau, cfg, False)  # inference: no potentials kept
    assert torch.equal(no_h[0], ref[0]) and torch.equal(no_h[1], ref[1]) and no_h[2].numel() == 0
    gs, gv = torch.randn_like(x), torch.randn_like(v0)
    ref_g = torch.ops.sj_sew.neuron_backward(gs, gv, ref[2], v0.detach(), inv_tau, *settings)
    got_g = tk.backward(gs, gv, got[2], v0.detach(), inv_tau, cfg, x.dtype)
    for a, b in zip(got_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [CASES[3], CASES[7]])
def test_cuda_registrations_launch_the_kernels(case):
    """The ops' CUDA implementations (registered for the CUDA dispatch key) pass their arguments to the Triton
    launchers in the right order: called here on CPU tensors, they give the CPU reference's results."""
    for op in ("sj_sew::neuron_forward", "sj_sew::neuron_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
    x, v0, inv_tau, *settings, _ = _op_args(*case)
    x, v0, inv_tau = x.detach(), v0.detach(), None if inv_tau is None else inv_tau.detach()
    ref = torch.ops.sj_sew.neuron_forward(x, v0, inv_tau, *settings, True)
    got = ops._forward_cuda(x, v0, inv_tau, *settings, True)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    gs, gv = torch.randn_like(x), torch.randn_like(v0)
    ref_g = torch.ops.sj_sew.neuron_backward(gs, gv, ref[2], v0, inv_tau, *settings)
    got_g = ops._backward_cuda(gs, gv, got[2], v0, inv_tau, *settings)
    for a, b in zip(got_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["if", "lif", "plif"])
def test_neuron_kernel_route_equals_cpu_path(name):
    """A backend='fused' neuron's kernel route (what runs on CUDA), here through the ops' CPU reference: same
    spikes and state as the neuron's CPU path, close gradients (w's too); the state carries over two calls."""
    spec = NeuronSpec(name, backend="fused", surrogate_function="sigmoid", detach_reset=False)
    node = spec.make()
    assert node.sj_sew_kernels and isinstance(node, fused._FusedMultiStep)
    x, _, gs, _ = _inputs()
    results = []
    for route in (node.multi_step_forward, node._kernel_forward):
        node.reset()
        node.zero_grad()
        xi = x.clone().requires_grad_()
        out = torch.cat([route(xi[:2]), route(xi[2:])])
        ((out * gs).sum() + node.v.sum()).backward()
        results.append((out.detach(), node.v.detach(), xi.grad, [p.grad.clone() for p in node.parameters()]))
    (s0, v0, g0, p0), (s1, v1, g1, p1) = results
    assert torch.equal(s0, s1) and torch.equal(v0, v1)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5)
    for a, b in zip(p1, p0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert len(p0) == (1 if name == "plif" else 0)


def test_compile_fullgraph_conv_bn_neuron_step():
    """torch.compile(fullgraph=True) of a conv-BN-PLIF training step through the op: equal to eager."""
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
    w = torch.nn.Parameter(torch.tensor(0.3))
    cfg = ops.NeuronConfig("plif", 1.0, 0.0, detach_reset=True, surrogate="atan", alpha=2.0)

    def step(x):
        y = bn(conv(x.flatten(0, 1))).unflatten(0, x.shape[:2])
        spikes, v = ops.multistep(y, y.new_zeros(()), w.sigmoid(), cfg)
        return (spikes * torch.linspace(-1, 1, 6)).mean() + v.mean(), spikes

    x = torch.rand(T, 2, 2, 6, 6) * 3
    params = [conv.weight, conv.bias, bn.weight, bn.bias, w]
    spikes = check_compiled_equals_eager(step, params, lambda: (x,), rtol=1e-5, atol=1e-6)
    assert 0.05 < spikes.mean() < 0.95


# --- fused beside the neuron: an eval BatchNorm before it, the connect function g after it --------------------------
#: IF, LIF and PLIF, each with a hard and a soft reset
FUSION_CASES = [CASES[0], CASES[1], CASES[3], CASES[4], CASES[5], CASES[6]]
#: what is fused: the BatchNorm prologue, each connect epilogue, and both (a SEW block's BN -> neuron -> g)
FUSIONS = {"bn": (True, None), "ADD": (False, "ADD"), "AND": (False, "AND"), "IAND": (False, "IAND"),
           "bn+IAND": (True, "IAND")}
BN_SHAPE = (2, 3, 4, 5)  # N, C, H, W: 120 neurons per step, one program of 256


def _eval_batchnorm(channels: int, seed: int = 1) -> torch.nn.BatchNorm2d:
    """An eval-mode BatchNorm2d with random affine parameters and running statistics; channel 0's weight is 0
    (a zero-initialised last BN)."""
    g = torch.Generator().manual_seed(seed)
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.weight[0] = 0.0
        bn.bias.copy_(torch.randn(channels, generator=g) * 0.5 + 1.2)
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) * 2 + 0.1)
    return bn.eval()


def _fusion_inputs(dtype=torch.float32, seed=2):
    """(x, v0, shortcut, dL/dO, dL/dV[T-1]); the shortcut holds spike counts 0-2, as a later ADD block's input."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, *BN_SHAPE)
    x = (torch.randn(shape, generator=g) * 1.5 + 0.6).to(dtype)
    v0 = torch.randn(BN_SHAPE, generator=g) * 0.4
    shortcut = ((torch.rand(shape, generator=g) < 0.5).float() + (torch.rand(shape, generator=g) < 0.2).float())
    return x, v0, shortcut.to(dtype), torch.randn(shape, generator=g), torch.randn(BN_SHAPE, generator=g)


def _run_fusion(route, node, bn, connect, x, v0, shortcut, grad_out, grad_v):
    """(output, V[T-1], dL/dx, dL/dv0, dL/dshortcut, [dL/d bn.weight, bn.bias, PLIF w]) of one route:
    'unfused' (BatchNorm2d, the neuron, connect.py's g as modules), 'kernels' (the Triton kernels) or 'op'
    (:func:`ops.multistep`, here the ops' CPU reference)."""
    x, v0, shortcut = (t.detach().clone().requires_grad_() for t in (x, v0, shortcut))
    modules = [m for m in (bn, node) if m is not None]
    for m in modules:
        m.zero_grad()
    inv_tau = node.w.sigmoid() if isinstance(node, neuron.ParametricLIFNode) else None
    cfg, fused_shortcut = ops.neuron_config(node), shortcut if connect else None
    if route == "unfused":
        node.v = v0
        out = node(x if bn is None else bn(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
        out = sj_sew.connect.get_connect(connect).fn(out, shortcut) if connect else out
        v_last = node.v
    elif route == "kernels":
        scale, shift = ops.batchnorm_affine(bn) if bn is not None else (None, None)
        out, v_last = _Kernels.apply(x, v0, inv_tau, cfg, scale, shift, fused_shortcut, connect or "")
    else:
        out, v_last = ops.multistep(x, v0, inv_tau, cfg, bn=bn, shortcut=fused_shortcut, connect=connect)
    ((out.float() * grad_out).sum() + (v_last.float() * grad_v).sum()).backward()
    return (out.detach(), v_last.detach(), x.grad, v0.grad, shortcut.grad,
            [p.grad.clone() for m in modules for p in m.parameters()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fusion", list(FUSIONS))
@pytest.mark.parametrize("kind,kwargs", FUSION_CASES)
def test_fused_bn_and_connect_equal_the_unfused_composition(kind, kwargs, fusion, dtype):
    """BatchNorm2d (eval) -> neuron -> connect.py's g as modules, against the same fused into the Triton kernels
    and into the ops' CPU reference: the same outputs and final potentials bit for bit, gradients (x, v0,
    shortcut, BN weight and bias through (scale, shift), PLIF w) within float32 rounding (in float32, over these
    30 cases, at most 3.6e-7 apart for x and v0, 1.4e-6 relative for the BN's weight and bias, 3.4e-6 for w).
    bf16 inputs: the composition on the inputs cast to float32 (the kernels keep the affine result in float32),
    dL/dx rounded to bf16."""
    with_bn, connect = FUSIONS[fusion]
    node = _reference_node(kind, kwargs, False, "atan")
    bn = _eval_batchnorm(BN_SHAPE[1]) if with_bn else None
    x, v0, shortcut, grad_out, grad_v = _fusion_inputs(dtype)
    with torch.no_grad():
        node.v = v0
        rate = node(x.float() if bn is None else bn(x.float().flatten(0, 1)).unflatten(0, x.shape[:2])).mean()
    assert 0.05 < rate < 0.95, "some neurons must fire and some not"
    want = _run_fusion("unfused", node, bn, connect, x.float(), v0, shortcut.float(), grad_out.to(dtype).float(),
                       grad_v)
    for route in ("kernels", "op"):
        got = _run_fusion(route, node, bn, connect, x, v0, shortcut, grad_out, grad_v)
        assert got[0].dtype == dtype and torch.equal(got[0].float(), want[0]), f"{route}: outputs"
        assert torch.equal(got[1], want[1]), f"{route}: membrane potential after the last step"
        assert got[2].dtype == dtype
        if dtype == torch.float32:
            torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-6, msg=f"{route}: x")
        else:
            torch.testing.assert_close(got[2], want[2].to(dtype), msg=f"{route}: x")
        torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6, msg=f"{route}: v0")
        if connect:
            assert torch.equal(got[4].float(), want[4]), f"{route}: shortcut"  # 0, dL/dO or its product with 0/1
        assert len(got[5]) == len(want[5]) == with_bn * 2 + (kind == "plif")
        for i, (a, b) in enumerate(zip(got[5], want[5])):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"{route}: parameter {i}")


@pytest.mark.parametrize("shape", [(4, 16, 7, 9), (3, 64, 8, 8), (5, 6), (4, 6, 10)])
def test_batchnorm_affine_is_torch_batchnorm_bit_for_bit(shape):
    """x * scale + shift as the ops compute it (one rounding) equals torch's eval BatchNorm on CPU exactly (its
    vectorised kernel computes bias - mean * alpha and x * alpha + beta as fused multiply-adds)."""
    channels = shape[1]
    bn = _eval_batchnorm(channels, seed=channels)
    if len(shape) != 4:
        bn1d = torch.nn.BatchNorm1d(channels).eval()
        bn1d.load_state_dict(bn.state_dict())
        bn = bn1d
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        assert torch.equal(ops.batchnorm_apply(x, *ops.batchnorm_affine(bn)), bn(x))
    scale, shift = ops.batchnorm_affine(bn)
    (scale.sum() + shift.sum()).backward()  # differentiable in the BatchNorm's parameters
    assert bn.weight.grad is not None and bn.bias.grad is not None


@pytest.mark.parametrize("connect", ["ADD", "IAND"])
def test_opcheck_with_bn_and_connect(connect):
    x, v0, inv_tau, *settings, _ = _op_args(*CASES[6])  # PLIF, soft reset; SHAPE (3, 5, 7): C = 5
    scale = (torch.rand(SHAPE[1]) + 0.5).requires_grad_()
    shift = torch.randn(SHAPE[1]).requires_grad_()
    shortcut = (torch.rand_like(x) < 0.5).float().requires_grad_()
    args = (x, v0, inv_tau, *settings, True, scale, shift, shortcut, connect)
    torch.library.opcheck(torch.ops.sj_sew.neuron_forward.default, args)
    out, v_last, h = torch.ops.sj_sew.neuron_forward(*args)
    grads = (torch.randn_like(out), torch.randn_like(v_last), h.detach(), v0.detach(), inv_tau.detach(), *settings,
             x.dtype, x.detach(), scale.detach(), shortcut.detach(), connect)
    torch.library.opcheck(torch.ops.sj_sew.neuron_backward.default, grads)


def test_connect_output_dtype_promotes():
    """O = g(A, S) takes the dtype A and S promote to, as connect.py's g does (bf16 spikes, float32 shortcut)."""
    x, v0, shortcut, _, _ = _fusion_inputs(torch.bfloat16)
    cfg = ops.NeuronConfig("if", 1.0, 0.0)
    out, _ = ops.multistep(x, v0, None, cfg, shortcut=shortcut.float(), connect="AND")
    got, _, _ = tk.forward(x, v0, None, cfg, False, shortcut=shortcut.float(), connect=ops.KERNEL_CONNECTS["AND"])
    spikes, _ = ops.multistep(x, v0, None, cfg)
    assert out.dtype == got.dtype == torch.float32
    assert torch.equal(out, sj_sew.connect.and_(spikes, shortcut.float())) and torch.equal(got, out)


def test_add_keeps_no_shortcut_for_backward():
    """ADD's backward is the plain neuron's (dL/dA = dL/dS = dL/dO): the op keeps the shortcut for AND and IAND only."""
    x, v0, shortcut, _, _ = _fusion_inputs()
    cfg = ops.NeuronConfig("if", 1.0, 0.0)
    for connect, kept in (("ADD", False), ("AND", True), ("IAND", True)):
        saved = []
        s = shortcut.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t):
            out, _ = ops.multistep(x.clone().requires_grad_(), v0, None, cfg, shortcut=s, connect=connect)
        assert (s.data_ptr() in saved) == kept, connect
        out.sum().backward()
        assert s.grad is not None


def test_compile_fullgraph_conv_bn_neuron_connect_step():
    """torch.compile(fullgraph=True) of conv -> fused eval BN, PLIF and IAND through the op: equal to eager."""
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(2, 4, 3, padding=1), _eval_batchnorm(4)
    w = torch.nn.Parameter(torch.tensor(0.3))
    cfg = ops.NeuronConfig("plif", 1.0, 0.0, detach_reset=True, surrogate="atan", alpha=2.0)

    def step(x, shortcut):
        y = conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        out, v = ops.multistep(y, y.new_zeros(()), w.sigmoid(), cfg, bn=bn, shortcut=shortcut, connect="IAND")
        return (out * torch.linspace(-1, 1, 6)).mean() + v.mean(), out

    x = torch.rand(T, 2, 2, 6, 6) * 3
    shortcut = (torch.rand(T, 2, 4, 6, 6) < 0.6).float()
    params = [conv.weight, conv.bias, bn.weight, bn.bias, w]
    out = check_compiled_equals_eager(step, params, lambda: (x, shortcut.clone().requires_grad_()), rtol=1e-5,
                                      atol=1e-6)  # the shortcut's gradient too
    assert 0.05 < (out != shortcut).float().mean() < 0.95


def test_fusion_errors():
    cfg = ops.NeuronConfig("if", 1.0, 0.0)
    x, v0 = torch.zeros(T, 2, 3, 4), torch.zeros(())
    with pytest.raises(ValueError, match="BatchNorm2d in training mode normalises with batch statistics"):
        ops.multistep(x, v0, None, cfg, bn=torch.nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="eval mode without running statistics"):
        ops.multistep(x, v0, None, cfg, bn=torch.nn.BatchNorm2d(3, track_running_stats=False).eval())
    with pytest.raises(ValueError, match=r"one value per channel \(axis 2"):
        ops.multistep(x, v0, None, cfg, bn=(torch.ones(4), torch.zeros(4)))
    with pytest.raises(ValueError, match="a shortcut without a connect function"):
        ops.multistep(x, v0, None, cfg, shortcut=x)
    with pytest.raises(ValueError, match=r"connect='AND' needs a shortcut of the input's shape \(4, 2, 3, 4\)"):
        ops.multistep(x, v0, None, cfg, shortcut=x[0], connect="and")
    with pytest.raises(ValueError, match="unknown connect function 'OR'"):
        ops.multistep(x, v0, None, cfg, shortcut=x, connect="OR")


# --- backend='fused' ---------------------------------------------------------------------------------------------
def test_fused_backend_on_cpu_is_the_default_path_bit_for_bit():
    torch.manual_seed(0)
    nets = {b: sj_sew.create_model("sew_resnet18", width=4, num_classes=3, T=2, backend=b) for b in ("auto", "fused")}
    nets["fused"].load_state_dict(nets["auto"].state_dict())
    x = torch.rand(2, 3, 32, 32)
    outs = {}
    for b, net in nets.items():
        functional.reset_net(net)
        out = net(x)
        out.sum().backward()
        outs[b] = (out.detach(), [p.grad for p in net.parameters()])
    assert torch.equal(outs["auto"][0], outs["fused"][0])
    assert all(torch.equal(a, b) for a, b in zip(outs["auto"][1], outs["fused"][1]))
    kinds = {type(m) for m in nets["fused"].modules() if isinstance(m, neuron.BaseNode)}
    assert kinds == {fused.IFNode} and all(m.sj_sew_kernels for m in nets["fused"].modules()
                                          if isinstance(m, neuron.BaseNode))


def test_fused_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="backend='fused': surrogate Rectangular has no sj_sew kernel "
                                         r"\(ATan, Sigmoid have\); use backend='auto'"):
        NeuronSpec("if", backend="fused", surrogate_function="rect")
    with pytest.raises(ValueError, match="backend='fused': MLFNode has no sj_sew kernel"):
        NeuronSpec(MLFNode, backend="fused")
    assert type(NeuronSpec("plif", backend="fused").make()) is fused.ParametricLIFNode
    assert type(NeuronSpec("plif").make()) is neuron.ParametricLIFNode  # other backends: SpikingJelly's class
    backends.check_backend_for_run("fused", "cpu")
    monkeypatch.setattr(_compat, "triton_importable", lambda: False)
    backends.check_backend_for_run("fused", "cpu")  # the CPU path needs no triton
    with pytest.raises(ValueError, match="--backend fused: backend='fused' needs the triton package"):
        backends.check_backend_for_run("fused", "cuda")
    spec = NeuronSpec("if", backend="fused")
    with pytest.raises(ImportError, match="backend='fused' needs the triton package"):
        spec.sync([spec.make()], "cuda")
    monkeypatch.setitem(sys.modules, "sj_sew.neurons.triton_kernels", None)  # as where triton is not installed
    x, v0, inv_tau, *settings, keep_h = _op_args("if", {})
    with pytest.raises(ImportError, match="backend='fused' on CUDA needs the triton package"):
        ops._forward_cuda(x, v0, inv_tau, *settings, keep_h)  # what the op runs for CUDA tensors
    node = spec.make()
    node.surrogate_function = sj_sew.Rectangular()  # settings changed after construction
    with pytest.raises(ValueError, match="do not cover this IFNode.*Rectangular"):
        node._kernel_forward(torch.zeros(2, 3))
    node.surrogate_function = surrogate.ATan(spiking=False)
    assert ops.neuron_config(node) is None


def test_auto_keeps_spikingjelly_kernels_on_gpu():
    """'auto' does not pick the new kernels until a GPU measurement shows them faster (backend.py's docstring)."""
    node = NeuronSpec("if").make()
    assert not node.sj_sew_kernels
    assert "fused" in backends.BACKENDS and "fused" not in backends.line_backends()


def test_kernels_compile_for_sm90_without_a_gpu():
    """Every kernel variant compiles to a cubin for an H100/H200 (sm_90) with Triton's own toolchain, on CPU;
    the forward has neither fused multiply-adds nor approximate divisions (the CPU's roundings, the same spikes)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile
    import triton

    target = GPUTarget("cuda", 90, 32)
    ptr, f32, i32 = "*fp32", "fp32", "i32"
    for dtype in ("fp32", "bf16", "fp16"):
        fwd = dict(x_ptr="*" + dtype, v0_ptr=ptr, k_ptr=ptr, bn_scale_ptr=ptr, bn_shift_ptr=ptr, sc_ptr="*" + dtype,
                   s_ptr="*" + dtype, v_ptr=ptr, h_ptr=ptr, numel=i32, steps=i32, inner=i32, channels=i32, tau=f32,
                   v_th=f32, v_rs=f32)
        bwd = dict(gs_ptr="*" + dtype, gv_ptr=ptr, h_ptr=ptr, v0_ptr=ptr, k_ptr=ptr, x_ptr="*" + dtype,
                   bn_scale_ptr=ptr, sc_ptr="*" + dtype, gx_ptr="*" + dtype, gv0_ptr=ptr, gk_ptr=ptr,
                   gsc_ptr="*" + dtype, g_scale_ptr=ptr, g_shift_ptr=ptr, numel=i32, steps=i32, last="i64", inner=i32,
                   channels=i32, tau=f32, keep=f32, v_th=f32, v_rs=f32, alpha=f32, sg_scale=f32)
        for kind in range(3):
            for hard, decay_input in ((True, True), (False, False)):  # fused BN and g: each connect once
                meta = dict(KIND=kind, HARD=hard, DECAY_INPUT=decay_input, AFFINE=hard, CONNECT=kind + hard,
                            BLOCK=tk.BLOCK)
                fwd_meta = {**meta, "KEEP_H": True}
                bwd_meta = {**meta, "DETACH": False, "SURROGATE": kind % 2, "HAS_GV": True}
                for body, sig, consts in ((tk._forward_body, fwd, fwd_meta), (tk._backward_body, bwd, bwd_meta)):
                    src = ASTSource(fn=triton.jit(body), signature={**sig, **{k: "constexpr" for k in consts}},
                                    constexprs=consts)
                    kernel = triton_compile(src, target=target, options={"enable_fp_fusion": False})
                    assert kernel.asm["cubin"]
                    if body is tk._forward_body:  # IEEE-rounded arithmetic only, as on the CPU
                        assert "fma." not in kernel.asm["ptx"] and "div.full" not in kernel.asm["ptx"]


# --- issue 23's benchmark at the shapes people train: its CPU dry run ------------------------------------------
@pytest.mark.slow
def test_benchmark_shapes_section_dry_run(tmp_path):
    """``scripts/benchmark.py --sections shapes --tiny`` on CPU (the CIFAR setting at N=2, T=2): every contender
    trains in fp32 and bf16, inference and memopt run, every ratio is printed against its target (~17 s)."""
    import json
    import subprocess

    out = tmp_path / "shapes.json"
    cmd = [sys.executable, "scripts/benchmark.py", "--device", "cpu", "--sections", "shapes", "--tiny",
           "--shape-settings", "cifar", "--reps", "1", "--warmup", "0", "--threads", "1", "--no-progress",
           "--json", str(out)]
    run = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "dry run at toy sizes" in run.stdout and "Ratios against the targets of issue 23" in run.stdout
    record = json.loads(out.read_text())
    trained = {(r["model"], r["precision"]) for r in record["training"] if "model" in r and "precision" in r}
    models = ("zoo", "sj_sew", "sj_sew fused", "sj_sew:memory", "ann")
    assert trained == {(m, p) for m in models for p in ("fp32", "bf16")}
    assert not [r for r in record["training"] if "error" in r]
    assert set(record["inference"][0]["images_per_s"]) == {"zoo", "sj_sew", "sj_sew fused"}
    names = [t["name"] for t in record["targets"]]
    assert any("train step / zoo" in n for n in names) and any("bf16 speed-up of sj_sew fused" in n for n in names)
    assert any("inference of sj_sew fused / zoo" in n for n in names)
    assert set(record["profile"]) == {"fp32", "bf16"} and all(record["profile"].values())
