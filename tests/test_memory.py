"""Memory-saving mode (exact gradient checkpointing) for every block family: same outputs, gradients and
BatchNorm statistics as the default mode; checkpointed layers really recompute; the neurons' state is kept."""
import copy
import pickle

import pytest
import torch
from conftest import grads, model_pair, train_forward_backward
from spikingjelly.activation_based import functional, neuron

import sj_sew
from sj_sew.blocks import ResidualBlock
from sj_sew.memory import SegmentedSequential, is_checkpointed, memory_saving
from sj_sew.models import MSResNet

# (model, kwargs, input shape, blocks_per_segment): every family, stages and loose blocks, every stem kind
CASES = [
    ("sew_resnet18", {"num_classes": 10, "T": 3, "width": 16}, (2, 3, 32, 32), "sqrt"),
    ("sew_resnet50", {"num_classes": 10, "connect": "IAND", "width": 8}, (2, 1, 3, 32, 32), 1),
    ("spiking_resnet18", {"num_classes": 10, "neuron": "lif", "width": 16}, (2, 2, 3, 32, 32), 2),
    ("plain_resnet50", {"num_classes": 10, "width": 8}, (2, 1, 3, 32, 32), "sqrt"),
    ("ms_resnet", {"depth": 14, "T": 2}, (2, 3, 16, 16), "sqrt"),
    ("ds_resnet14", {"widths": (8, 16, 32), "T": 2}, (2, 3, 16, 16), 1),
    ("surrogate_net", {"T": 2}, (2, 3, 32, 32), "sqrt"),  # blocks outside ResNet stages
    ("net7b", {"num_classes": 11}, (2, 1, 2, 128, 128), "sqrt"),  # PLIF (TorchScript reset on 0.0.0.0.14)
]


@pytest.mark.parametrize("name,kwargs,shape,segment", CASES, ids=[c[0] for c in CASES])
def test_memory_saving_equals_default_mode(name, kwargs, shape, segment):
    default, saving = model_pair(name, **kwargs)
    assert memory_saving(saving, blocks_per_segment=segment) is saving
    assert saving.state_dict().keys() == default.state_dict().keys()
    x = torch.rand(*shape) * 3
    out_default = train_forward_backward(default, x)
    out_saving = train_forward_backward(saving, x)
    assert torch.equal(out_saving, out_default)
    grads_default, grads_saving = grads(default), grads(saving)
    assert grads_default.keys() == grads_saving.keys() and len(grads_default) > 10
    for k in grads_default:
        torch.testing.assert_close(grads_saving[k], grads_default[k], rtol=1e-5, atol=1e-6, msg=k)
    for (k, a), b in zip(default.state_dict().items(), saving.state_dict().values()):
        assert torch.equal(a, b), f"{k}: BatchNorm statistics must be updated once, not again in recomputation"


@pytest.mark.parametrize("name,kwargs,shape,segment", CASES, ids=[c[0] for c in CASES])
def test_every_block_and_loose_neuron_is_checkpointed(name, kwargs, shape, segment):
    net = memory_saving(sj_sew.create_model(name, **kwargs), blocks_per_segment=segment,
                        checkpoint_last_stage=True)
    stages = [m for m in net.modules() if isinstance(m, SegmentedSequential) and m.segment_size]
    in_stages = {id(d) for st in stages for d in st.modules()}
    for m in net.modules():
        if isinstance(m, ResidualBlock) and id(m) not in in_stages:
            assert is_checkpointed(m), "a block outside the stages is checkpointed alone"
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    covered = in_stages | {id(d) for b in blocks if is_checkpointed(b) for d in b.modules()}
    for m in net.modules():
        if isinstance(m, neuron.BaseNode) or isinstance(m, sj_sew.MLFNode):
            assert id(m) in covered or is_checkpointed(m), f"neuron {m} is neither in a segment nor alone"
    net.set_grad_checkpointing(False)
    assert not any(is_checkpointed(m) for m in net.modules())
    assert not any(isinstance(m, SegmentedSequential) and m.segment_size for m in net.modules())


def test_memory_saving_checkpoints_and_keeps_neuron_state():
    default, saving = model_pair("sew_resnet18", num_classes=10, width=16)
    memory_saving(saving)
    assert "segment_size=2" in repr(saving.layer1), "the mode shows in the model's repr"
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
    everything = memory_saving(copy.deepcopy(default), checkpoint_last_stage=True)
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


def test_deep_stem_neurons_are_recomputed():
    """MS-ResNet-104's deep stem: its neurons sit in a plain sequence, each checkpointed alone."""
    torch.manual_seed(0)
    net = MSResNet(layers=(1, 1), widths=(8, 16), stem="deep", stem_width=8, shortcut="avgpool", num_classes=4)
    reference = copy.deepcopy(net)
    memory_saving(net)
    stem_neuron = net.stem_rest[0]
    assert is_checkpointed(stem_neuron)
    calls = []
    net.stem_rest[1].register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(2, 2, 3, 16, 16)
    out = train_forward_backward(net, x)
    assert calls == [1], "the conv after the neuron is not checkpointed: it runs once"
    assert torch.equal(out, train_forward_backward(reference, x))


def test_memory_saving_model_pickles_and_copies():
    net = memory_saving(sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2))
    again = pickle.loads(pickle.dumps(net))
    assert again.layer1.segment_size == net.layer1.segment_size and is_checkpointed(again.sn1)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(train_forward_backward(again, x), train_forward_backward(net, x))


def test_memory_saving_bad_arguments():
    with pytest.raises(ValueError, match="sqrt"):
        memory_saving(sj_sew.create_model("sew_resnet18"), blocks_per_segment=0)
    with pytest.raises(ValueError, match="no sj_sew residual blocks"):
        memory_saving(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="no sj_sew residual blocks"):
        memory_saving(sj_sew.NotationNet("c8k3s1-BN-IF-FC10", input_size=8))
    with pytest.raises(TypeError, match="nn.Module"):
        memory_saving("sew_resnet18")
