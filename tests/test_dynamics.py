"""Every path that simulates a neuron (the fused IF/LIF, the export neuron, the NIR import's IF/LIF, S-ResNet's IF)
gives SpikingJelly's own neuron's spikes and membrane for the same input, through sj_sew.neurons.dynamics; and
sj_sew.neurons.backend makes the backend choices, and raises the errors, that sj_sew made before it existed."""
import itertools
import warnings

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron as sj_neuron, surrogate

import sj_sew
from sj_sew import _compat
from sj_sew.conversion.sresnet import SubtractiveIF
from sj_sew.deploy.export import UnrolledNeuron
from sj_sew.deploy.nir_export import NIRIF, NIRLIF
from sj_sew.neurons import MLFNode, NeuronSpec, backend, dynamics, mlf_spec
from sj_sew.neurons.fused import fast_path_applies, fused_neuron_class

RESETS = [0.0, -0.5, None]  # hard to 0, hard to another value, soft


def _input(T=12, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, 3, 17, generator=g) * 2.0 + 1.0
    x[0, 0] = 1.0  # an IF from rest at 0 reaches the threshold exactly: H >= V_th fires
    return x


def _reference(cls, **kwargs):
    return cls(step_mode="m", surrogate_function=surrogate.ATan(), detach_reset=True, **kwargs)


def _run(node, x):
    """Spikes and final membrane of a fresh SpikingJelly-style neuron on ``x``."""
    node.reset()
    with torch.no_grad():
        spikes = node(x)
    return spikes, node.v


def _same_formula(decay_input: bool, v_reset) -> bool:
    """Whether this SpikingJelly line charges as sj_sew.neurons.dynamics does, operation for operation: 2.x always;
    0.0.0.0.14 writes the charge without decay_input at v_reset 0 or None as v * (1 - 1/tau) + x."""
    return _compat.SJ2 or decay_input or v_reset not in (0.0, None)


def _assert_match(got_spikes, want_spikes, got_v=None, want_v=None, exact=True):
    assert 0.05 < float(want_spikes.mean()) < 0.95, "the input must make some neurons fire and some not"
    assert torch.equal(got_spikes, want_spikes)
    if got_v is not None:
        if exact:
            assert torch.equal(got_v, want_v)
        else:
            torch.testing.assert_close(got_v, want_v, rtol=1e-6, atol=1e-6)


#: (class, parameters) of every neuron with a decay_input switch, with it on and off, and IF.
LEAKY = [(cls, {**kwargs, "decay_input": decay_input}) for decay_input in (True, False)
         for cls, kwargs in [(sj_neuron.LIFNode, {"tau": 2.0}), (sj_neuron.LIFNode, {"tau": 3.5}),
                             (sj_neuron.ParametricLIFNode, {"init_tau": 2.5})]]
NEURONS = [(sj_neuron.IFNode, {})] + LEAKY


# --- each path against SpikingJelly ---------------------------------------------------------------------
@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("cls,kwargs", [(sj_neuron.IFNode, {}), (sj_neuron.LIFNode, {"tau": 2.0}),
                                        (sj_neuron.LIFNode, {"tau": 3.5})])
def test_fused_neuron_is_spikingjelly(cls, kwargs, v_reset):
    reference = _reference(cls, v_reset=v_reset, **kwargs)
    fused = _reference(fused_neuron_class(cls), v_reset=v_reset, **kwargs)
    x = _input()
    assert fast_path_applies(fused, x)
    spikes, v = _run(fused, x)
    want_spikes, want_v = _run(reference, x)
    _assert_match(spikes, want_spikes, v, want_v)


@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("cls,kwargs", NEURONS)
def test_export_neuron_is_spikingjelly(cls, kwargs, v_reset):
    reference = _reference(cls, v_reset=v_reset, **kwargs)
    x = _input(seed=1)
    want_spikes, _ = _run(reference, x)
    with torch.no_grad():
        got = UnrolledNeuron(reference)(x)
    _assert_match(got, want_spikes)


@pytest.mark.parametrize("v_reset", [0.0, -0.5])
@pytest.mark.parametrize("cls,kwargs", [n for n in NEURONS if n[0] is not sj_neuron.ParametricLIFNode])
def test_nir_neurons_are_spikingjelly(cls, kwargs, v_reset):
    """NIR's IF/LIF (hard reset only) as sj_sew imports them, stepped from rest, against SpikingJelly."""
    reference = _reference(cls, v_reset=v_reset, **kwargs)
    decay_input = kwargs.get("decay_input", True)
    if cls is sj_neuron.IFNode:
        imported = NIRIF(1.0, v_reset)
    else:
        imported = NIRLIF(kwargs["tau"], decay_input, 1.0, v_reset)
    x = _input(seed=2)
    want_spikes, want_v = _run(reference, x)
    v, spikes = None, []
    for frame in x:
        s, v = imported(frame, v)
        spikes.append(s)
    _assert_match(torch.stack(spikes), want_spikes, v, want_v, exact=_same_formula(decay_input, v_reset))


@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_sresnet_neuron_is_spikingjelly_soft_reset_if(v_init):
    converted = SubtractiveIF(v_threshold=0.8, v_init=v_init)
    reference = _reference(sj_neuron.IFNode, v_reset=None, v_threshold=0.8)
    x = _input(seed=3)
    reference.reset()
    reference.v = torch.full_like(x[0], v_init * 0.8)
    with torch.no_grad():
        want = reference(x)
    got = torch.stack([converted(frame) for frame in x])
    _assert_match(got, want, converted.v, reference.v)


def test_lif_charge_without_decay_input_is_each_lines_up_to_rounding():
    """Without decay_input at v_reset 0, SpikingJelly 0.0.0.0.14 computes v * (1 - 1/tau) + x: the same number up
    to rounding (and bit for bit on 2.x, whose formula dynamics uses)."""
    reference = _reference(sj_neuron.LIFNode, tau=3.0, decay_input=False)
    x = _input(seed=4)
    want_spikes, want_v = _run(reference, x)
    v, spikes = torch.zeros_like(x[0]), []
    for frame in x:
        s, v = dynamics.fire_and_reset(dynamics.charge_lif(v, frame, 3.0, 0.0, decay_input=False), 1.0, 0.0)
        spikes.append(s)
    _assert_match(torch.stack(spikes), want_spikes, v, want_v, exact=_same_formula(False, 0.0))


def test_plif_charge_is_the_product_with_sigmoid_w():
    node = _reference(sj_neuron.ParametricLIFNode, init_tau=2.5)
    assert dynamics.plif_tau(node.w) == pytest.approx(2.5, rel=1e-6)
    assert torch.equal(dynamics.plif_inv_tau(node.w), node.w.sigmoid())
    v, x = torch.tensor([0.3, -0.2]), torch.tensor([0.7, 0.1])
    k = node.w.detach().sigmoid()
    assert torch.equal(dynamics.charge_plif(v, x, k, -0.5), v + (x - (v - -0.5)) * k)
    assert torch.equal(dynamics.charge_plif(v, x, k, None, decay_input=False), v - v * k + x)


@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("tau", [None, 2.0])
def test_in_place_forms_equal_the_pure_ones(tau, v_reset):
    g = torch.Generator().manual_seed(5)
    v, x = torch.randn(40, generator=g), torch.randn(40, generator=g) + 0.5
    h = dynamics.charge_(torch.empty(40), v, x, tau, v_reset, torch.empty(40))
    assert torch.equal(h, dynamics.charge_if(v, x) if tau is None else dynamics.charge_lif(v, x, tau, v_reset))
    s = dynamics.fire_(torch.empty(40), h, 1.0)
    spikes, v_next = dynamics.fire_and_reset(h, 1.0, v_reset)
    assert torch.equal(s, spikes) and 0 < s.sum() < 40
    assert torch.equal(dynamics.reset_(torch.empty(40), h, s, 1.0, v_reset), v_next)


def test_mlf_neuron_and_its_export_follow_the_paper():
    """u_i[t] = decay * u_i[t-1] * (1 - s_i[t-1]) + x[t], s_i[t] = u_i[t] >= theta_i, output sum_i s_i[t]: written
    out here per level, in plain floats."""
    node = MLFNode(levels=3, decay=0.4)
    x = _input(T=6, seed=6)[:, 0, :5].double()
    u, want = [[0.0] * 5 for _ in range(3)], []
    for frame in x.tolist():
        counts = [0.0] * 5
        for level, theta in enumerate((0.6, 1.6, 2.6)):
            for j, current in enumerate(frame):
                charged = 0.4 * u[level][j] + current
                fired = charged >= theta
                counts[j] += fired
                u[level][j] = 0.0 if fired else charged
        want.append(counts)
    want = torch.tensor(want, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(node.double()(x), want) and len(want.unique()) > 2
        assert torch.equal(UnrolledNeuron(node)(x), want)


# --- MLF's decay (formerly tau) ---------------------------------------------------------------------------
def test_mlf_decay_and_its_deprecated_name_tau():
    assert MLFNode().decay == 0.25 and "decay=0.25" in repr(MLFNode())
    with pytest.warns(DeprecationWarning, match="decay="):
        old = MLFNode(tau=0.5)
    assert old.decay == 0.5 and not hasattr(old, "tau")
    with pytest.raises(TypeError, match="decay= alone"):
        MLFNode(decay=0.3, tau=0.5)
    with pytest.raises(ValueError, match="decay must be a finite number"):
        MLFNode(decay=float("nan"))
    with pytest.warns(DeprecationWarning):
        assert mlf_spec(tau=0.125).make().decay == 0.125
    with pytest.warns(DeprecationWarning):
        net = sj_sew.create_model("ds_resnet14", widths=(4, 8, 8), tau=0.125)
    assert {m.decay for m in net.modules() if isinstance(m, MLFNode)} == {0.125}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mlf_spec(decay=0.125).make().decay == 0.125
        NeuronSpec(MLFNode, decay=0.5).make()


# --- the backend module -------------------------------------------------------------------------------
def test_backend_names_of_this_line():
    assert sj_sew.neurons.BACKENDS is backend.BACKENDS == ("auto", "torch", "cupy", "cuda", "triton", "fused")
    assert backend.line_backends() == ("auto",) + _compat.KERNEL_BACKENDS  # 'fused' is sj_sew's, on every line
    assert set(backend.line_backends()) <= set(backend.BACKENDS)
    with pytest.raises(ValueError, match=r"unknown backend 'jax'; valid: \['auto', 'torch', 'cupy', 'cuda', 'triton', 'fused'\]"):
        NeuronSpec("if", backend="jax")


def test_run_check_names_the_flag(monkeypatch):
    check = backend.check_backend_for_run
    with pytest.raises(ValueError, match="unknown --backend 'jax'"):
        check("jax", "cpu")
    for device in ("cpu", "cuda", None):
        check("auto", device)
        check("torch", device)
    with pytest.raises(ValueError, match="--backend cupy runs GPU kernels; on cpu use --backend auto or torch"):
        check("cupy", "cpu")
    if _compat.SJ2:
        with pytest.raises(ValueError, match="--backend cupy: backend='cupy' is not available.*removed"):
            check("cupy", "cuda")
        monkeypatch.setattr(_compat, "triton_importable", lambda: False)
        with pytest.raises(ValueError, match="--backend triton: backend='triton' needs the triton package"):
            check("triton", "cuda:1")
        check("cuda", "cuda")  # whether the native kernels were built shows on the GPU (sync_backend)
    else:
        with pytest.raises(ValueError, match="--backend cuda: backend='cuda' needs SpikingJelly 2.x"):
            check("cuda", "cuda")
        monkeypatch.setattr(_compat, "cupy_importable", lambda: False)
        with pytest.raises(ValueError, match="--backend cupy: backend='cupy' needs CuPy"):
            check("cupy", "cuda")
        monkeypatch.setattr(_compat, "cupy_importable", lambda: True)
        check("cupy", "cuda")


@pytest.mark.parametrize("name", ["auto", "torch", "cupy", "cuda", "triton"])
def test_pinned_kernel_and_backend_attribute(name, monkeypatch):
    monkeypatch.setattr(_compat, "cupy_importable", lambda: True)
    if name not in backend.line_backends():
        with pytest.raises((ValueError, RuntimeError), match=f"backend='{name}'"):
            NeuronSpec("if", backend=name)
        return
    if name == "triton" and not _compat.triton_importable():
        pytest.skip("needs the triton package")
    spec = NeuronSpec("if", backend=name)
    sg = spec.kwargs["surrogate_function"]
    if _compat.SJ2:  # SpikingJelly picks by device; a pinned name scopes its kernel to the neuron
        assert spec.kernel == (None if name == "auto" else name)
        assert backend.pinned_kernel(name, MLFNode) is None
        assert [backend.backend_attribute(name, spec.cls, sg, d) for d in ("cpu", "cuda", None)] == [None] * 3
    else:  # the neuron's backend attribute selects: auto is CuPy on a GPU that can run it, else torch
        assert spec.kernel is None
        want = {"auto": ["torch", "cupy", "torch"], "torch": ["torch"] * 3, "cupy": ["cupy"] * 3}[name]
        assert [backend.backend_attribute(name, spec.cls, sg, d) for d in ("cpu", "cuda", None)] == want
        assert backend.backend_attribute("auto", spec.cls, _NoCudaCode(), "cuda") == "torch"


class _NoCudaCode(sj_sew.Rectangular):
    def cuda_codes(self, y, x, dtype):
        raise NotImplementedError


def test_kernel_check_error_and_sync_order(monkeypatch):
    """A pinned 2.x kernel that cannot run on the GPU: the error names it, and the network stays unsynced."""
    monkeypatch.setattr(_compat, "kernel_unavailable", lambda cls, kernel, device: "cuda: not built")
    with pytest.raises(RuntimeError, match="backend='cuda'.*IFNode on cuda:1 \\(cuda: not built\\).*backend='auto'"):
        backend.check_kernel(sj_neuron.IFNode, "cuda", torch.device("cuda", 1))
    monkeypatch.setattr(_compat, "kernel_unavailable", lambda cls, kernel, device: None)
    backend.check_kernel(sj_neuron.IFNode, "cuda", torch.device("cuda", 1))

    net = sj_sew.create_model("sew_resnet18", width=4, num_classes=2, T=2, backend="torch")
    calls = []
    monkeypatch.setattr(backend, "check_kernel", lambda cls, kernel, device: calls.append((cls, kernel, device)))
    net.sync_backend(torch.device("cpu"))
    assert calls == [] and net._backend_device == torch.device("cpu")
    net.sync_backend(torch.device("cuda", 0))
    assert calls == ([(net.neuron_spec.cls, "torch", torch.device("cuda", 0))] if _compat.SJ2 else [])

    def refuse(*_):
        raise RuntimeError("refused")

    monkeypatch.setattr(backend, "check_kernel", refuse)
    if _compat.SJ2:
        with pytest.raises(RuntimeError, match="refused"):
            net.sync_backend(torch.device("cuda", 1))
        assert net._backend_device == torch.device("cuda", 0)


def test_sync_points_neurons_at_the_device_backend(monkeypatch):
    if _compat.SJ2:
        pytest.skip("SpikingJelly 2.x neurons have no backend attribute")
    monkeypatch.setattr(_compat, "cupy_importable", lambda: True)
    net = sj_sew.create_model("sew_resnet18", width=4, num_classes=2, T=2)
    neurons = [m for m in net.modules() if isinstance(m, net.neuron_spec.cls)]
    net.sync_backend(torch.device("cuda"))
    assert {m.backend for m in neurons} == {"cupy"}
    net.sync_backend(torch.device("cpu"))
    assert {m.backend for m in neurons} == {"torch"}


class _Neuron(nn.Module):
    backend = "cupy"


@pytest.mark.parametrize("dtype,pinned", itertools.product([torch.bfloat16, torch.float64], [True, False]))
def test_cupy_dtype_guard(dtype, pinned):
    node, guard = _Neuron(), backend.CupyDtypeGuard(pinned=pinned)
    assert guard.pre(node, (torch.zeros(2),)) is None and node.backend == "cupy"
    if pinned:
        with pytest.raises(ValueError, match=f"backend='cupy'.*float32 and float16.*{dtype}.*backend='auto'"):
            guard.pre(node, (torch.zeros(2, dtype=dtype),))
        return
    guard.pre(node, (torch.zeros(2, dtype=dtype),))
    assert node.backend == "torch"
    guard.post(node, (), None)
    assert node.backend == "cupy"


def test_hooks_a_new_neuron_gets(monkeypatch):
    monkeypatch.setattr(_compat, "cupy_importable", lambda: True)
    names = [n for n in backend.line_backends() if n != "triton" or _compat.triton_importable()]
    hooks = {name: [h.__self__ for h in NeuronSpec("if", backend=name).make()._forward_pre_hooks.values()]
             for name in names}
    if _compat.SJ2:
        assert hooks["auto"] == [] and all(type(h[0]) is _compat.KernelScope and h[0].choice == name
                                           for name, h in hooks.items() if name != "auto")
    else:
        assert [type(h) for h in hooks["auto"] + hooks["cupy"]] == [backend.CupyDtypeGuard] * 2
        assert [h.pinned for h in hooks["auto"] + hooks["cupy"]] == [False, True] and hooks["torch"] == []
