"""SpikingJelly's step modes on sj_sew networks (multi-step only: ``set_step_mode(net, 's')`` is refused and
points to streaming) and the per-step logits ``net(x, per_step=True)``, against the mean output and streaming."""
import logging

import pytest
import torch
import torch.nn as nn
from conftest import grads, model_pair
from spikingjelly.activation_based import base, functional

import sj_sew
from sj_sew.deploy import inference_model, streaming
from sj_sew.memory import memory_saving

# one network per family (both block layouts, SEW connect functions, PLIF, MLF, notation nets)
CASES = [
    ("sew_resnet18", dict(width=8, connect="ADD")),
    ("sew_resnet50", dict(width=4, connect="IAND", neuron="lif")),
    ("spiking_resnet18", dict(width=8, neuron="lif")),
    ("plain_resnet18", dict(width=8, neuron="plif")),
    ("ms_resnet", dict(depth=14, widths=(8, 8, 16))),
    ("ds_resnet", dict(depth=8, widths=(8, 8, 16))),
    ("surrogate_net", dict(family="spiking")),
    ("net7b", dict()),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


def build(name, kwargs, **extra):
    """The model in eval mode, with BatchNorm shifted up so that spikes reach the head in every family."""
    torch.manual_seed(0)
    net = sj_sew.create_model(name, num_classes=5, **kwargs, **extra).eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.weight.data.uniform_(0.8, 1.6)
            m.bias.data.uniform_(0.6, 1.4)
    return net


def sequence(net, T=4, N=2):
    size = net.input_size or 32
    return torch.rand(T, N, net.in_channels, size, size) * 3


def step_modes(net):
    return {m.step_mode for m in net.modules() if isinstance(m, base.StepModule)}


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_single_step_mode_is_refused_at_the_call_and_leaves_the_net_multi_step(name, kwargs):
    net = build(name, kwargs)
    x = sequence(net)
    with torch.no_grad():
        ref = net(x)
    functional.reset_net(net)
    for target in (net, nn.Sequential(net), inference_model(net)):
        with pytest.raises(ValueError, match=r"multi-step.*sj_sew\.deploy\.streaming\(net\)"):
            functional.set_step_mode(target, "s")
    assert step_modes(net) == {"m"} and net.step_mode == "m"
    with pytest.raises(ValueError, match="streaming"):
        net.step_mode = "s"
    with torch.no_grad():
        assert torch.equal(net(x), ref)  # nothing was changed by the refused calls


def test_multi_step_mode_is_accepted_silently(caplog):
    net = build("sew_resnet18", dict(width=4))
    assert isinstance(net, base.StepModule) and net.supported_step_mode() == ("m",)
    with caplog.at_level(logging.WARNING):
        functional.set_step_mode(net, "m")  # SpikingJelly 0.0.0.0.14 logs a warning for a non-StepModule
    assert not [r for r in caplog.records if "step mode" in r.getMessage().lower()]
    assert step_modes(net) == {"m"}


@pytest.mark.parametrize("name,kwargs", CASES[:1] + CASES[4:6], ids=IDS[:1] + IDS[4:6])
def test_a_part_set_to_single_step_is_refused_at_the_next_forward(name, kwargs):
    net = build(name, kwargs)
    part_name, part = next((k, m) for k, m in net.named_children()  # a stage: not itself a StepModule
                           if step_modes(m) and not isinstance(m, base.StepModule))
    functional.set_step_mode(part, "s")  # SpikingJelly gives no hook on the part's own modules
    with pytest.raises(ValueError, match=rf"'{part_name}\.[^']*' has step_mode='s'.*streaming"):
        net(sequence(net))
    functional.set_step_mode(net, "m")
    net(sequence(net))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_per_step_logits_average_to_the_output_and_equal_streaming(name, kwargs):
    net = build(name, kwargs)
    x = sequence(net)
    with torch.no_grad():
        ref = net(x)
        functional.reset_net(net)
        per_step = net(x, per_step=True)
        functional.reset_net(net)
        stream = streaming(net)
        steps = torch.stack([stream(frame) for frame in x])
    assert per_step.shape == (4, 2, 5) and ref.shape == (2, 5)
    assert (per_step - per_step[0]).abs().amax() > 0  # the steps differ: spikes reach the head
    assert torch.equal(per_step.mean(0), ref)
    assert torch.equal(per_step, steps)

    deployed = inference_model(net)
    fast = streaming(deployed)
    deployed_steps = torch.stack([fast(frame) for frame in x])
    assert torch.equal(deployed(x, per_step=True), deployed_steps)
    assert torch.equal(deployed(x, per_step=True).mean(0), deployed(x))


@pytest.mark.parametrize("name,kwargs", [("sew_resnet18", dict(width=8)), ("ms_resnet", dict(depth=14, widths=(8, 8, 16)))])
def test_per_step_logits_of_a_static_image(name, kwargs):
    net = build(name, kwargs, T=3)  # SEW runs the stem once, MS repeats the image first (stem_once False)
    image = torch.rand(2, 3, 32, 32) * 3
    with torch.no_grad():
        ref = net(image)
        functional.reset_net(net)
        per_step = net(image, per_step=True)
        functional.reset_net(net)
        stream = streaming(net)
        steps = torch.stack([stream(image) for _ in range(3)])
    assert per_step.shape == (3, 2, 5)
    assert torch.equal(per_step.mean(0), ref)
    assert torch.equal(per_step, steps)


@pytest.mark.parametrize("name,kwargs", [("sew_resnet18", dict(width=8)), ("ds_resnet", dict(depth=8, widths=(8, 8)))])
def test_per_step_logits_train_the_same_under_memory_saving(name, kwargs):
    default, saving = model_pair(name, num_classes=5, **kwargs)
    memory_saving(saving, blocks_per_segment=1, compact=True)
    x = torch.rand(3, 2, 3, 32, 32) * 3
    weights = torch.linspace(-1, 1, 3 * 2 * 5).view(3, 2, 5)  # a loss on every step (TET-style)
    outs = []
    for net in (default, saving):
        net.train()
        functional.reset_net(net)
        out = net(x, per_step=True)
        (out * weights).sum().backward()
        functional.reset_net(net)
        outs.append(out.detach())
    assert outs[0].shape == (3, 2, 5) and torch.equal(outs[0], outs[1])
    g0, g1 = grads(default), grads(saving)
    assert g0.keys() == g1.keys() and g0 and all(torch.equal(g0[k], g1[k]) for k in g0)
