"""Deployment: BatchNorm folding, channels-last max pooling and the inference model give the trained
model's results (no timings here); NIR graphs equal those of the code before networks described their own
layer order."""
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import model_pair
from spikingjelly.activation_based import functional, layer

import sj_sew
from sj_sew.deploy import (ChannelsLastMaxPool2d, InferenceModel, fold_batchnorm, from_nir, fused_conv,
                           inference_model, max_pool_to_avg, run_nir, to_nir)
from sj_sew.memory import memory_saving


def test_fused_conv_equals_conv_then_bn_in_eval():
    conv = layer.Conv2d(3, 8, 3, padding=1, bias=False, step_mode="m")
    bn = layer.BatchNorm2d(8, step_mode="m")
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.3, 0.3)
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    bn.eval()
    x = torch.randn(2, 4, 3, 6, 6)
    fused = fused_conv(conv, bn)
    assert fused.step_mode == "m"
    torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs,x_shape", [
    ("sew_resnet18", {"num_classes": 10, "T": 4}, (4, 3, 32, 32)),
    ("sew_resnet50", {"num_classes": 10, "connect": "AND", "zero_init_residual": True, "width": 16},
     (2, 3, 3, 32, 32)),
    ("net7b", {}, (2, 1, 2, 128, 128)),
    ("ms_resnet", {"depth": 14, "T": 2}, (2, 3, 16, 16)),
    # the stem's BN follows two convs after conv1: it folds into the last of them, not into its namesake conv1
    ("ms_resnet104", {"num_classes": 10, "widths": (8, 8, 16, 16), "layers": (1, 1, 1, 1), "T": 2}, (2, 3, 32, 32)),
    ("ds_resnet14", {"widths": (8, 16, 32), "T": 2}, (2, 3, 16, 16)),
])
def test_inference_model_same_predictions(name, kwargs, x_shape):
    model, _ = model_pair(name, **kwargs)
    norm = torch.nn.modules.batchnorm._BatchNorm  # BatchNorm2d, and DS-ResNet's tdBN (eps outside the root)
    for m in model.modules():
        if isinstance(m, norm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = memory_saving(model) if name == "sew_resnet18" else model  # checkpointing is switched off
    deployed = inference_model(model)
    assert isinstance(deployed, InferenceModel) and "forward" not in vars(deployed.model)
    assert not any(isinstance(m, norm) for m in deployed.modules()), "every normalisation after a conv folds"
    assert any(isinstance(m, norm) for m in model.modules()), "the original stays as it was"
    assert not deployed.training and not any(p.requires_grad for p in deployed.parameters())
    x = torch.rand(*x_shape) * 3
    model.eval()
    with torch.no_grad():
        functional.reset_net(model)
        expected = model(x)
        functional.reset_net(model)
    got = deployed(x)
    assert torch.is_inference(got) and not got.requires_grad
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert torch.equal(deployed(x), got), "each call starts from rest"


def test_fold_batchnorm_counts_every_conv_bn_pair():
    net = sj_sew.create_model("sew_resnet18", num_classes=10)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fold_batchnorm(net.eval()) == n_bn == 20


def test_channels_last_max_pool_same_values():
    pool = torch.nn.MaxPool2d(3, 2, 1)
    fast = ChannelsLastMaxPool2d(pool)
    x = (torch.rand(3, 2, 4, 9, 9) < 0.4).float() + torch.rand(3, 2, 4, 9, 9) * (torch.rand(1) > 2)
    assert torch.equal(fast(x), pool(x.flatten(0, 1)).unflatten(0, (3, 2)))
    assert fast(x).is_contiguous()
    y = torch.randn(2, 4, 10, 10)
    assert torch.equal(fast(y), pool(y))
    with pytest.raises(ValueError, match="indices"):
        ChannelsLastMaxPool2d(torch.nn.MaxPool2d(2, return_indices=True))


def test_inference_model_refuses_training():
    deployed = inference_model(sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2))
    assert deployed.eval() is deployed
    with pytest.raises(RuntimeError, match="cannot be trained"):
        deployed.train()


# ---------------------------------------------------------------------------------------------------------
# NIR graphs against the saved output of the old network walk
# ---------------------------------------------------------------------------------------------------------

#: Written by ``python tests/test_deploy.py --write-nir-fixture`` on the code before networks described their
#: own layer order (commit 87ca822, which switched on the concrete network classes). The ``plain_plif`` entry
#: was rewritten at 6344915, whose PLIF nodes carry tau and r in float64 so that PLIF's round trip is exact; its
#: node names, types, other fields, edges and per-step logits were unchanged by that rewrite. Every neuron node
#: was rewritten when graphs began to write the threshold one float32 step lower and to record the original
#: threshold and the firing rule in the node's metadata (the threshold edge, issue 21): only those two fields
#: changed, which ``test_nir_fixture_rewrite_changed_only_the_thresholds`` checks against the record before it.
NIR_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "nir_graphs_87ca822.json"

#: case -> (registered name or sj_sew class, kwargs, input side): every family and stem to_nir exports
NIR_GRAPH_CASES = {
    "sew_add": ("sew_resnet18", dict(width=8, connect="ADD"), 32),
    "sew_bottleneck": ("sew_resnet50", dict(width=4, neuron="lif"), 32),
    "spiking_lif": ("spiking_resnet18", dict(width=8, neuron="lif"), 32),
    "plain_plif": ("plain_resnet18", dict(width=8, neuron="plif"), 32),
    "ms_cifar": ("ms_resnet", dict(depth=14, widths=(8, 8, 16)), 32),
    "ms_conv7": ("ms_resnet18", dict(widths=(8, 8, 16, 16)), 32),
    "ms_deep_stem": ("MSResNet", dict(layers=(1, 1), widths=(8, 16), stem="deep", stem_width=8, first_stride=1), 16),
    "notation": ("surrogate_net", {}, 32),
    "notation_lif": ("NotationNet", dict(notation="c8k3s1-BN-LIF-{SEW Block(c8)-APk2s2}*2-c16k3s1-BN-LIF-FC10",
                                         in_channels=2, input_size=16), 16),
}


def _nir_case(case: str):
    """The graph of one case (non-trivial BatchNorm statistics, max pooling as average pooling) and the per-step
    logits of running it on a fixed input from rest."""
    name, kwargs, size = NIR_GRAPH_CASES[case]
    torch.manual_seed(0)
    build = getattr(sj_sew, name) if name[0].isupper() else (lambda **kw: sj_sew.create_model(name, **kw))
    net = build(num_classes=5, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2), (m.running_mean, -0.2, 0.2),
                                  (m.running_var, 0.5, 2.0)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    has_max_pool = any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    if has_max_pool:
        net = max_pool_to_avg(net)
    graph = to_nir(net, size, max_pool="avg" if has_max_pool else "error")
    x = torch.rand(4, 2, net.in_channels, size, size, generator=g) * 3
    return graph, run_nir(from_nir(graph), x)


def _describe(value):
    """A JSON form of a NIR node field: arrays by dtype, shape and a digest of their bytes (exact)."""
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in sorted(value.items())}
    if isinstance(value, (np.ndarray, np.generic)) or isinstance(value, (list, tuple)):
        a = np.ascontiguousarray(np.asarray(value))
        return [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()[:16]]
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _nir_summary(case: str) -> dict:
    graph, logits = _nir_case(case)
    nodes = [[key, type(node).__name__, {f.name: _describe(getattr(node, f.name)) for f in dataclasses.fields(node)
                                         if f.name != "metadata" or getattr(node, f.name)}]
             for key, node in graph.nodes.items()]
    return {"nodes": nodes, "edges": sorted([list(e) for e in graph.edges]), "logits": logits.tolist()}


@pytest.mark.parametrize("case", list(NIR_GRAPH_CASES))
def test_nir_graphs_equal_the_old_network_walk(case):
    """Nodes (names, types, every parameter bit for bit), edges and per-step outputs as the class-switching walk
    wrote them before each network described its own layer order (:meth:`SpikingNetwork.layer_sequence`)."""
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    saved = json.loads(NIR_FIXTURE.read_text())[case]
    now = _nir_summary(case)
    assert [n[:2] for n in now["nodes"]] == [n[:2] for n in saved["nodes"]]
    assert now["nodes"] == saved["nodes"]
    assert now["edges"] == saved["edges"]
    logits = torch.tensor(now["logits"])
    assert logits.abs().sum() > 0
    torch.testing.assert_close(logits, torch.tensor(saved["logits"]), rtol=1e-5, atol=1e-5)


#: sha256 of each fixture entry (``json.dumps(entry, sort_keys=True)``) as recorded before the threshold rewrite
#: (the file at 4ae1c6d), the entry given back its thresholds unlowered and no metadata
NIR_FIXTURE_BEFORE_THRESHOLD_EDGE = {
    "sew_add": "1b2c1154a021b5920b4ef4aaa1a5dc0198bebe681d11a2bd137434f934e667a2",
    "sew_bottleneck": "ccec217270120af8925faf307070b27a16b87a033a7e2e13dc45b5fcce23727d",
    "spiking_lif": "759a604611e15f60ecfaf5444f08dda58308036d8a44878b22a2839b44a42e60",
    "plain_plif": "3b169b6ddb96872be20d9bf02e649b3ebe1ce8c2eba2c71063152ccac698888b",
    "ms_cifar": "2d9d708bf71bad904eaa54580afed8e806efc74033b67f928d02088c6fb720bc",
    "ms_conv7": "cd44dec7e68d4396ffebefeece895df4b8937c43c7daf9bda1795b88e2394bf1",
    "ms_deep_stem": "68c982ebdf8ab8f400d58cb7053dbd24013d5da4aa809e67f1d266139fbfcead",
    "notation": "7845786d32dc2dd6d2c92e0183d5755ce5050dc7702d28072d21bcfb77d752d5",
    "notation_lif": "7bb49a7714f754f60e8a2c472f49d5e6849642992bde04875efcd1f03f518709",
}


def _without_threshold_rewrite(entry: dict) -> dict:
    """A fixture entry as it was before the threshold rewrite: each neuron's ``v_threshold`` the digest of its
    recorded original (the shape and dtype of its ``v_reset``), the metadata gone."""
    from sj_sew.deploy import nir_export

    nodes = []
    for key, kind, fields in entry["nodes"]:
        fields = dict(fields)
        metadata = fields.pop("metadata", None)
        if kind in ("IF", "LIF"):
            dtype, shape, _ = fields["v_reset"]
            fields["v_threshold"] = _describe(np.full(shape, metadata[nir_export.THRESHOLD_METADATA], dtype=dtype))
        nodes.append([key, kind, fields])
    return {**entry, "nodes": nodes}


@pytest.mark.parametrize("case", list(NIR_GRAPH_CASES))
def test_nir_fixture_rewrite_changed_only_the_thresholds(case):
    """The fixture's neurons write the threshold one float32 step lower than the one their metadata records,
    with SpikingJelly's rule; given back that threshold and no metadata, each entry is the record before the
    rewrite byte for byte (names, types, every other field, edges, logits)."""
    from sj_sew.deploy import nir_export

    saved = json.loads(NIR_FIXTURE.read_text())[case]
    neurons = [fields for _, kind, fields in saved["nodes"] if kind in ("IF", "LIF")]
    assert neurons
    for fields in neurons:
        meta, (dtype, shape, _) = fields["metadata"], fields["v_reset"]
        assert meta[nir_export.FIRES_METADATA] == ">="
        lowered = np.nextafter(np.full(shape, meta[nir_export.THRESHOLD_METADATA], dtype=np.float32), np.float32(0))
        assert fields["v_threshold"] == _describe(lowered) and dtype == "float32"
    before = json.dumps(_without_threshold_rewrite(saved), sort_keys=True).encode()
    assert hashlib.sha256(before).hexdigest() == NIR_FIXTURE_BEFORE_THRESHOLD_EDGE[case]


def test_nir_graph_of_the_ms104_stem_computes_the_trained_network():
    """MS-ResNet-104's stem is conv1 -> two convs -> BN: its graph folds that BN into the last conv, and T steps of
    it average to the eval-mode network's output (folding it into its namesake conv1 did not)."""
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    net, _ = model_pair("ms_resnet104", num_classes=10, widths=(8, 8, 16, 16), layers=(1, 1, 1, 1), dropout=0.0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(3, 2, 3, 32, 32) * 3
    graph = to_nir(net.eval(), 32)
    assert [k for k in graph.nodes][:4] == ["input", "conv1", "stem_rest_0", "stem_rest_1"]
    with torch.no_grad():
        functional.reset_net(net)
        expected = net(x)
    torch.testing.assert_close(run_nir(from_nir(graph), x).mean(0), expected, rtol=1e-4, atol=1e-4)

if __name__ == "__main__" and sys.argv[1:] == ["--write-nir-fixture"]:
    torch.set_num_threads(1)
    NIR_FIXTURE.write_text(json.dumps({case: _nir_summary(case) for case in NIR_GRAPH_CASES}, indent=None) + "\n")
    print(f"wrote {len(NIR_GRAPH_CASES)} graphs to {NIR_FIXTURE}")
