"""The GPU path: every model on CUDA with each backend of this SpikingJelly line, mixed precision, memory saving,
the inference model, train.py on CUDA and resume (``-m cuda``, skipped without a GPU); sj_sew's own Triton
kernels (``backend='fused'``, also with BatchNorm apply and the connect function g fused) against their CPU
reference, in a CUDA graph and under ``torch.compile``; and the parts of it that run on CPU: ``--amp fp16|bf16``,
bf16 autocast on CPU, backend choice and its errors, the per-model scoping of SpikingJelly 2.x's kernel choice, the
layer-by-layer comparison itself.

CUDA is compared with CPU (and autocast with float32) layer by layer (``tests/layerwise.py``): each layer on the
GPU gets the CPU's input, so a membrane potential one rounding error from the threshold flips one spike there
and nowhere downstream. Stated tolerance of CUDA against CPU (float32, TF32 off, same weights, same input, dropout
off): every real-valued layer output within 1e-4 relative L2 error, at most 0.1% of a spike output's elements
(plus 2) flipped, and all gradients together within 2e-2 relative L2 error. A backend whose kernel this
SpikingJelly build lacks (2.x ``backend='cuda'`` without its native operators) is skipped, not failed.
``scripts/gpu_check.sh`` runs the ``cuda`` tests on both lines.
"""
from __future__ import annotations

import copy
import importlib
import os
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew import _compat
from sj_sew.neurons import NeuronSpec
from sj_sew.training import RunConfig, check_config, cli, loop
from sj_sew.training.config import ConfigError

import layerwise
from cuda_graphs import check_training_step_in_a_cuda_graph
from layerwise import Tolerance

HAS_CUDA = torch.cuda.is_available()
cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU (torch.cuda.is_available() is False); "
                                             "run scripts/gpu_check.sh on a GPU machine")

#: backends to try on this line: 'auto' and every kernel it offers ('cuda', 'triton', 'torch' on 2.x;
#: 'torch', 'cupy' on 0.0.0.0.14).
LINE_BACKENDS = ("auto",) + _compat.KERNEL_BACKENDS
#: ... and on CUDA also sj_sew's own Triton kernels (every line).
CUDA_BACKENDS = LINE_BACKENDS + ("fused",)

#: small widths per registered name prefix, so that every model runs in seconds (as tests/test_streaming.py).
SMALL = [("ms_resnet104", dict(widths=(4, 4, 8, 8), stem_width=4)), ("ms_resnet18", dict(widths=(4, 4, 8, 8))),
         ("ms_resnet34", dict(widths=(4, 4, 8, 8))), ("ms_resnet", dict(widths=(4, 4, 8))),
         ("ds_resnet", dict(widths=(4, 4, 8))), ("sew_resnet", dict(width=8)), ("spiking_resnet", dict(width=8)),
         ("plain_resnet", dict(width=8))]

RTOL = ATOL = 2e-3  # logits of the inference model against the model it was made from
CUDA_VS_CPU = Tolerance(rel_l2=1e-4, flip_fraction=1e-3)
GRAD_RTOL = 2e-2  # relative L2 error of all gradients together
#: autocast against float32 on the same GPU, layer by layer (bf16 keeps 8 significant bits, fp16 11; measured
#: on CPU with bf16 autocast: worst layer 4.5e-3 relative L2, worst spike layer 0.8% flipped, gradients 2e-2)
AUTOCAST_VS_FLOAT32 = {"fp16": (Tolerance(rel_l2=5e-3, flip_fraction=5e-3), 5e-2),
                       "bf16": (Tolerance(rel_l2=2e-2, flip_fraction=2e-2), 1e-1)}

TINY = ["--dataset", "events", "--data-option", "per_class=16", "--notation",
        "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10", "--T", "4", "--optimizer", "sgd", "--lr", "0.05",
        "--batch-size", "24", "--seed", "3", "--no-progress", "--no-tensorboard", "--threads", "1"]


def _small_kwargs(name: str) -> dict:
    return next((kw for prefix, kw in SMALL if name.startswith(prefix)), {})


def _build(name: str, backend: str = "auto", **extra):
    """(model, input) of a registered model at a small size; pytest.skip where the backend cannot serve it."""
    kwargs = dict(num_classes=5, **_small_kwargs(name), **extra)
    if name.startswith(("sew_", "spiking_", "plain_")):
        kwargs.setdefault("T", 2)
    try:
        model = sj_sew.create_model(name, backend=backend, **kwargs)
    except (ValueError, ImportError, RuntimeError) as e:
        if "backend" in str(e):
            pytest.skip(f"{name} with backend={backend!r}: {e}")
        raise
    if name.startswith(("sew_", "spiking_", "plain_")):
        x = torch.rand(2, 3, 32, 32)
    else:
        size = 128 if model.in_channels == 2 else 32
        x = (torch.rand(2, 2, model.in_channels, size, size) < 0.3).float()
    return layerwise.without_dropout(model), x


def _on_cuda(model, backend: str):
    """``model`` on the GPU with its kernels checked; pytest.skip where this SpikingJelly build lacks the kernel
    ``backend`` pins (sj_sew's own error says so), any other error fails."""
    model = model.cuda()
    sync = getattr(model, "sync_backend", None)
    if sync is not None:
        try:
            sync(torch.device("cuda", torch.cuda.current_device()))
        except RuntimeError as e:
            if f"backend={backend!r}" in str(e) and "cannot run its" in str(e):
                pytest.skip(str(e))
            raise
    return model


@pytest.fixture(autouse=True)
def _exact_float32():
    """No TF32 in CUDA matmuls/convs during these tests (it would differ from CPU by ~1e-3 per layer)."""
    if not HAS_CUDA:
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


_CPU_REFERENCE: dict = {}


def _cpu_reference(name):
    """(weights, input, layer outputs, gradients) of ``name`` on CPU, computed once per model."""
    if name not in _CPU_REFERENCE:
        torch.manual_seed(0)
        model, x = _build(name, "torch" if "torch" in LINE_BACKENDS else "auto")
        outputs, _, grads = layerwise.record(model, x)
        _CPU_REFERENCE[name] = (model.state_dict(), x, outputs, grads)
    return _CPU_REFERENCE[name]


# --- CUDA ---------------------------------------------------------------------------------------------------------
@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("name", sj_sew.list_models())
def test_every_model_on_cuda_equals_cpu(name, backend):
    state, x, ref_outputs, ref_grads = _cpu_reference(name)
    model, _ = _build(name, backend)
    model.load_state_dict(state)
    comparison, _, grads = layerwise.replay(_on_cuda(model, backend), x.cuda(), ref_outputs)
    comparison.assert_within(CUDA_VS_CPU, f"{name}, backend={backend!r}")
    assert torch.isfinite(grads).all()
    err = layerwise.grad_error(grads, ref_grads)
    assert err < GRAD_RTOL, f"{name}, backend={backend!r}: gradient relative error {err:.2e}"


@cuda
@pytest.mark.cuda
def test_kernel_choice_is_per_model_forward_and_backward():
    """2.x: each model's neurons run the kernel it asked for, in forward and in backward, whatever ran before."""
    if not _compat.kernel_chosen_by_device():
        pytest.skip("SpikingJelly 0.0.0.0.14 selects kernels with each neuron's backend attribute")
    selection = _compat.kernel_selection(sj_sew.neurons.spec.NEURONS["if"])
    _compat.kernel_in_use(sj_sew.neurons.spec.NEURONS["if"], torch.device("cuda"))  # installs the override
    seen = []
    real = selection._get_cuda_selection

    def spy(device):
        chosen = real(device)
        seen.append(chosen.name)
        return chosen

    selection._get_cuda_selection = spy
    try:
        auto_kernel = _compat.kernel_in_use(sj_sew.neurons.spec.NEURONS["if"], torch.device("cuda"))
        for backend in ("triton", "torch", "auto", "triton", "cuda"):
            try:
                model = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend=backend).cuda()
                model.sync_backend(torch.device("cuda", torch.cuda.current_device()))
            except (ImportError, RuntimeError) as e:
                assert backend in ("triton", "cuda"), e
                continue
            seen.clear()
            layerwise.forward_backward(model, torch.rand(2, 3, 32, 32, device="cuda"))
            want = auto_kernel if backend == "auto" else backend
            assert seen and set(seen) == {want}, (backend, seen)
            assert len(seen) >= 2 * sum(isinstance(m, sj_sew.neurons.spec.NEURONS["if"]) for m in model.modules())
    finally:
        selection._get_cuda_selection = real
    assert os.environ.get("SJ_IF_CUDA_IMPLEMENTATION", "auto") == selection._requested, "nothing process-wide"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_autocast_on_cuda(amp, backend):
    torch.manual_seed(0)
    model, x = _build("sew_resnet18", backend)
    model, x = _on_cuda(model, backend), x.cuda()
    if backend == "cupy" and amp == "bf16":
        with pytest.raises(ValueError, match="CuPy kernels take float32 and float16 inputs, got torch.bfloat16"):
            with loop.autocast(torch.device("cuda"), amp):
                model(x)
        return
    reference, _, ref_grads = layerwise.record(model, x)
    with loop.autocast(torch.device("cuda"), amp):
        functional.reset_net(model)
        assert model(x).dtype == loop.AMP_DTYPES[amp]
    functional.reset_net(model)
    tolerance, grad_rtol = AUTOCAST_VS_FLOAT32[amp]
    comparison, out, grads = layerwise.replay(model, x, reference, loop.autocast(torch.device("cuda"), amp))
    assert torch.isfinite(out).all() and torch.isfinite(grads).all()
    comparison.assert_within(tolerance, f"{amp} autocast, backend={backend!r}, against float32")
    err = layerwise.grad_error(grads, ref_grads)
    assert err < grad_rtol, f"{amp} autocast, backend={backend!r}: gradient relative error {err:.2e}"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("budget", [None, "memory"])
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_memory_saving_on_cuda_is_exact_and_saves(backend, budget):
    torch.manual_seed(0)
    base, _ = _build("sew_resnet50", backend)
    saving = sj_sew.memory_saving(copy.deepcopy(base), budget=budget)
    x = torch.rand(16, 3, 64, 64, device="cuda")
    peaks, results = [], []
    for model in (_on_cuda(base, backend), _on_cuda(saving, backend)):
        model(x.clone())  # warm-up (kernels, cuDNN plans)
        functional.reset_net(model)
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        results.append(layerwise.forward_backward(model, x))
        peaks.append(torch.cuda.max_memory_allocated())
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    err = (results[1][1] - results[0][1]).norm() / results[0][1].norm()
    assert err < 1e-4, f"gradient relative error {err:.2e}"
    assert peaks[1] < 0.85 * peaks[0], f"memory saving peak {peaks[1]} vs {peaks[0]} bytes"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_inference_model_on_cuda(backend):
    torch.manual_seed(0)
    model, x = _build("sew_resnet18", backend)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = _on_cuda(model, backend).eval()
    x = x.cuda() * 3
    with torch.no_grad():
        functional.reset_net(model)
        expected = model(x)
        functional.reset_net(model)
    deployed = sj_sew.inference_model(model)
    got = deployed(x)
    assert got.is_cuda and torch.is_inference(got)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    assert torch.equal(deployed(x), got), "each call starts from rest"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["no", "fp16", "bf16"])
def test_train_one_epoch_and_resume_on_cuda(tmp_path, amp):
    flags = TINY + ["--device", "cuda"] + (["--no-amp"] if amp == "no" else ["--amp", amp])
    out = tmp_path / "run"
    first = cli.main(flags + ["--epochs", "1", "--out", str(out)])
    assert first["epochs"] == 1
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["config"]["amp"] == (False if amp == "no" else amp)
    assert bool(state["scaler"]) == (amp == "fp16"), "a GradScaler only for fp16"
    resumed = cli.main(["--resume", "--out", str(out), "--epochs", "2", "--device", "cuda"])
    assert resumed["epochs"] == 2
    records = [r for r in sj_sew.training.read_metrics(out / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == [0, 1]
    assert all(r["train_loss"] == r["train_loss"] for r in records)  # finite


# --- sj_sew's own kernels (backend='fused') ------------------------------------------------------------------------
KERNEL_CASES = [("if", 0.0, 0.0), ("if", None, 0.0), ("lif", 0.0, 2.0), ("lif", None, 3.0), ("plif", 0.0, 0.0),
                ("plif", -0.25, 0.0), ("plif", None, 0.0)]


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind,v_reset,tau", KERNEL_CASES)
def test_fused_kernels_on_cuda_equal_the_cpu_reference(kind, v_reset, tau, dtype, surrogate):
    """The compiled Triton kernels against the ops' CPU reference on the same input (64 000 neurons, T = 4):
    the same spikes (in the input dtype) and final potentials bit for bit, close gradients (x, v0, PLIF w)."""
    from sj_sew.neurons import ops

    cfg = ops.NeuronConfig(kind, 1.0, v_reset, tau, True, False, surrogate, 2.0)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 64, 1000, generator=g) * 2 + 0.8).to(dtype)
    v0 = torch.randn(64, 1000, generator=g) * 0.4
    gs, gv = torch.randn(4, 64, 1000, generator=g).to(dtype), torch.randn(64, 1000, generator=g)
    results = []
    for device in ("cpu", "cuda"):
        xi, vi = x.to(device).requires_grad_(), v0.to(device).requires_grad_()
        w = torch.tensor(0.3, device=device, requires_grad=True)
        spikes, v_last = ops.multistep(xi, vi, w.sigmoid() if kind == "plif" else None, cfg)
        ((spikes * gs.to(device)).float().sum() + (v_last * gv.to(device)).sum()).backward()
        results.append([t.detach().cpu() for t in (spikes, v_last, xi.grad, vi.grad)] + [w.grad])
    (s0, v0_, gx0, gv0, gw0), (s1, v1, gx1, gv1, gw1) = results
    assert s1.dtype == dtype and 0.05 < s0.float().mean() < 0.95
    assert torch.equal(s1, s0), f"{int((s1 != s0).sum())} spikes differ"
    assert torch.equal(v1, v0_)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}  # else dL/dX within the dtype's rounding
    torch.testing.assert_close(gx1, gx0, **tol)
    torch.testing.assert_close(gv1, gv0, rtol=1e-5, atol=1e-5)
    if kind == "plif":
        torch.testing.assert_close(gw1.cpu(), gw0, rtol=1e-4, atol=1e-3)


def _fused_model():
    torch.manual_seed(0)
    return sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend="fused").cuda()


@cuda
@pytest.mark.cuda
def test_fused_backend_training_step_in_a_cuda_graph(monkeypatch):
    """A whole training step (reset, forward, loss, backward, SGD step) with sj_sew's kernels, captured once in
    a CUDA graph and replayed on new batches: the losses and weights of eager steps from the same state."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    # the input check leaves out its finiteness test (a read-back) while the stream captures: no patch needed
    check_training_step_in_a_cuda_graph(_fused_model(), size=32)


@cuda
@pytest.mark.cuda
def test_fused_backend_compiles_fullgraph_on_cuda():
    """torch.compile(fullgraph=True) (inductor) of a SEW ResNet-18 forward with sj_sew's kernels as custom ops:
    one graph, the eager spikes' logits and gradients."""
    model = _fused_model()
    x = torch.rand(2, 3, 32, 32, device="cuda")

    def forward(x):
        functional.reset_net(model)
        return model(x)

    results = []
    torch._dynamo.reset()
    for fn in (forward, torch.compile(forward, fullgraph=True)):
        model.zero_grad(set_to_none=True)
        out = fn(x)
        (out * torch.linspace(-1, 1, 5, device="cuda")).sum().backward()
        results.append((out.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-4)
    err = (results[1][1] - results[0][1]).norm() / results[0][1].norm()
    assert err < 1e-3, f"gradient relative error {err:.2e}"


#: fused beside the kernels: (kind, v_reset, tau, connect); the BN prologue always, each g once (few compilations)
FUSION_KERNEL_CASES = [("if", 0.0, 0.0, "ADD"), ("lif", None, 3.0, "AND"), ("plif", 0.0, 0.0, "IAND"),
                       ("plif", None, 0.0, None)]


def _fused_bn_connect_results(device, kind, v_reset, tau, dtype, connect):
    """(output, V[T-1], dL/dx, dL/dv0, dL/dshortcut, dL/dscale, dL/dshift, dL/dw) of the fused BN -> neuron -> g
    through :func:`ops.multistep` on ``device`` (CUDA: the Triton kernels; CPU: the ops' reference), 51 200
    neurons, T = 4."""
    from sj_sew.neurons import ops

    cfg = ops.NeuronConfig(kind, 1.0, v_reset, tau, True, False, "atan", 2.0)
    g = torch.Generator().manual_seed(0)
    shape = (4, 16, 32, 10, 10)
    x = (torch.randn(shape, generator=g) * 1.5 + 0.6).to(dtype)
    shortcut = ((torch.rand(shape, generator=g) < 0.5).float() + (torch.rand(shape, generator=g) < 0.2).float())
    v0 = torch.randn(shape[1:], generator=g) * 0.4
    scale, shift = torch.rand(32, generator=g) * 2 - 0.5, torch.randn(32, generator=g) * 0.5 + 1.0
    grad_out, grad_v = torch.randn(shape, generator=g).to(dtype), torch.randn(shape[1:], generator=g)
    leaves = [t.to(device).requires_grad_() for t in (x, v0, shortcut.to(dtype), scale, shift)]
    xi, vi, si, ai, bi = leaves
    w = torch.tensor(0.3, device=device, requires_grad=True)
    out, v_last = ops.multistep(xi, vi, w.sigmoid() if kind == "plif" else None, cfg, bn=(ai, bi),
                                shortcut=si if connect else None, connect=connect)
    ((out * grad_out.to(device)).float().sum() + (v_last * grad_v.to(device)).sum()).backward()
    return [t.detach().cpu() for t in (out, v_last)] + [None if t.grad is None else t.grad.cpu() for t in (*leaves, w)]


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind,v_reset,tau,connect", FUSION_KERNEL_CASES)
def test_fused_bn_and_connect_on_cuda_equal_the_cpu_reference(kind, v_reset, tau, dtype, connect):
    """The compiled kernels with the BatchNorm prologue (and the connect function g) against the ops' CPU
    reference: outputs and final potentials bit for bit, close gradients (x, v0, shortcut, scale, shift, w)."""
    want = _fused_bn_connect_results("cpu", kind, v_reset, tau, dtype, connect)
    got = _fused_bn_connect_results("cuda", kind, v_reset, tau, dtype, connect)
    assert got[0].dtype == dtype and 0.05 < (want[0] != 0).float().mean() < 0.95
    assert torch.equal(got[0], want[0]), f"{int((got[0] != want[0]).sum())} outputs differ"
    assert torch.equal(got[1], want[1])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}  # else dL/dX within the dtype's rounding
    torch.testing.assert_close(got[2], want[2], **tol)
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-5)
    if connect:
        assert torch.equal(got[4], want[4]), "dL/dshortcut"
    for name, i in (("scale", 5), ("shift", 6)) + ((("w", 7),) if kind == "plif" else ()):
        torch.testing.assert_close(got[i], want[i], rtol=1e-4, atol=1e-3, msg=name)


@cuda
@pytest.mark.cuda
def test_fused_bn_connect_step_compiles_fullgraph_on_cuda():
    """torch.compile(fullgraph=True) (inductor) of conv -> fused eval BN, PLIF and IAND on CUDA: eager's outputs
    and gradients (conv, BN weight and bias, w, shortcut)."""
    from sj_sew.neurons import ops

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 8, 3, padding=1).cuda()
    bn = torch.nn.BatchNorm2d(8).cuda().eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0), bn.bias.uniform_(0.0, 1.0), bn.running_var.uniform_(0.5, 2.0)
    w = torch.nn.Parameter(torch.tensor(0.3, device="cuda"))
    cfg = ops.NeuronConfig("plif", 1.0, 0.0, detach_reset=True, surrogate="atan", alpha=2.0)

    def step(x, shortcut):
        y = conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        out, v = ops.multistep(y, y.new_zeros(()), w.sigmoid(), cfg, bn=bn, shortcut=shortcut, connect="IAND")
        return (out * torch.linspace(-1, 1, 16, device="cuda")).mean() + v.mean(), out

    x = torch.rand(4, 2, 2, 16, 16, device="cuda") * 3
    shortcut = (torch.rand(4, 2, 8, 16, 16, device="cuda") < 0.6).float()
    params = [conv.weight, conv.bias, bn.weight, bn.bias, w]
    results = []
    torch._dynamo.reset()
    for fn in (step, torch.compile(step, fullgraph=True)):
        for p in params:
            p.grad = None
        s = shortcut.clone().requires_grad_()
        loss, out = fn(x, s)
        loss.backward()
        results.append((out.detach(), torch.cat([p.grad.flatten() for p in params] + [s.grad.flatten()])))
    flips = (results[1][0] != results[0][0]).float().mean()
    assert flips < 1e-3, f"{flips:.2%} outputs differ"  # inductor's conv may round differently: spikes at the edge
    err = (results[1][1] - results[0][1]).norm() / results[0][1].norm()
    assert err < 1e-3, f"gradient relative error {err:.2e}"


# --- CPU: the parts of the GPU path that run here ------------------------------------------------------------------
def test_amp_flag_takes_fp16_and_bf16_and_old_configs_load():
    def amp(*argv):
        return cli.config_from_argv(list(argv) + ["--out", "never", "--model", "sew_resnet18"])[0].amp

    assert amp() is False
    assert amp("--amp") == "fp16"  # --amp alone: fp16, as before it took a value
    assert amp("--amp", "bf16") == "bf16" and amp("--amp=fp16") == "fp16"
    assert amp("--amp", "bf16", "--no-amp") is False
    with pytest.raises(SystemExit):
        amp("--amp", "fp8")
    assert RunConfig.from_dict({"amp": True}).amp == "fp16"  # checkpoints written before --amp took a value
    assert RunConfig.from_dict({"amp": False}).amp is False
    assert RunConfig(amp="BF16").amp == "bf16"
    with pytest.raises(ConfigError, match="--amp 'fp8'.*fp16, bf16"):
        check_config(RunConfig(amp="fp8", model="sew_resnet18"))


def test_autocast_modes_on_cpu():
    cpu = torch.device("cpu")
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with loop.autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    for off in ("fp16", True, False, None):  # fp16 autocast is CUDA only; off is off
        with loop.autocast(cpu, off):
            assert (a @ b).dtype == torch.float32
    with pytest.raises(ValueError, match="'fp16' or 'bf16'"):
        loop.autocast(cpu, "fp8")


def test_bf16_epoch_on_cpu(tmp_path, monkeypatch):
    used = []
    real = loop.autocast

    def spy(device, amp):
        used.append((device.type, amp))
        return real(device, amp)

    monkeypatch.setattr(loop, "autocast", spy)
    summary = cli.main(TINY + ["--device", "cpu", "--amp", "bf16", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert summary["epochs"] == 1
    assert used and set(used) == {("cpu", "bf16")}
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["config"]["amp"] == "bf16" and not state["scaler"], "bf16 needs no GradScaler"
    records = sj_sew.training.read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert records and all(r["train_loss"] == r["train_loss"] for r in records)


def test_fp16_on_cpu_says_it_trains_in_float32(tmp_path, capsys):
    cli.main(TINY + ["--device", "cpu", "--amp", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert "--amp fp16 needs CUDA" in capsys.readouterr().out


def test_backend_choices_of_this_line():
    assert set(LINE_BACKENDS) <= set(sj_sew.neurons.spec.BACKENDS)
    for backend in LINE_BACKENDS:
        if backend == "cupy" and not _compat.cupy_importable():
            continue
        if backend == "triton" and not _compat.triton_importable():
            continue
        spec = NeuronSpec("if", backend=backend)
        model = sj_sew.create_model("sew_resnet18", width=4, num_classes=3, T=2, backend=backend)
        if backend != "cupy":  # CPU runs the torch path ('cupy' pins CuPy kernels, GPU only)
            assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)
            functional.reset_net(model)
        assert spec.kernel == (backend if _compat.kernel_chosen_by_device() and backend != "auto" else None)
    if _compat.kernel_chosen_by_device():
        assert _compat.KERNEL_BACKENDS == ("cuda", "triton", "torch")
    else:
        assert _compat.KERNEL_BACKENDS == ("torch", "cupy")
        for backend in ("cuda", "triton"):
            with pytest.raises(ValueError, match=f"backend='{backend}' needs SpikingJelly 2.x.*'auto', 'torch' or 'cupy'"):
                NeuronSpec("if", backend=backend)


@pytest.mark.skipif(not _compat.kernel_chosen_by_device(), reason="'cuda'/'triton' are SpikingJelly 2.x kernels")
def test_kernel_backend_errors(monkeypatch):
    with pytest.raises(RuntimeError, match="removed its CuPy backend"):
        NeuronSpec("if", backend="cupy")
    with pytest.raises(ValueError, match="surrogate Rectangular has no SpikingJelly CUDA/Triton kernel"):
        NeuronSpec("lif", backend="triton", surrogate_function="rect")
    with pytest.raises(ValueError, match="MLFNode has no SpikingJelly kernel"):
        NeuronSpec(sj_sew.MLFNode, backend="cuda")
    monkeypatch.setattr(_compat, "triton_importable", lambda: False)
    with pytest.raises(ImportError, match="backend='triton' needs the triton package"):
        NeuronSpec("plif", backend="triton")
    NeuronSpec("plif", backend="cuda")  # the native kernels are checked on the GPU (sync_backend)


class _Impl:
    def __init__(self, name):
        self.name = name


@pytest.mark.skipif(not _compat.kernel_chosen_by_device(), reason="SpikingJelly 2.x's kernel selection")
def test_kernel_choice_is_scoped_per_thread_and_never_process_wide(monkeypatch):
    """The override of SpikingJelly 2.x's selection, with its ``_select`` faked (no GPU here)."""
    if_cls = sj_sew.neurons.spec.NEURONS["if"]
    selection = _compat.kernel_selection(if_cls)
    assert selection is not _compat.kernel_selection(sj_sew.neurons.spec.NEURONS["lif"])
    assert _compat.kernel_selection(sj_sew.neurons.spec.NEURONS["plif"])._environment_variable == "SJ_PLIF_CUDA_IMPLEMENTATION"
    monkeypatch.setattr(selection, "_select", lambda index, **_: _Impl(f"{selection._requested}@{index}"))
    monkeypatch.setattr(selection, "_selections", {})
    monkeypatch.setattr(selection, "_get_cuda_selection", selection._get_cuda_selection)
    monkeypatch.setattr(selection, "_sj_sew_per_choice", None, raising=False)
    requested = selection._requested
    dev = torch.device("cuda", 0)
    assert _compat.kernel_in_use(if_cls, dev) == f"{requested}@0"
    _compat.kernel_push(if_cls, "triton")
    _compat.kernel_push(if_cls, "torch")
    assert _compat.kernel_in_use(if_cls, dev) == "torch@0"
    _compat.kernel_pop(if_cls)
    assert _compat.kernel_in_use(if_cls, dev) == "triton@0"
    _compat.kernel_pop(if_cls)
    assert _compat.kernel_in_use(if_cls, dev) == f"{requested}@0"
    assert selection._requested == requested and "SJ_IF_CUDA_IMPLEMENTATION" not in os.environ

    import threading
    _compat.kernel_push(if_cls, "triton")
    other = []
    worker = threading.Thread(target=lambda: other.append(_compat.kernel_in_use(if_cls, dev)))
    worker.start()
    worker.join()
    assert other == [f"{requested}@0"], "another thread keeps SpikingJelly's own choice"
    _compat.kernel_pop(if_cls)

    monkeypatch.setattr(selection, "_select", lambda index, **_: (_ for _ in ()).throw(
        RuntimeError("No available sj_if CUDA implementation. cuda: not built")))
    with pytest.raises(RuntimeError, match="backend='cuda'.*IFNode.*not built.*backend='auto'"):
        sj_sew.neurons.backend.check_kernel(if_cls, "cuda", torch.device("cuda", 1))
    assert not _compat._overrides().get(id(selection)), "the check leaves no choice behind"


class _OnCuda:
    is_cuda = True


@pytest.mark.skipif(not _compat.kernel_chosen_by_device(), reason="SpikingJelly 2.x's kernel operators")
def test_kernel_choice_covers_the_backward_of_the_neuron_operator(monkeypatch):
    """The neuron operator's backward node gets the neuron's choice pushed before it and popped after it
    (SpikingJelly 2.x's operator run on the meta device, which has its autograd but needs no GPU)."""
    import importlib

    forward = importlib.import_module("spikingjelly._ops.if_")._forward
    calls = []
    monkeypatch.setattr(_compat, "kernel_push", lambda cls, choice: calls.append(("push", choice)))
    monkeypatch.setattr(_compat, "kernel_pop", lambda cls: calls.append(("pop",)))
    node = NeuronSpec("if", backend="triton").make()
    scope = _compat.KernelScope("triton")
    x = torch.zeros(4, 2, 3, device="meta", requires_grad=True)
    scope.pre(node, (_OnCuda(),))
    spikes, _, _ = forward(x, torch.zeros(2, 3, device="meta"), 1.0, 0.0, True, 2.0, False, 1)
    out = spikes * 2  # the operator's node lies below the output's own
    scope.post(node, (_OnCuda(),), out)
    assert calls == [("push", "triton"), ("pop",)]
    out.sum().backward()
    assert calls[2:] == [("push", "triton"), ("pop",)]
    assert len(node._forward_pre_hooks) == 1 and len(node._forward_hooks) == 1
    scope.post(node, (torch.zeros(1),), None)  # a CPU call, or a forward that raised: nothing to pop
    assert len(calls) == 4


@pytest.mark.skipif(_compat.SJ2, reason="SpikingJelly 0.0.0.0.14's CuPy kernel launcher")
def test_cupy_kernel_launcher_type_check_runs_under_numpy2(monkeypatch):
    """0.0.0.0.14's launcher compares CuPy argument dtypes with ``np.int`` (gone in NumPy 2): every CuPy neuron
    raised AttributeError on the GPU. Its type check, run here with a stand-in for a CuPy int array."""
    import types

    import numpy

    launcher = importlib.import_module("spikingjelly.activation_based.auto_cuda.base")

    class FakeCupyArray:
        dtype = numpy.dtype("int32")

    monkeypatch.setattr(launcher, "cupy", types.SimpleNamespace(ndarray=FakeCupyArray))
    kernel = launcher.CKernel("k")
    kernel.cparams = {"numel": "const int &"}
    kernel.check_ctypes({"numel": FakeCupyArray()})  # AttributeError: module 'numpy' has no attribute 'int'
    if not hasattr(numpy, "int"):
        assert launcher.np.int is int and launcher.np.float32 is numpy.float32
        assert not hasattr(numpy, "int"), "NumPy itself is left as it is"


def test_layerwise_comparison_survives_a_flip_and_finds_a_wrong_layer():
    """What the CUDA tests rest on, on CPU: weights scaled by 1 + 1e-6 noise (rounding-sized) move net7b's logits
    far past any tolerance, yet layer by layer every layer stays within CUDA_VS_CPU; one conv 0.1% off fails
    there, and only there."""
    torch.manual_seed(0)
    model, x = _build("net7b", "torch")
    outputs, logits, grads = layerwise.record(model, x)
    nudged = copy.deepcopy(model)
    with torch.no_grad():
        for p in nudged.parameters():
            p.mul_(1 + 1e-6 * torch.randn_like(p))
    nudged_logits, _ = layerwise.forward_backward(copy.deepcopy(nudged), x)
    assert (nudged_logits - logits).abs().max() > 0.1, "net7b at this size amplifies a rounding-sized change"
    comparison, _, nudged_grads = layerwise.replay(nudged, x, outputs)
    comparison.assert_within(CUDA_VS_CPU, "net7b nudged by 1e-6")
    assert layerwise.grad_error(nudged_grads, grads) < 1e-4
    assert any(r.spikes for r in comparison.reports) and any(not r.spikes for r in comparison.reports)

    wrong = copy.deepcopy(model)
    name, conv = [(n, m) for n, m in wrong.named_modules() if isinstance(m, torch.nn.Conv2d)][2]
    with torch.no_grad():
        conv.weight.mul_(1.001)
    comparison, _, _ = layerwise.replay(wrong, x, outputs)
    assert [r.name for r in comparison.failures(CUDA_VS_CPU)] == [name]


@pytest.mark.skipif(_compat.SJ2, reason="SpikingJelly 0.0.0.0.14's CuPy backend")
def test_cupy_neurons_leave_bf16_to_the_torch_path(monkeypatch):
    """0.0.0.0.14's CuPy kernels take float32/float16 only: under bf16 autocast a neuron on backend='auto' runs
    that call on the torch path and returns to CuPy; one pinned to 'cupy' says what to do instead."""
    assert not NeuronSpec("plif", backend="auto").make()._forward_pre_hooks or _compat.cupy_importable(), \
        "no guard where CuPy cannot run"
    monkeypatch.setattr(_compat, "cupy_importable", lambda: True)  # as on a GPU machine with CuPy
    node = NeuronSpec("plif", backend="auto").make()
    node.backend = "cupy"  # as sync_backend sets it on a GPU with CuPy
    x = torch.rand(2, 3, 4, dtype=torch.bfloat16)
    out = node(x)  # CPU here: the torch path is the only one that can run, as on the GPU for bf16
    assert out.dtype == torch.bfloat16 and node.backend == "cupy"
    node.reset()
    guard = sj_sew.neurons.backend.CupyDtypeGuard(pinned=True)
    with pytest.raises(ValueError, match="backend='cupy'.*float32 and float16.*bfloat16.*backend='auto'"):
        guard.pre(node, (x,))
    assert guard.pre(node, (x.float(),)) is None and node.backend == "cupy"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_time_chunked_backward_on_cuda(backend):
    """Checkpointing over time on the GPU (BatchNorm frozen) against the whole-sequence backward there."""
    torch.manual_seed(0)
    model, x = _build("sew_resnet18", backend, T=8)
    model = sj_sew.memory.freeze_batchnorm(_on_cuda(model, backend))
    chunked = copy.deepcopy(model)
    x, y = x.cuda(), torch.tensor([1, 3], device="cuda")
    functional.reset_net(model)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    functional.reset_net(model)
    got, _ = sj_sew.memory.time_chunked_backward(chunked, x, y)
    torch.testing.assert_close(got, loss.detach(), rtol=1e-5, atol=1e-5)
    err = layerwise.grad_error(torch.cat([p.grad.flatten() for p in chunked.parameters()]).cpu(),
                               torch.cat([p.grad.flatten() for p in model.parameters()]).cpu())
    assert err < 1e-3, f"backend={backend!r}: gradient relative error {err:.2e}"


#: SEW blocks through one kernel call on CUDA: (connect, neuron, last BN in eval mode -> fused)
SEW_BLOCK_KERNEL_CASES = [("ADD", "if", True), ("AND", "lif", False), ("IAND", "plif", True)]


def _sew_block_connect_call(device, connect, neuron, bn_eval, monkeypatch):
    """A downsampling SEW block (backend='fused', 16 -> 32 channels, T = 4) run once on ``device`` with a gradient
    back: what its one connect-fused kernel call got (input, shortcut, whether the BN was fused), what it gave
    (O, the residual neuron's V[T-1]) and the gradients of its input, shortcut and parameters; and the block."""
    from sj_sew.neurons import fused

    torch.manual_seed(0)
    block = sj_sew.BasicBlock(16, 32, 2, connect=connect, neuron=NeuronSpec(neuron, backend="fused"))
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2), m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(1.0, 0.3)
    block.train(not bn_eval).to(device)
    calls, real = [], fused._FusedMultiStep._kernel_forward

    def spy(node, x_seq, **fusion):
        out = real(node, x_seq, **fusion)
        if fusion.get("connect") is not None:
            for t in (x_seq, fusion["shortcut"]):
                t.retain_grad()
            calls.append((x_seq, fusion["shortcut"], fusion.get("bn") is not None, out))
        return out

    monkeypatch.setattr(fused._FusedMultiStep, "_kernel_forward", spy)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 2, 16, 16, 16, generator=g) < 0.5).float().to(device)
    out = block(x)
    out.backward(torch.randn(out.shape, generator=g).to(device))
    monkeypatch.undo()
    assert len(calls) == 1 and calls[0][3] is out
    return calls[0], block


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("connect,neuron,bn_eval", SEW_BLOCK_KERNEL_CASES)
def test_sew_block_kernel_call_on_cuda_equals_the_cpu_reference(connect, neuron, bn_eval, monkeypatch):
    """On CUDA a SEW block with backend='fused' computes O = g(SN(BN(conv(...))), S') in one call of the Triton
    kernels (its last BN fused in eval mode); that call against the ops' CPU reference on the same inputs (the
    route forced on CPU): O and V[T-1] bit for bit, close gradients of its input, the shortcut and the neuron's
    and the fused BN's parameters."""
    _check_sew_block_kernel_call("cuda", connect, neuron, bn_eval, monkeypatch)


def _check_sew_block_kernel_call(device, connect, neuron, bn_eval, monkeypatch):
    from sj_sew.neurons import fused

    (h, shortcut, bn_fused, out), block = _sew_block_connect_call(device, connect, neuron, bn_eval, monkeypatch)
    assert bn_fused == bn_eval and 0.05 < float((out != 0).float().mean()) < 0.95
    v_last = block.residual_neuron.v.detach().cpu()
    functional.reset_net(block)
    reference = copy.deepcopy(block).cpu()
    for p in reference.parameters():
        p.grad = None
    node, bn = reference.residual_neuron, reference.last_bn
    hc, sc = (t.detach().cpu().requires_grad_() for t in (h, shortcut))
    with fused.kernel_route_forced():
        want = node._kernel_forward(hc, bn=bn if bn_fused else None, shortcut=sc, connect=reference.connect.name)
    g = torch.Generator().manual_seed(1)
    torch.rand(4, 2, 16, 16, 16, generator=g)  # (the input's draw) then the gradient's, as on CUDA
    want.backward(torch.randn(want.shape, generator=g))
    assert torch.equal(out.detach().cpu(), want.detach()), f"{int((out.detach().cpu() != want).sum())} outputs differ"
    assert torch.equal(v_last, node.v)
    torch.testing.assert_close(h.grad.cpu(), hc.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shortcut.grad.cpu(), sc.grad, rtol=1e-5, atol=1e-5)
    fused_params = [("sn2.w", block.residual_neuron, node)] * (neuron == "plif")
    fused_params += [("bn2", block.last_bn, bn)] * bn_fused
    for name, got, ref in fused_params:
        for a, b in zip(got.parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-4, atol=1e-3, msg=name)


@cuda
@pytest.mark.cuda
def test_sew_resnet_on_cuda_fuses_every_block(monkeypatch):
    """A SEW ResNet-18 with backend='fused' on CUDA: each block's output from one connect-fused kernel call, with
    its last BN fused in eval mode; a firing-rate monitor keeps them unfused; a training step runs."""
    from sj_sew.neurons import fused

    calls = []
    real = fused._FusedMultiStep._kernel_forward

    def spy(node, x_seq, **fusion):
        calls.append((fusion.get("connect") is not None, fusion.get("bn") is not None))
        return real(node, x_seq, **fusion)

    monkeypatch.setattr(fused._FusedMultiStep, "_kernel_forward", spy)
    model = sj_sew.create_model("sew_resnet18", connect="IAND", backend="fused", width=16, num_classes=5, T=2).cuda()
    x = torch.rand(2, 3, 64, 64, device="cuda")
    for training in (True, False):
        calls.clear()
        functional.reset_net(model.train(training))
        out = model(x)
        assert torch.isfinite(out).all()
        assert sum(c for c, _ in calls) == 8 and sum(b for _, b in calls) == (0 if training else 8)
    calls.clear()
    functional.reset_net(model.train())
    with sj_sew.analysis.FiringRateMonitor(model):
        model(x).sum().backward()
    assert not any(c for c, _ in calls)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
