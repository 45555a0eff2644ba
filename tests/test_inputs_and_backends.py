"""Clear errors for bad input; neuron, surrogate and backend selection on both SpikingJelly lines."""
import pytest
import torch
from spikingjelly.activation_based import functional, neuron as sj_neuron

import sj_sew
from sj_sew import _compat
from sj_sew.neurons import NeuronSpec


@pytest.fixture(scope="module")
def net():
    return sj_sew.create_model("sew_resnet18", num_classes=3, T=2)


@pytest.mark.parametrize("shape,match", [
    ((3, 32, 32), r"\[T, N, C, H, W\]"),
    ((1, 2, 2, 3, 32, 32), r"\[T, N, C, H, W\]"),
    ((2, 1, 32, 32), "expected 3 input channels"),
    ((3, 1, 3, 32, 32), "built with T=2"),
])
def test_bad_input_shapes(net, shape, match):
    with pytest.raises(ValueError, match=match):
        net(torch.rand(*shape))


def test_static_input_needs_T():
    seq_only = sj_sew.create_model("net7b")
    with pytest.raises(ValueError, match="T=<time steps>"):
        seq_only(torch.rand(1, 2, 128, 128))
    with pytest.raises(TypeError):
        seq_only([1, 2, 3])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"connect": "OR"}, ValueError, "IAND"),
    ({"neuron": "izhikevich"}, ValueError, "plif"),
    ({"neuron": torch.nn.ReLU}, TypeError, "SpikingJelly neuron class"),
    ({"backend": "jax"}, ValueError, "auto"),
    ({"neuron": "if", "tau": 2.0}, TypeError, "v_threshold"),
    ({"surrogate_function": "relu"}, ValueError, "atan"),
    ({"T": 0}, ValueError, "T must be"),
    ({"family": "dense"}, ValueError, "sew"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    from sj_sew.models.resnet import SpikingResNet
    from sj_sew.blocks import BasicBlock
    with pytest.raises(exc, match=match):
        SpikingResNet(BasicBlock, [1, 1], num_classes=2, **kwargs)


def test_paper_defaults_and_neuron_kwargs():
    spec = NeuronSpec("plif", tau=3, v_threshold=1)
    n = spec.make()
    assert isinstance(n, sj_neuron.ParametricLIFNode) and n.step_mode == "m"
    assert n.v_threshold == 1.0 and n.v_reset == 0.0 and n.detach_reset
    assert type(n.surrogate_function).__name__ == "ATan" and n.surrogate_function.alpha == 2.0
    assert abs(1 / n.w.sigmoid().item() - 3.0) < 1e-5
    lif = NeuronSpec("lif", tau=4.0, surrogate_function="rect").make()
    assert lif.tau == 4.0 and isinstance(lif.surrogate_function, sj_sew.Rectangular)
    # each neuron gets its own surrogate instance
    a, b = spec.make(), spec.make()
    assert a.surrogate_function is not b.surrogate_function


def test_any_spikingjelly_neuron_class_plugs_in():
    net = sj_sew.create_model("sew_resnet18", neuron=sj_neuron.LIFNode, tau=2.0, num_classes=2, T=2)
    assert isinstance(net.sn1, sj_neuron.LIFNode)
    functional.reset_net(net)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_cupy_backend_selection_and_errors(monkeypatch):
    spec = NeuronSpec("if")
    if _compat.SJ2:
        with pytest.raises(RuntimeError, match="removed its CuPy backend"):
            NeuronSpec("if", backend="cupy")
        assert spec.backend_for("cuda") is None and spec.backend_for("cpu") is None
        assert not hasattr(spec.make(), "backend")
        return
    # 0.0.0.0.14: auto picks cupy on CUDA exactly when CuPy is importable, torch elsewhere
    monkeypatch.setattr(_compat, "cupy_importable", lambda: False)
    assert spec.backend_for("cuda") == "torch"
    with pytest.raises(ImportError, match="cupy-cuda12x"):
        NeuronSpec("if", backend="cupy")
    monkeypatch.setattr(_compat, "cupy_importable", lambda: True)
    assert spec.backend_for("cuda") == "cupy"
    assert spec.backend_for("cpu") == "torch"
    assert NeuronSpec("lif", backend="cupy").backend_for("cpu") == "cupy"
    monkeypatch.undo()
    if _compat.cupy_importable():  # a real CuPy: neurons are built on its backend
        assert NeuronSpec("lif", backend="cupy").make().backend == "cupy"
    assert NeuronSpec("if", backend="cupy", surrogate_function="constant").backend == "cupy"
    with pytest.raises(ValueError, match="no CUDA code"):
        NeuronSpec("if", backend="cupy", surrogate_function=_NoCuda())


class _NoCuda(sj_sew.Rectangular):
    def cuda_codes(self, y, x, dtype):
        raise NotImplementedError


def test_auto_backend_syncs_neurons_to_device():
    net = sj_sew.create_model("net7b")
    if _compat.SJ2:
        pytest.skip("SpikingJelly 2.x chooses the kernel per device itself")
    if not _compat.cupy_importable():
        pytest.skip("needs CuPy installed (the [cupy] extra) to build CuPy-backend neurons")
    net.sync_backend(torch.device("cuda"))
    assert {m.backend for m in net.modules() if isinstance(m, sj_neuron.ParametricLIFNode)} == {"cupy"}
    net.sync_backend(torch.device("cpu"))
    assert {m.backend for m in net.modules() if isinstance(m, sj_neuron.ParametricLIFNode)} == {"torch"}


@pytest.mark.parametrize("surrogate,expected", [
    (sj_sew.Rectangular(), [0.0, 1.0, 1.0, 1.0, 0.0]),
    (sj_sew.Rectangular(alpha=2.0), [0.5, 0.5, 0.5, 0.5, 0.5]),
    (sj_sew.Constant(), [1.0] * 5),
])
def test_surrogate_gradients(surrogate, expected):
    x = torch.tensor([-0.6, -0.4, 0.0, 0.4, 0.6], requires_grad=True)
    y = surrogate(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx(expected)


def test_surrogates_emit_cuda_code_for_both_dtypes():
    for s in (sj_sew.Rectangular(), sj_sew.Constant()):
        assert "grad_s_to_h" in s.cuda_codes("grad_s_to_h", "over_th", "float")
        assert "__float2half2_rn" in s.cuda_codes("g", "x", "half2")
        assert s.cuda_code("x", "y", "fp32").startswith("const float y")


def test_reset_net_clears_state():
    net = sj_sew.create_model("surrogate_net", T=2, num_classes=3)
    x = torch.rand(2, 3, 32, 32)
    functional.reset_net(net)
    first = net(x)
    functional.reset_net(net)
    assert torch.equal(net(x), first)
