"""Export: TorchScript and ONNX of the inference model (checked with onnxruntime), NIR round trips."""
import warnings

import numpy as np
import pytest
import torch

from spikingjelly.activation_based import neuron as sj_neuron

import sj_sew
from sj_sew import _compat
from sj_sew.deploy import (export_onnx, export_torchscript, from_nir, from_nir_spikingjelly, graph_model,
                           inference_model, max_pool_to_avg, run_nir, streaming, to_nir, UnrolledNeuron)

GRAPH_CASES = [
    ("sew_resnet18", dict(width=8, connect="ADD")),
    ("sew_resnet18", dict(width=8, connect="IAND", neuron="lif")),
    ("spiking_resnet18", dict(width=8, neuron="plif")),
    ("plain_resnet18", dict(width=8)),
    ("ms_resnet", dict(depth=8, widths=(8, 8, 16))),
    ("ds_resnet", dict(depth=8, widths=(8, 8, 16))),
    ("surrogate_net", {}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(GRAPH_CASES)]


def _net(name, kwargs, seed=0):
    torch.manual_seed(seed)
    return sj_sew.create_model(name, num_classes=5, **kwargs).eval()


def _input(net, T=4, N=2, size=32):
    return torch.rand(T, N, net.in_channels, size, size) * 3


@pytest.mark.parametrize("name,kwargs", GRAPH_CASES, ids=IDS)
def test_graph_form_and_torchscript_equal_the_inference_model(name, kwargs, tmp_path):
    net = _net(name, kwargs)
    x = _input(net)
    deployed = inference_model(net)
    ref = deployed(x)
    assert ref.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(graph_model(deployed, T=4)(x), ref)
    traced = export_torchscript(deployed, tmp_path / "net.pt", T=4, example_input=x)
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    with torch.no_grad():
        assert torch.equal(traced(x), ref)
        assert torch.equal(loaded(x), ref)
        other = _input(net, N=3)
        assert torch.equal(loaded(other), deployed(other))  # a trace, not a constant, for any batch size


SMALL_NOTATION = "c8k3s1-BN-{neuron}-{{SEW Block(c8)-MPk2s2}}*3-FC5"  # a 7B-Net-like NotationNet for 16x16
ONNX_CASES = GRAPH_CASES + [
    ("sew_resnet18", dict(width=8, connect="AND")),
    ("sew_resnet18", dict(width=8, connect="IAND")),
    ("NotationNet", dict(notation=SMALL_NOTATION.format(neuron="PLIF"), in_channels=2, input_size=16)),
    ("NotationNet", dict(notation=SMALL_NOTATION.format(neuron="LIF"), in_channels=2, input_size=16)),
]
#: float rounding: ONNX Runtime and PyTorch sum the convolutions in other orders (measured: at most 5e-7).
ROUNDING = 1e-5


def _onnx_net(name, kwargs):
    if name == "NotationNet":
        torch.manual_seed(0)
        return sj_sew.NotationNet(**kwargs).eval()
    return _net(name, kwargs)


#: how near the threshold a charge may be for two runtimes to fire differently on equal input spikes: float
#: rounding of the charge (measured: a flip's first layer has |H - V_th| below 1e-6).
EDGE = 1e-5


class _WithSpikes(torch.nn.Module):
    """A graph model that also returns every exported neuron's output (in the order they run) and, outside a
    trace, each neuron's |H - V_th| (UnrolledNeuron.threshold_margin of the input it got)."""

    def __init__(self, graph):
        super().__init__()
        self.net = graph  # not "graph": the ONNX exporter takes a module with .graph for a ScriptModule
        self.neurons = [m for m in graph.modules() if isinstance(m, UnrolledNeuron)]

    def forward(self, x):
        seen = []
        hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0], o))) for m in self.neurons]
        try:
            logits = self.net(x)
        finally:
            for h in hooks:
                h.remove()
        if torch.jit.is_tracing():
            return (logits, *[o for _, _, o in seen])
        return logits, [(o, m.threshold_margin(i)) for m, i, o in seen]


def assert_equal_up_to_threshold_flips(logits, spikes, ref, ref_layers):
    """ONNX Runtime (``logits``, ``spikes`` of each neuron) against PyTorch (``ref``; ``ref_layers``: spikes and
    |H - V_th| of each neuron): the two sum convolutions in other orders, so a charge within rounding of the
    threshold may fire in one and not in the other, and the flip then spreads through the later layers. Checked:
    in the first layer where a sample's spikes differ, each neuron's first differing step has |H - V_th| <= EDGE;
    a sample whose spikes all agree has equal argmax and logits within ROUNDING. Returns which samples flipped."""
    flipped = torch.zeros(ref.shape[0], dtype=torch.bool)
    for got, (want, margin) in zip(spikes, ref_layers):
        differ = got != want  # [T, N, ...]
        first_layer = ~flipped.view(1, -1, *[1] * (differ.dim() - 2))
        first_step = differ & (differ.cumsum(0) == 1)
        new = first_step & first_layer
        if new.any():
            assert margin[new].max() <= EDGE, f"a spike differs {margin[new].max():.3g} from the threshold"
        flipped |= differ.transpose(0, 1).flatten(1).any(1)
    agree = ~flipped
    assert torch.equal(logits.argmax(1)[agree], ref.argmax(1)[agree])
    assert ((logits - ref).abs().amax(1)[agree] <= ROUNDING).all(), (logits - ref).abs().amax(1)
    return flipped


def test_threshold_flip_comparison_fails_on_real_differences():
    ref = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    want = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])  # [T=2, N=2, 2]
    margin = torch.full_like(want, 0.5)
    margin[0, 1, 0] = 1e-7  # sample 1's first neuron, step 0: at the threshold edge
    layers = [(want, margin), (want, margin)]
    flip = want.clone()
    flip[0, 1, 0] = 0.0
    flip[1, 1, 0] = 1.0  # the same neuron's later step follows the flip (another reset)
    later = want.clone()
    later[:, 1] = 1 - later[:, 1]  # a later layer differs anywhere
    assert not assert_equal_up_to_threshold_flips(ref + 4e-7, [want, want], ref, layers).any()
    far = ref.clone()
    far[1] = far[1].flip(0)  # sample 1's logits may go anywhere once its spikes differ
    assert assert_equal_up_to_threshold_flips(far, [flip, later], ref, layers).tolist() == [False, True]
    wrong_spike = want.clone()
    wrong_spike[0, 0, 1] = 0.0  # sample 0: far from the threshold
    for logits, spikes in ((ref + 1e-3, [want, want]), (ref.flip(1), [want, want]), (ref, [wrong_spike, want])):
        with pytest.raises(AssertionError):
            assert_equal_up_to_threshold_flips(logits, spikes, ref, layers)


@pytest.mark.parametrize("name,kwargs", ONNX_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ONNX_CASES)])
def test_onnxruntime_equals_pytorch_at_any_batch_size(name, kwargs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = _onnx_net(name, kwargs)
    size = kwargs.get("input_size", 32)
    example = _input(net, N=2, size=size)
    path = export_onnx(net, tmp_path / "net.onnx", T=4, example_input=example)
    probe = _WithSpikes(graph_model(net, T=4))  # the same graph, with every neuron's spikes as outputs
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of the input checks
        torch.onnx.export(probe, (example,), str(tmp_path / "spikes.onnx"), dynamo=False, input_names=["input"],
                          opset_version=17, dynamic_axes={"input": {1: "batch"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session, spikes = (ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                       for p in (path, tmp_path / "spikes.onnx"))
    assert session.get_inputs()[0].shape[1] == "batch" and session.get_outputs()[0].shape[0] == "batch"
    deployed = inference_model(net)
    for batch in (1, 3, 8):
        x = _input(net, N=batch, size=size)
        out = torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])
        got = [torch.from_numpy(a) for a in spikes.run(None, {"input": x.numpy()})]
        assert torch.equal(got[0], out)  # the probe is the same graph
        ref = deployed(x)
        assert ref.abs().sum() > 0
        with torch.no_grad():
            ref_graph, ref_layers = probe(x)
        assert torch.equal(ref_graph, ref)
        assert_equal_up_to_threshold_flips(out, got[1:], ref, ref_layers)


def test_static_image_export():
    net = _net("sew_resnet18", dict(width=8, T=4))
    image = torch.rand(2, 3, 32, 32) * 3
    traced = export_torchscript(net, example_input=image)
    with torch.no_grad():
        assert torch.equal(traced(image), inference_model(net)(image))


def test_export_needs_a_fixed_T_and_known_neurons():
    net = _net("sew_resnet18", dict(width=4))
    with pytest.raises(ValueError, match="fixed number of time steps"):
        graph_model(net)
    graph = graph_model(net, T=2)
    with pytest.raises(ValueError, match="unrolled for T=2"):
        graph(_input(net, T=3))
    torch.manual_seed(0)
    soft = sj_sew.SpikingResNet(sj_sew.BasicBlock, [1, 1], width=4, num_classes=5, T=2, v_reset=None).eval()
    x = _input(soft, T=2)
    with torch.no_grad():
        assert torch.equal(graph_model(soft)(x), inference_model(soft)(x))  # soft reset unrolls too


# ---------------------------------------------------------------------------------------------------------
# NIR
# ---------------------------------------------------------------------------------------------------------

NIR_CASES = [
    ("sew_resnet18", dict(width=8, connect="ADD")),
    ("spiking_resnet18", dict(width=8, neuron="lif")),
    ("plain_resnet18", dict(width=8, neuron="plif")),
    ("ms_resnet", dict(depth=14, widths=(8, 8, 16))),
    ("ms_resnet18", dict(widths=(8, 8, 16, 16))),
    ("surrogate_net", {}),
]


def _per_step_logits(net, x):
    stream = streaming(inference_model(net))
    return torch.stack([stream(frame) for frame in x])


@pytest.mark.parametrize("name,kwargs", NIR_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(NIR_CASES)])
def test_nir_round_trip_gives_the_same_outputs_over_T_steps(name, kwargs, tmp_path):
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    net = _net(name, kwargs)
    if any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()):
        with pytest.raises(ValueError, match="no max pooling"):
            to_nir(net, 32)
        net = max_pool_to_avg(net)
        mode = "avg"
    else:
        mode = "error"
    x = _input(net)
    ref = _per_step_logits(net, x)
    assert ref.abs().sum() > 0
    graph = to_nir(net, (32, 32), max_pool=mode, path=tmp_path / "net.nir")
    assert not any(type(n).__name__ in ("BatchNorm", "MaxPool2d") for n in graph.nodes.values())
    out = run_nir(from_nir(tmp_path / "net.nir"), x)  # from the file: what other tools read
    assert torch.equal(out, ref), (out - ref).abs().max()
    assert torch.equal(out.mean(0), inference_model(net)(x))
    if _compat.spikingjelly_nir_import() is not None:  # SpikingJelly 2.x's own importer
        out_sj = run_nir(from_nir_spikingjelly(graph), x)
        assert torch.equal(out_sj, ref), (out_sj - ref).abs().max()


def _spread_plif(net, seed=1):
    """PLIF ``w`` spread over [-2, 2] (tau from 1.1 to 8.4, mostly not a power of two) and BatchNorm statistics
    under which every stage fires."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, sj_neuron.ParametricLIFNode):
                m.w.copy_(torch.rand((), generator=g) * 4 - 2)
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.bias.copy_(torch.rand(c, generator=g))
    return net


@pytest.mark.parametrize("name,kwargs,size", [
    ("net7b", {}, 128),
    ("NotationNet", dict(notation=SMALL_NOTATION.format(neuron="PLIF"), in_channels=2, input_size=16), 16),
    ("NotationNet", dict(notation="c8k3s1-BN-PLIF-{SEW Block(c8)-APk2s2}*2-FC5", in_channels=2, input_size=16,
                         decay_input=False), 16),
], ids=["net7b", "notation", "notation-no-decay-input"])
def test_nir_plif_round_trip_is_exact_for_any_tau(name, kwargs, size, tmp_path, monkeypatch):
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    from sj_sew.deploy import nir_export
    from sj_sew.neurons import dynamics
    torch.manual_seed(0)
    base_net = sj_sew.NotationNet(**kwargs) if name == "NotationNet" else sj_sew.create_model(name, num_classes=5)
    net = _spread_plif(max_pool_to_avg(base_net.eval()))
    plifs = [m for m in net.modules() if isinstance(m, sj_neuron.ParametricLIFNode)]
    assert len({float(m.w) for m in plifs}) == len(plifs) > 1
    x = _input(net, T=16, N=8, size=size)
    stream = streaming(inference_model(net))
    ref = torch.stack([stream(frame) for frame in x])
    ref_v = torch.cat([m.v.flatten() for m in stream.modules() if isinstance(m, sj_neuron.ParametricLIFNode)])
    assert ref.abs().sum() > 0 and not torch.equal(ref[0], ref[-1])
    graph = to_nir(net, size, max_pool="avg", path=tmp_path / "net.nir")
    lifs = [n for n in graph.nodes.values() if type(n).__name__ == "LIF"]
    assert len(lifs) == len(plifs) and all(n.metadata[nir_export.PLIF_METADATA] == "PLIF" for n in lifs)

    def run(module):  # the per-step logits and every neuron's membrane after the last step
        last = {}
        for m in module.modules():
            if isinstance(m, nir_export.NIRIF):
                m.register_forward_hook(lambda m, i, o: last.__setitem__(m, o[1].flatten()))
        return run_nir(module, x), torch.cat(list(last.values()))

    def same_membranes(v):  # as multisets: the two models need not list their neurons in the same order
        return v.shape == ref_v.shape and torch.equal(v.sort().values, ref_v.sort().values)

    out, v = run(from_nir(tmp_path / "net.nir"))
    assert torch.equal(out, ref), (out - ref).abs().max()
    if _compat.SJ2 or kwargs.get("decay_input", True):  # 0.0.0.0.14's PLIF without decay_input rounds its
        assert same_membranes(v)                        # charge otherwise (sj_sew.neurons.dynamics)
    # the old import (tau written in float32, read back as a LIF dividing by it) charges other membranes, and on
    # net7b they flip spikes (measured: logits off by 0.26)
    monkeypatch.setattr(nir_export.NIRPLIF, "charge", lambda self, v, x: dynamics.charge_lif(
        v, x, float(np.float32(1e-4 / float(self.inv_tau))) / 1e-4, self.v_reset, self.decay_input))
    out_old, v_old = run(from_nir(tmp_path / "net.nir"))
    assert not same_membranes(v_old)
    if name == "net7b":
        assert not torch.equal(out_old, ref)


def test_sew_add_sums_are_fan_in_edges():
    pytest.importorskip("nir")
    net = max_pool_to_avg(_net("sew_resnet18", dict(width=4)))
    graph = to_nir(net, 32, max_pool="avg")
    # layer1.0's output A + S feeds layer1.1's conv1 and (identity shortcut) its sum: two edges into conv1
    into = [src for src, dst in graph.edges if dst == "layer1_1_conv1"]
    assert sorted(into) == ["layer1_0_sn2", "maxpool"]


def test_spikingjelly_importer_is_a_clear_error_where_missing():
    pytest.importorskip("nir")
    graph = to_nir(_net("ms_resnet", dict(depth=8, widths=(4, 4, 8))), 16)
    if _compat.spikingjelly_nir_import() is None:
        with pytest.raises(RuntimeError, match="no nir_exchange.*sj_sew.deploy.from_nir"):
            from_nir_spikingjelly(graph)
    else:
        assert callable(from_nir_spikingjelly(graph))


@pytest.mark.parametrize("name,kwargs,match", [
    ("sew_resnet18", dict(width=4, connect="AND"), "AND: A\\*S.*no multiplication"),
    ("sew_resnet18", dict(width=4, connect="IAND"), "IAND.*no multiplication"),
    ("ds_resnet", dict(depth=8, widths=(4, 4, 8)), "MLFNode cannot be exported.*multi-level"),
    ("MSResNet", dict(layers=(1, 1), widths=(4, 8), stem="conv3", first_stride=1, v_reset=None), "soft reset"),
])
def test_nir_refuses_what_it_cannot_express(name, kwargs, match):
    pytest.importorskip("nir")
    net = getattr(sj_sew, name)(num_classes=5, **kwargs) if name[0].isupper() else _net(name, kwargs)
    net = max_pool_to_avg(net)
    with pytest.raises(ValueError, match=match):
        to_nir(net, 32, max_pool="avg")
    with pytest.raises(ValueError, match="unknown max_pool"):
        to_nir(net, 32, max_pool="min")


# ---------------------------------------------------------------------------------------------------------
# scripts/export.py
# ---------------------------------------------------------------------------------------------------------

def _run_dir(tmp_path):
    from sj_sew import training

    cfg = training.resolve_config({"epochs": 1, "out": str(tmp_path)})
    model = training.model_from_config(cfg)
    training.save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "epoch": 0},
                             tmp_path / "checkpoint.pt")
    return tmp_path


def test_export_script_writes_and_checks_each_format(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    pytest.importorskip("onnxruntime")
    pytest.importorskip("nir")
    run = _run_dir(tmp_path)
    spec = importlib.util.spec_from_file_location(
        "export_script", Path(__file__).resolve().parents[1] / "scripts" / "export.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    for fmt, ext in (("onnx", "onnx"), ("torchscript", "pt")):
        assert script.main([str(run), "--format", fmt]) == 0
        assert (run / f"model.{ext}").is_file() and "max |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot export .* to nir: .*no max pooling"):
        script.main([str(run), "--format", "nir"])
    assert script.main([str(run / "checkpoint.pt"), "--format", "nir", "--max-pool", "avg"]) == 0
    assert "per step = 0" in capsys.readouterr().out and (run / "model.nir").is_file()
