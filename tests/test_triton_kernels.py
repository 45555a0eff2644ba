"""sj_sew's own neuron kernels (issue 23), everything a CPU can show.

- The Triton kernels (:mod:`sj_sew.neurons.triton_kernels`), run by Triton's interpreter on CPU tensors: spikes
  and final potentials equal to the CPU fused path (IF, LIF) and to SpikingJelly's PLIF (``torch.equal``) in
  float32; bf16/fp16 inputs give the spikes of the same computation in float32 state; input, v0 and PLIF w
  gradients close to the reference's autograd.
- The custom ops (:mod:`sj_sew.neurons.ops`) on CPU: ``torch.library.opcheck``, their CUDA implementations'
  argument plumbing (called on CPU tensors), the neuron's kernel route, and ``torch.compile(fullgraph=True)``
  of a conv-BN-neuron step equal to eager.
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
    """The Triton kernels as an autograd function (what the CUDA ops run), here on CPU tensors."""

    @staticmethod
    def forward(ctx, x, v0, inv_tau, cfg):
        spikes, v_last, h = tk.forward(x, v0, inv_tau, cfg, keep_h=True)
        ctx.save_for_backward(h, v0, inv_tau)
        ctx.cfg, ctx.x_dtype = cfg, x.dtype
        return spikes, v_last

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        h, v0, inv_tau = ctx.saved_tensors
        gx, gv0, gk = tk.backward(grad_spikes, grad_v, h, v0, inv_tau, ctx.cfg, ctx.x_dtype)
        return gx, gv0, gk if ctx.cfg.kind == "plif" else None, None


def _run_reference(node, x, v0):
    node.v = v0
    spikes = node(x)
    return spikes, node.v


def _run_kernels(node, x, v0):
    inv_tau = node.w.sigmoid() if isinstance(node, neuron.ParametricLIFNode) else None
    return _Kernels.apply(x, v0, inv_tau, ops.neuron_config(node))


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
    results = []
    torch._dynamo.reset()
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        for p in params:
            p.grad = None
        loss, spikes = fn(x)
        loss.backward()
        results.append((loss.detach(), spikes.detach(), [p.grad.clone() for p in params]))
    (loss0, s0, g0), (loss1, s1, g1) = results
    assert 0.05 < s0.mean() < 0.95 and torch.equal(s1, s0)
    torch.testing.assert_close(loss1, loss0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compile_fullgraph_whole_model_through_the_ops(monkeypatch):
    """torch.compile(fullgraph=True) of a whole SEW ResNet-18 training forward with every neuron on the op route
    (what runs on CUDA; here the ops' CPU reference): one graph, equal to eager, the same gradients (~17 s)."""
    monkeypatch.setattr(fused._FusedMultiStep, "multi_step_forward", lambda self, x: self._kernel_forward(x))
    model = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend="fused")
    x = torch.rand(2, 3, 32, 32)

    def step(x):
        functional.reset_net(model)
        return model(x)

    results = []
    torch._dynamo.reset()
    for fn in (step, torch.compile(step, fullgraph=True, backend="aot_eager")):
        model.zero_grad()
        out = fn(x)
        (out * torch.linspace(-1, 1, 5)).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(results[1][0], results[0][0])
    assert all(torch.equal(a, b) for a, b in zip(results[1][1], results[0][1]))


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
        fwd = dict(x_ptr="*" + dtype, v0_ptr=ptr, k_ptr=ptr, s_ptr="*" + dtype, v_ptr=ptr, h_ptr=ptr, numel=i32,
                   steps=i32, tau=f32, v_th=f32, v_rs=f32)
        bwd = dict(gs_ptr="*" + dtype, gv_ptr=ptr, h_ptr=ptr, v0_ptr=ptr, k_ptr=ptr, gx_ptr="*" + dtype, gv0_ptr=ptr,
                   gk_ptr=ptr, numel=i32, steps=i32, last="i64", tau=f32, keep=f32, v_th=f32, v_rs=f32, alpha=f32,
                   scale=f32)
        for kind in range(3):
            for hard, decay_input in ((True, True), (False, False)):
                meta = dict(KIND=kind, HARD=hard, DECAY_INPUT=decay_input, BLOCK=tk.BLOCK)
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
