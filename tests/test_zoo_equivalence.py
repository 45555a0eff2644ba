"""Same weights, same input -> same output as SpikingJelly's own zoo models (mean over T)."""
from functools import partial

import pytest
import torch
import torchvision
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet, spiking_resnet

import sj_sew
from conftest import run

LAYOUT = {18: ("BasicBlock", [2, 2, 2, 2]), 50: ("Bottleneck", [3, 4, 6, 3])}


def _zoo(family, depth, connect):
    module = sew_resnet if family == "sew" else spiking_resnet
    block_name, layers = LAYOUT[depth]
    kw = {"cnf": connect} if family == "sew" else {}
    net = (module.SEWResNet if family == "sew" else module.SpikingResNet)(
        getattr(module, block_name), layers, num_classes=10,
        spiking_neuron=partial(neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True), **kw)
    functional.set_step_mode(net, "m")
    return net


def _randomise_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=g) * 0.4
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5


CASES = [("sew", 18, "ADD"), ("sew", 18, "AND"), ("sew", 18, "IAND"), ("sew", 50, "ADD"), ("sew", 50, "AND"),
         ("spiking", 18, None), ("spiking", 50, None)]


@pytest.mark.parametrize("family,depth,connect", CASES)
def test_same_weights_same_output_as_zoo(family, depth, connect):
    zoo = _zoo(family, depth, connect)
    _randomise_bn(zoo)
    ours = sj_sew.create_model(f"{family}_resnet{depth}", connect=connect, num_classes=10)
    ours.load_state_dict(zoo.state_dict(), strict=True)
    zoo.eval(), ours.eval()
    x = torch.rand(4, 2, 3, 64, 64) * 3
    with torch.no_grad():
        expected = run(zoo, x).mean(0)
        got = run(ours, x)
    assert got.shape == (2, 10)
    assert expected.abs().max() > 0, "the test input must make the network fire"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_static_input_stem_once_equals_zoo_on_repeated_image():
    zoo = _zoo("sew", 18, "ADD")
    _randomise_bn(zoo)
    ours = sj_sew.create_model("sew_resnet18", num_classes=10, T=4)
    ours.load_state_dict(zoo.state_dict())
    zoo.eval(), ours.eval()
    img = torch.rand(2, 3, 64, 64) * 3
    with torch.no_grad():
        expected = run(zoo, img.unsqueeze(0).repeat(4, 1, 1, 1, 1)).mean(0)
        got = run(ours, img)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_zoo_bottleneck_iand_bug_is_documented_and_fixed_here():
    """The zoo's Bottleneck calls g(S, A) instead of g(A, S): IAND becomes A*(1-S), and a zero-init
    block (A = 0) outputs 0 instead of the identity. sj_sew's bottleneck follows Table 1."""
    spec = partial(neuron.IFNode, surrogate_function=surrogate.ATan(), detach_reset=True)
    zoo_block = sew_resnet.Bottleneck(64, 16, cnf="IAND", spiking_neuron=spec)
    functional.set_step_mode(zoo_block, "m")
    torch.nn.init.zeros_(zoo_block.bn3.weight)
    ours = sj_sew.Bottleneck(64, 16, 1, "sew", "IAND", sj_sew.NeuronSpec("if"))
    ours.load_state_dict(zoo_block.state_dict())
    x = (torch.rand(4, 2, 64, 6, 6) < 0.5).float()
    assert torch.equal(run(zoo_block, x), torch.zeros_like(x))
    assert torch.equal(run(ours, x), x)


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_state_dict_loads_strict(depth):
    ann = getattr(torchvision.models, f"resnet{depth}")(num_classes=7)
    for family in ("sew", "spiking"):
        snn = sj_sew.create_model(f"{family}_resnet{depth}", num_classes=7)
        snn.load_state_dict(ann.state_dict(), strict=True)
        assert torch.equal(snn.fc.weight, ann.fc.weight)
