"""Export: TorchScript and ONNX of the inference model (checked with onnxruntime), NIR round trips."""
import pytest
import torch

import sj_sew
from sj_sew import _compat
from sj_sew.deploy import (export_onnx, export_torchscript, from_nir, from_nir_spikingjelly, graph_model,
                           inference_model, max_pool_to_avg, run_nir, streaming, to_nir)

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
        other = _input(net)
        assert torch.equal(loaded(other), deployed(other))  # a trace, not a constant


@pytest.mark.parametrize("name,kwargs", GRAPH_CASES, ids=IDS)
def test_onnxruntime_equals_pytorch(name, kwargs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = _net(name, kwargs)
    x = _input(net)
    path = export_onnx(net, tmp_path / "net.onnx", T=4, example_input=x)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    deployed = inference_model(net)
    for inp in (x, _input(net)):
        out = torch.from_numpy(session.run(["logits"], {"input": inp.numpy()})[0])
        ref = deployed(inp)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)  # measured: at most 5e-7


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
