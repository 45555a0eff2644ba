"""MS-ResNet: the neuron preset, the membrane-shortcut block, zero init, depth 482, SpikingJelly 2.0's zoo."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import run
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew.blocks import BasicBlock
from sj_sew.models import MSResNet
from sj_sew.neurons import ms_neuron_spec



def _scalar_conv_bn(conv, bn, weight, bn_weight, bn_bias):
    """Make conv+BN (1 channel, eval, eps 0) compute bn_weight * weight * x + bn_bias on a 1x1 map."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = weight
        bn.weight.fill_(bn_weight)
        bn.bias.fill_(bn_bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
    bn.eps = 0.0


def test_neuron_preset_is_u_quarter_decay_vth_half_hard_reset():
    sn = ms_neuron_spec().make()
    x = torch.tensor([0.3, 0.3, 0.6, 0.1, 0.45]).reshape(5, 1)
    # u: 0.3, 0.375, 0.69375 -> fire -> 0, 0.1, 0.475
    assert run(sn, x).flatten().tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    functional.reset_net(sn)
    sn(x)
    assert sn.v.item() == pytest.approx(0.25 * 0.1 + 0.45)


def test_rectangular_window_around_threshold_half():
    sn = ms_neuron_spec().make()
    u = torch.tensor([-0.02, 0.05, 0.3, 0.7, 0.98, 1.2], requires_grad=True)
    run(sn, u.reshape(1, -1)).sum().backward()
    assert u.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # 1[|u - 0.5| < 0.5]


def test_block_forward_carries_real_membrane_through_the_shortcut():
    block = BasicBlock(1, 1, 1, family="ms").eval()
    _scalar_conv_bn(block.conv1, block.bn1, 2.0, 1.0, 0.1)
    _scalar_conv_bn(block.conv2, block.bn2, 3.0, 0.5, -0.2)
    x = torch.tensor([0.7, 0.2, -0.3]).reshape(3, 1, 1, 1, 1)
    # sn1: u = 0.7 (fire), 0.2, 0.05 - 0.3 -> s1 = 1, 0, 0; bn1(conv1) = 2.1, 0.1, 0.1
    # sn2: u = 2.1 (fire), 0.1, 0.125 -> s2 = 1, 0, 0; bn2(conv2) = 1.3, -0.2, -0.2; + x
    assert run(block, x).flatten().tolist() == pytest.approx([2.0, 0.0, -0.5])


def test_downsample_block_shortcut_is_conv_bn_without_neuron():
    block = BasicBlock(1, 2, 2, family="ms").eval()
    assert isinstance(block.downsample[0], nn.Conv2d) and len(block.downsample) == 2
    pooled = BasicBlock(1, 2, 2, family="ms", shortcut="avgpool")
    assert isinstance(pooled.downsample[0], nn.AvgPool2d)
    x = torch.randn(2, 1, 1, 6, 6)
    assert pooled(x).shape == (2, 1, 2, 3, 3)
    with pytest.raises(ValueError, match="conv"):
        BasicBlock(1, 2, 2, family="ms", shortcut="maxpool")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_zero_init_block_is_identity_on_membrane_input(mode):
    block = BasicBlock(4, 4, 1, family="ms")
    block.zero_init_last()
    getattr(block, mode)()
    x = torch.randn(3, 2, 4, 5, 5) * 2  # real-valued, negative included
    assert torch.equal(run(block, x), x)


def test_zero_init_residual_default_and_paper_alternative():
    net = sj_sew.create_model("ms_resnet", depth=8, T=2)
    block = net.layer1[0]
    assert block.bn2.weight.abs().sum() == 0 and block.bn1.weight.eq(0.5).all()
    net = sj_sew.create_model("ms_resnet", depth=8, zero_init_residual=False)
    assert net.layer1[0].bn2.weight.eq(0.1).all()  # 0.2 * Vth, the authors' last-BN init


def test_482_layer_cifar_net_runs_forward_and_backward():
    net = sj_sew.create_model("ms_resnet", depth=482, num_classes=10, T=1)
    assert net.depth == 482 and len(net.layer1) == len(net.layer3) == 80
    x = torch.rand(1, 3, 8, 8) * 3
    out = run(net, x)
    out.sum().backward()
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert net.conv1.weight.grad is not None and net.conv1.weight.grad.abs().sum() > 0


def test_layouts_and_kwargs_from_create_model():
    assert sj_sew.create_model("ms_resnet104", num_classes=10).depth == 106  # 3 stem convs + 102 + FC
    net = sj_sew.create_model("ms_resnet34", num_classes=7, in_channels=2, T=None)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    out = run(net, torch.rand(2, 1, 2, 32, 32))
    assert out.shape == (1, 7)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        sj_sew.create_model("ms_resnet", depth=21)
    with pytest.raises(ValueError, match="membrane shortcuts"):
        sj_sew.create_model("ms_resnet", connect="ADD")
    with pytest.raises(ValueError, match="conv7"):
        MSResNet((1,), (8,), stem="conv5")


# --- SpikingJelly 2.0 ships model.ms_resnet: same weights must give the same outputs ----------------
def _zoo():
    return pytest.importorskip("spikingjelly.activation_based.model.ms_resnet",
                               reason="model.ms_resnet exists on SpikingJelly 2.x only")


def _zoo_to_ours(key: str) -> str:
    for theirs, ours in (("stem.0.", "conv1."), ("stem.1.", "bn1."), ("head.", "fc.")):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def test_same_weights_same_outputs_as_spikingjelly_ms_resnet18():
    zoo = _zoo()
    ref = zoo.ms_resnet18(T=3, num_classes=10)
    ours = sj_sew.create_model("ms_resnet18", num_classes=10, T=3)
    bns = [[m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)] for net in (ref, ours)]
    assert all(torch.equal(a, b) for a, b in zip(*bns))  # the same BN init: 0.5, last BN of each block 0
    with torch.no_grad():  # random BN so every block contributes and neurons fire at varied rates
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.3)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict({_zoo_to_ours(k): v for k, v in ref.state_dict().items()}, strict=True)
    x = torch.rand(2, 3, 64, 64) * 4
    rates = []
    ours.sn.register_forward_hook(lambda m, i, o: rates.append(o.mean().item()))
    for mode in ("eval", "train"):
        ref.train(mode == "train"), ours.train(mode == "train")
        expected, got = run(ref, x), run(ours, x)
        assert torch.allclose(expected, got, atol=1e-5), (mode, (expected - got).abs().max())
    assert 0.01 < rates[0] < 0.99  # the comparison exercises real spiking, not silence


def test_documented_difference_spikingjelly_surrogate_is_narrower():
    """SpikingJelly 2.0's MS neuron uses Rect(alpha=2): gradient 2 on |u - 0.5| < 0.25. The paper and the
    authors' code use height 1 on |u - 0.5| < 0.5 (``sj_sew.Rectangular(1)``), which sj_sew follows.
    Forward (spikes, reset) is identical, so outputs match; training gradients differ."""
    zoo = _zoo()
    theirs = zoo._MSBlock._make_lif()
    ours = ms_neuron_spec().make()
    grads = []
    for sn in (theirs, ours):
        u = torch.tensor([0.1, 0.3, 0.6, 0.9], requires_grad=True)
        out = run(sn, u.reshape(1, -1))
        out.sum().backward()
        grads.append((out.flatten().tolist(), u.grad.tolist()))
    assert grads[0][0] == grads[1][0] == [0.0, 0.0, 1.0, 1.0]
    assert grads[0][1] == [0.0, 2.0, 2.0, 0.0]
    assert grads[1][1] == [1.0, 1.0, 1.0, 1.0]


# --- the authors' networks (github:BICLab/MS-ResNet, models/MS_ResNet.py), counted from their code ------------
MS_AUTHORS_PARAMS = {"ms_resnet18": 11_693_736, "ms_resnet34": 21_801_896, "ms_resnet104": 77_350_504}


@pytest.mark.parametrize("name", sorted(MS_AUTHORS_PARAMS))
def test_parameter_counts_equal_the_authors(name):
    assert sum(p.numel() for p in sj_sew.create_model(name).parameters()) == MS_AUTHORS_PARAMS[name]


def test_resnet104_stem_is_three_biased_convs_then_one_bn_and_dropout_before_fc():
    torch.manual_seed(0)
    net = sj_sew.create_model("ms_resnet104", num_classes=10, T=2).double().eval()
    stem = [net.conv1, *net.stem_rest, net.bn1]
    assert sum(p.numel() for m in stem for p in m.parameters()) == 75_776
    assert net.stem_once is False and net.dropout.p == 0.2
    with torch.no_grad():
        net.bn1.weight.uniform_(0.5, 1.5), net.bn1.bias.uniform_(-0.2, 0.2)
        net.bn1.running_mean.uniform_(-0.1, 0.1), net.bn1.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    # the authors' stem written out: conv3x3 s2 (bias), conv3x3 (bias), conv3x3 (bias), BN; nothing between
    h = F.conv2d(x, net.conv1.weight, net.conv1.bias, stride=2, padding=1)
    for conv in net.stem_rest:
        h = F.conv2d(h, conv.weight, conv.bias, padding=1)
    h = F.batch_norm(h, net.bn1.running_mean, net.bn1.running_var, net.bn1.weight, net.bn1.bias, eps=net.bn1.eps)
    assert torch.equal(net.stem(x.unsqueeze(0))[0], h)
    # dropout: one mask for every step, so it equals the authors' dropout on the time-averaged features
    net.train()
    feats = torch.rand(3, 2, 512, 1, 1, dtype=torch.float64)
    torch.manual_seed(1)
    per_step = net.dropout(torch.flatten(feats, 2))
    assert torch.equal((per_step != 0).all(0) | (per_step == 0).all(0), torch.ones_like(per_step[0], dtype=torch.bool))


def test_earlier_deep_stem_stays_available_for_its_checkpoints():
    old = sj_sew.create_model("ms_resnet104", stem="deep", dropout=0.0, num_classes=10)
    assert old.stem_rest[0].__class__.__name__ == "LIFNode" and old.dropout is None
    assert old.conv1.bias is None and old.conv1.out_channels == 32
