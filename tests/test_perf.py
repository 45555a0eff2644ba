"""The fast paths give the default path's results: the fused neuron against SpikingJelly's own neuron,
the memory-saving mode and the inference mode against the default model (no timings here)."""
import copy
from functools import partial

import pytest
import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet

import sj_sew
from sj_sew import _compat, perf
from sj_sew.neurons import NeuronSpec

NEURON_CASES = [(neuron.IFNode, {}), (neuron.LIFNode, {"tau": 2.0}), (neuron.LIFNode, {"tau": 3.0, "v_reset": None}),
                (neuron.IFNode, {"v_reset": None}), (neuron.IFNode, {"v_reset": -0.5, "v_threshold": 0.8})]


def _pair(cls, kwargs, detach, surrogate_cls):
    def make(c):
        return c(step_mode="m", surrogate_function=surrogate_cls(), detach_reset=detach, **kwargs)

    return make(cls), make(perf.fused_neuron_class(cls))


@pytest.mark.parametrize("cls,kwargs", NEURON_CASES)
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("surrogate_cls", [surrogate.ATan, surrogate.Sigmoid])
def test_fused_neuron_same_spikes_state_and_gradients_as_spikingjelly(cls, kwargs, detach, surrogate_cls):
    reference, fused = _pair(cls, kwargs, detach, surrogate_cls)
    assert perf.fast_path_applies(fused, torch.zeros(1))
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
    assert type(node) is perf.IFNode and isinstance(node, neuron.IFNode)
    assert type(NeuronSpec("lif").make()) is perf.LIFNode
    assert type(NeuronSpec("plif").make()) is neuron.ParametricLIFNode  # learnable tau: SpikingJelly's own
    assert perf.fast_path_applies(node, cpu)
    # settings the fused function does not cover fall back to SpikingJelly
    assert not perf.fast_path_applies(NeuronSpec("if", surrogate_function="rect").make(), cpu)
    assert not perf.fast_path_applies(NeuronSpec("lif", decay_input=False).make(), cpu)
    stored = NeuronSpec("if", store_v_seq=True).make()
    assert not perf.fast_path_applies(stored, cpu)
    # off the CPU: SpikingJelly's GPU kernels on 2.x; on 0.0.0.0.14 the fused path replaces only backend='torch'
    elsewhere = torch.empty(2, 3, device="meta")
    if _compat.SJ2:
        assert not perf.fast_path_applies(node, elsewhere)
    else:
        node.backend = "torch"
        assert perf.fast_path_applies(node, elsewhere)
        node.backend = "cupy"
        assert not perf.fast_path_applies(node, elsewhere)
        assert not perf.fast_path_applies(node, cpu)


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


def _grads(net):
    return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def _train_forward_backward(net, x, time_mean=False):
    functional.reset_net(net)
    out = net(x)
    out = out.mean(0) if time_mean else out
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    functional.reset_net(net)
    return out.detach()


def test_training_outputs_and_gradients_equal_spikingjelly_zoo():
    """The default (fused) path in training mode: same logits and weight gradients as the zoo."""
    zoo = _zoo18()
    ours = sj_sew.create_model("sew_resnet18", num_classes=10)
    ours.load_state_dict(zoo.state_dict())
    x = torch.rand(2, 2, 3, 32, 32) * 3
    expected = _train_forward_backward(zoo, x, time_mean=True)
    got = _train_forward_backward(ours, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    zoo_grads, our_grads = _grads(zoo), _grads(ours)
    assert zoo_grads.keys() == our_grads.keys()
    for k in zoo_grads:
        torch.testing.assert_close(our_grads[k], zoo_grads[k], rtol=1e-4, atol=1e-5, msg=k)


def _model_pair(name, **kwargs):
    torch.manual_seed(0)
    base = sj_sew.create_model(name, **kwargs)
    for m in base.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.6, 1.6)
            m.bias.data.uniform_(0.0, 0.4)
    return base, copy.deepcopy(base)


@pytest.mark.parametrize("name,kwargs,shape,segment", [
    ("sew_resnet18", {"num_classes": 10, "T": 3, "width": 16}, (2, 3, 32, 32), "sqrt"),
    ("sew_resnet50", {"num_classes": 10, "connect": "IAND", "width": 8}, (2, 1, 3, 32, 32), 1),
    ("spiking_resnet18", {"num_classes": 10, "neuron": "lif", "width": 16}, (2, 2, 3, 32, 32), 2),
    ("surrogate_net", {"T": 2}, (2, 3, 32, 32), "sqrt"),  # blocks outside ResNet stages
])
def test_memory_saving_equals_default_mode(name, kwargs, shape, segment):
    default, saving = _model_pair(name, **kwargs)
    assert perf.memory_saving(saving, blocks_per_segment=segment) is saving
    assert saving.state_dict().keys() == default.state_dict().keys()
    x = torch.rand(*shape) * 3
    out_default = _train_forward_backward(default, x)
    out_saving = _train_forward_backward(saving, x)
    assert torch.equal(out_saving, out_default)
    grads_default, grads_saving = _grads(default), _grads(saving)
    assert grads_default.keys() == grads_saving.keys() and len(grads_default) > 10
    for k in grads_default:
        torch.testing.assert_close(grads_saving[k], grads_default[k], rtol=1e-5, atol=1e-6, msg=k)
    for (k, a), b in zip(default.state_dict().items(), saving.state_dict().values()):
        assert torch.equal(a, b), f"{k}: BatchNorm statistics must be updated once, not again in recomputation"


def test_memory_saving_checkpoints_and_keeps_neuron_state():
    default, saving = _model_pair("sew_resnet18", num_classes=10, width=16)
    perf.memory_saving(saving)
    x = torch.rand(2, 2, 3, 32, 32) * 3
    calls, last_stage_calls = [], []
    saving.layer1[0].conv1.register_forward_hook(lambda *a: calls.append(1))
    saving.layer4[0].conv1.register_forward_hook(lambda *a: last_stage_calls.append(1))
    functional.reset_net(default), functional.reset_net(saving)
    default(x).sum().backward()
    saving(x).sum().backward()
    assert len(calls) == 2, "the checkpointed block must run again in backward"
    assert len(last_stage_calls) == 1, "the last stage is not checkpointed by default"
    for a, b in zip(default.modules(), saving.modules()):  # state after backward as after the forward pass
        if isinstance(a, neuron.IFNode):
            assert torch.equal(a.v, b.v)
    functional.reset_net(default)
    everything = perf.memory_saving(copy.deepcopy(default), checkpoint_last_stage=True)
    last_stage_calls.clear()
    everything.layer4[0].conv1.register_forward_hook(lambda *a: last_stage_calls.append(1))
    functional.reset_net(everything)
    everything(x).sum().backward()
    assert len(last_stage_calls) == 2
    with torch.no_grad():  # without autograd, no checkpointing
        calls.clear()
        functional.reset_net(saving)
        saving(x)
        assert len(calls) == 1


def test_memory_saving_bad_arguments():
    with pytest.raises(ValueError, match="sqrt"):
        perf.memory_saving(sj_sew.create_model("sew_resnet18"), blocks_per_segment=0)
    with pytest.raises(ValueError, match="no sj_sew residual blocks"):
        perf.memory_saving(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="nn.Module"):
        perf.memory_saving("sew_resnet18")


@pytest.mark.parametrize("name,kwargs,x_shape", [
    ("sew_resnet18", {"num_classes": 10, "T": 4}, (4, 3, 32, 32)),
    ("sew_resnet50", {"num_classes": 10, "connect": "AND", "zero_init_residual": True, "width": 16},
     (2, 3, 3, 32, 32)),
    ("net7b", {}, (2, 1, 2, 128, 128)),
])
def test_inference_model_same_predictions(name, kwargs, x_shape):
    model, _ = _model_pair(name, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = perf.memory_saving(model) if name == "sew_resnet18" else model  # the wrapper is dropped
    deployed = perf.inference_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original stays as it was"
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
    assert perf.fold_batchnorm(net.eval()) == n_bn == 20


def test_channels_last_max_pool_same_values():
    pool = torch.nn.MaxPool2d(3, 2, 1)
    fast = perf.ChannelsLastMaxPool2d(pool)
    x = (torch.rand(3, 2, 4, 9, 9) < 0.4).float() + torch.rand(3, 2, 4, 9, 9) * (torch.rand(1) > 2)
    assert torch.equal(fast(x), pool(x.flatten(0, 1)).unflatten(0, (3, 2)))
    assert fast(x).is_contiguous()
    y = torch.randn(2, 4, 10, 10)
    assert torch.equal(fast(y), pool(y))
    with pytest.raises(ValueError, match="indices"):
        perf.ChannelsLastMaxPool2d(torch.nn.MaxPool2d(2, return_indices=True))
