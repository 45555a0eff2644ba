"""The fused multi-step neurons give SpikingJelly's own neurons' spikes, states and gradients, alone and in
a whole network against SpikingJelly's zoo (no timings here)."""
import copy
from functools import partial

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet

import sj_sew
from conftest import grads, train_forward_backward
from sj_sew import _compat
from sj_sew.neurons import fused as fused_neurons
from sj_sew.neurons import NeuronSpec

NEURON_CASES = [(neuron.IFNode, {}), (neuron.LIFNode, {"tau": 2.0}), (neuron.LIFNode, {"tau": 3.0, "v_reset": None}),
                (neuron.IFNode, {"v_reset": None}), (neuron.IFNode, {"v_reset": -0.5, "v_threshold": 0.8})]


def _pair(cls, kwargs, detach, surrogate_cls):
    def make(c):
        return c(step_mode="m", surrogate_function=surrogate_cls(), detach_reset=detach, **kwargs)

    return make(cls), make(fused_neurons.fused_neuron_class(cls))


@pytest.mark.parametrize("cls,kwargs", NEURON_CASES)
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("surrogate_cls", [surrogate.ATan, surrogate.Sigmoid])
def test_fused_neuron_same_spikes_state_and_gradients_as_spikingjelly(cls, kwargs, detach, surrogate_cls):
    reference, fused = _pair(cls, kwargs, detach, surrogate_cls)
    assert fused_neurons.fast_path_applies(fused, torch.zeros(1))
    x = (torch.randn(6, 3, 5, 4, 4) * 1.5 + 0.3).requires_grad_()
    x_fused = x.detach().clone().requires_grad_()
    weight = torch.randn(6, 3, 5, 4, 4)
    outs, grads = [], []
    for node, inp in ((reference, x), (fused, x_fused)):
        first = node(inp[:4])  # two calls without reset: the state carries over, with its gradient
        second = node(inp[4:])
        ((torch.cat([first, second]) * weight).sum() + (node.v * 0.7).sum()).backward()
        outs.append((torch.cat([first, second]), node.v.detach()))
        grads.append(inp.grad)
    assert 0.05 < outs[0][0].mean() < 0.95, "the input must make some neurons fire and some not"
    assert torch.equal(outs[0][0], outs[1][0]), "spikes must be identical"
    assert torch.equal(outs[0][1], outs[1][1]), "the membrane state must be identical"
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_fused_neuron_in_eval_and_no_grad():
    reference, fused = _pair(neuron.LIFNode, {"tau": 2.0}, True, surrogate.ATan)
    reference.eval(), fused.eval()
    x = torch.randn(5, 2, 7) * 2
    with torch.no_grad():
        assert torch.equal(reference(x), fused(x))
    assert torch.equal(reference.v, fused.v)


def test_fast_path_selection():
    spec_if = NeuronSpec("if")
    node = spec_if.make()
    cpu = torch.zeros(2, 3)
    assert type(node) is fused_neurons.IFNode and isinstance(node, neuron.IFNode)
    assert type(NeuronSpec("lif").make()) is fused_neurons.LIFNode
    assert type(NeuronSpec("plif").make()) is neuron.ParametricLIFNode  # learnable tau: SpikingJelly's own
    assert fused_neurons.fast_path_applies(node, cpu)
    # settings the fused function does not cover fall back to SpikingJelly
    assert not fused_neurons.fast_path_applies(NeuronSpec("if", surrogate_function="rect").make(), cpu)
    assert not fused_neurons.fast_path_applies(NeuronSpec("lif", decay_input=False).make(), cpu)
    stored = NeuronSpec("if", store_v_seq=True).make()
    assert not fused_neurons.fast_path_applies(stored, cpu)
    # off the CPU: SpikingJelly's GPU kernels on 2.x; on 0.0.0.0.14 the fused path replaces only backend='torch'
    elsewhere = torch.empty(2, 3, device="meta")
    if _compat.SJ2:
        assert not fused_neurons.fast_path_applies(node, elsewhere)
    else:
        node.backend = "torch"
        assert fused_neurons.fast_path_applies(node, elsewhere)
        node.backend = "cupy"
        assert not fused_neurons.fast_path_applies(node, elsewhere)
        assert not fused_neurons.fast_path_applies(node, cpu)


def test_fallback_neuron_still_matches_spikingjelly():
    """A surrogate without a fused derivative (Rectangular) runs SpikingJelly's own loop."""
    node = NeuronSpec("if", surrogate_function="rect").make()
    ref = neuron.IFNode(step_mode="m", surrogate_function=copy.deepcopy(node.surrogate_function), detach_reset=True)
    x = torch.randn(4, 3, 6) * 2
    assert torch.equal(node(x), ref(x))


def _zoo18(num_classes=10):
    net = sew_resnet.SEWResNet(sew_resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes, cnf="ADD",
                               spiking_neuron=partial(neuron.IFNode, surrogate_function=surrogate.ATan(),
                                                      detach_reset=True))
    functional.set_step_mode(net, "m")
    return net


def test_training_outputs_and_gradients_equal_spikingjelly_zoo():
    """The default (fused) path in training mode: same logits and weight gradients as the zoo."""
    zoo = _zoo18()
    ours = sj_sew.create_model("sew_resnet18", num_classes=10)
    ours.load_state_dict(zoo.state_dict())
    x = torch.rand(2, 2, 3, 32, 32) * 3
    expected = train_forward_backward(zoo, x, time_mean=True)
    got = train_forward_backward(ours, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    zoo_grads, our_grads = grads(zoo), grads(ours)
    assert zoo_grads.keys() == our_grads.keys()
    for k in zoo_grads:
        torch.testing.assert_close(our_grads[k], zoo_grads[k], rtol=1e-4, atol=1e-5, msg=k)


