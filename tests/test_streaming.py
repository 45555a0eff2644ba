"""Pickling of every registered model, and streaming (one time step per call) against the multi-step forward."""
import copy
import io
import pickle

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew.deploy import InferenceModel, StreamingModel, inference_model, streaming

#: Small widths per registered name prefix, so that building all of them stays fast.
SMALL = [("ms_resnet104", dict(widths=(4, 4, 8, 8), stem_width=4)), ("ms_resnet18", dict(widths=(4, 4, 8, 8))),
         ("ms_resnet34", dict(widths=(4, 4, 8, 8))), ("ms_resnet", dict(widths=(4, 4, 8))),
         ("ds_resnet", dict(widths=(4, 4, 8))), ("sew_resnet", dict(width=4)), ("spiking_resnet", dict(width=4)),
         ("plain_resnet", dict(width=4))]


def small_kwargs(name):
    return next((kw for prefix, kw in SMALL if name.startswith(prefix)), {})


def _roundtrips(obj):
    yield pickle.loads(pickle.dumps(obj))
    yield copy.deepcopy(obj)
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    yield torch.load(buf, weights_only=False)


def test_every_registered_model_pickles_deep_copies_and_saves():
    names = sj_sew.list_models()
    assert len(names) >= 29
    for name in names:
        net = sj_sew.create_model(name, num_classes=3, **small_kwargs(name))
        for other in _roundtrips(net):
            assert type(other) is type(net), name
            a, b = net.state_dict(), other.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_pickled_model_computes_the_same_after_a_forward_pass():
    net = sj_sew.create_model("sew_resnet18", num_classes=3, width=4, connect="IAND").eval()
    x = torch.rand(2, 2, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)  # the neurons now hold state; the copies must still run from rest after reset
        for other in _roundtrips(net):
            functional.reset_net(other)
            assert torch.equal(other(x), ref)
    for deployed in (inference_model(net), streaming(net)):
        for other in _roundtrips(deployed):
            assert type(other) is type(deployed)


def test_every_registered_model_describes_its_layer_order():
    """layer_sequence() names what stem(), body() and head() run, in their order: run entry by entry, each part
    gives exactly the method's output, and together the entries hold every parameter and buffer of the net."""
    for name in sj_sew.list_models():
        torch.manual_seed(0)
        net = sj_sew.create_model(name, num_classes=3, **small_kwargs(name)).eval()
        sequence = net.layer_sequence()
        for key, module in sequence:
            assert key == "flatten" or net.get_submodule(key) is module, (name, key)
        held = {id(t) for _, m in sequence for t in [*m.parameters(), *m.buffers()]}
        assert held == {id(t) for t in [*net.parameters(), *net.buffers()]}, name
        size = getattr(net, "input_size", None) or 32
        x = torch.rand(2, 2, net.in_channels, size, size) * 3
        with torch.no_grad():
            for part, method in ((sequence.stem, net.stem), (sequence.body, net.body), (sequence.head, net.head)):
                functional.reset_net(net)
                expected = method(x)
                functional.reset_net(net)
                got = x
                for _, module in part:
                    got = module(got)
                assert torch.equal(got, expected), (name, [key for key, _ in part])
                x = expected
        assert x.shape == (2, 2, 3) and x.abs().sum() > 0, name


# one network per family (and both block layouts, every SEW g, PLIF, MLF, notation nets)
CASES = [
    ("sew_resnet18", dict(width=8, connect="ADD")),
    ("sew_resnet18", dict(width=8, connect="AND", neuron="lif")),
    ("sew_resnet50", dict(width=4, connect="IAND")),
    ("spiking_resnet18", dict(width=8, neuron="lif")),
    ("plain_resnet18", dict(width=8, neuron="plif")),
    ("ms_resnet", dict(depth=14, widths=(8, 8, 16))),
    ("ds_resnet", dict(depth=8, widths=(8, 8, 16))),
    ("surrogate_net", dict(family="spiking")),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_streaming_equals_the_multi_step_forward_exactly(name, kwargs):
    torch.manual_seed(0)
    net = sj_sew.create_model(name, num_classes=5, **kwargs).eval()
    x = torch.rand(4, 2, net.in_channels, 32, 32) * 3
    with torch.no_grad():
        ref = net(x)
        functional.reset_net(net)
        per_step = net.head(net.body(net.stem(x)))  # [T, N, classes]
        functional.reset_net(net)
        stream = streaming(net)
        steps = torch.stack([stream(frame) for frame in x])
    assert ref.abs().sum() > 0
    assert torch.equal(steps, per_step)
    assert torch.equal(stream.average(), ref)
    assert stream.steps == 4
    stream.reset()
    assert stream.steps == 0
    with torch.no_grad():
        assert torch.equal(stream.run(x), ref)  # a new stream starts from rest

    deployed = inference_model(net)
    fast = streaming(deployed)
    assert torch.equal(fast.run(x), deployed(x))
    assert fast.net is deployed.model and isinstance(deployed, InferenceModel)


def test_streaming_a_static_image_equals_the_static_forward():
    net = sj_sew.create_model("sew_resnet18", num_classes=5, width=8, T=4).eval()
    image = torch.rand(2, 3, 32, 32) * 3
    with torch.no_grad():
        ref = net(image)
        stream = StreamingModel(net)  # starts from rest
        for _ in range(4):
            stream(image)
        assert torch.equal(stream.average(), ref)


def test_streaming_errors_name_the_problem():
    net = sj_sew.create_model("sew_resnet18", num_classes=5, width=4)
    stream = streaming(net)
    with pytest.raises(ValueError, match=r"one frame \[N, C, H, W\]"):
        stream(torch.rand(2, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        stream(torch.rand(1, 2, 32, 32))
    with pytest.raises(RuntimeError, match="no time step"):
        stream.average()
    with pytest.raises(TypeError, match="sj_sew network"):
        streaming(torch.nn.Linear(2, 2))


def test_a_streamed_frame_meets_the_networks_input_contract():
    """One frame is checked as the network checks its input: dtype, channels, size, batch, finite values."""
    import sj_sew
    from sj_sew.deploy import streaming

    net = sj_sew.NotationNet("c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*2-FC10", input_size=16, in_channels=2)
    stream = streaming(net.eval())
    good = torch.zeros(2, 2, 16, 16)
    assert stream(good).shape == (2, 10)
    for frame, error in [(good.double(), "dtype"), (good[:, :1], "channel"), (torch.zeros(2, 2, 8, 8), "8"),
                         (torch.zeros(0, 2, 16, 16), "batch"), (good.int(), "floating-point"),
                         (torch.full((2, 2, 16, 16), float("nan")), "finite")]:
        stream.reset()
        with pytest.raises((TypeError, ValueError), match=error):
            stream(frame)


def test_a_stream_refuses_a_part_set_to_single_step():
    import sj_sew
    from sj_sew.deploy import streaming
    from spikingjelly.activation_based import functional as sj_functional

    net = sj_sew.NotationNet("c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*2-FC10", input_size=16, in_channels=2).eval()
    sj_functional.set_step_mode(net.layers[0], "s")
    with pytest.raises(ValueError, match="streaming"):
        streaming(net)(torch.zeros(1, 2, 16, 16))
