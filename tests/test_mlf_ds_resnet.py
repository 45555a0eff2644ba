"""The MLF neuron (levels, per-level surrogate gradients, undetached reset) and the Spiking DS-ResNet."""
import pytest
import torch
import torch.nn as nn
from conftest import run
from spikingjelly.activation_based import functional, monitor

import sj_sew
from sj_sew.blocks import BasicBlock
from sj_sew.models import DSResNet
from sj_sew.models.ds_resnet import TDBatchNorm
from sj_sew.neurons import MLFNode, mlf_spec



def test_mlf_hand_computed_sequence():
    node = MLFNode()
    x = torch.tensor([0.5, 0.7, 1.0, 3.0]).reshape(4, 1)
    # u = (0.5, 0.5, 0.5) none; (0.825,)*3 -> level 1 fires; (1.0, 1.206, 1.206) -> level 1;
    # (3.0, 3.30, 3.30) -> all three
    assert run(node, x).flatten().tolist() == [0.0, 1.0, 1.0, 3.0]
    functional.reset_net(node)
    node(x[:3])
    assert node.v.flatten().tolist() == pytest.approx([0.0, 0.25 * 0.825 + 1.0, 0.25 * 0.825 + 1.0])


@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_output_takes_every_level_0_to_K(levels):
    node = MLFNode(levels=levels)
    out = run(node, torch.linspace(-1, levels + 1, 500).reshape(1, -1))
    assert sorted(out.unique().tolist()) == list(range(levels + 1))


def test_per_level_rectangular_gradient():
    x = torch.tensor([0.05, 0.2, 1.0, 1.15, 2.0, 2.9, 3.2], requires_grad=True)
    node = MLFNode()
    spikes, _ = node.level_step(x, 0.0)
    theta = (0.6, 1.6, 2.6)
    for i in range(3):
        (g,) = torch.autograd.grad(spikes[i].sum(), x, retain_graph=True)
        assert g.tolist() == [1.0 if abs(v - theta[i]) < 0.5 else 0.0 for v in x.tolist()], i
    (g,) = torch.autograd.grad(node.step(x, 0.0)[0].sum(), x)
    assert g.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # windows tile [0.1, 3.1]


@pytest.mark.parametrize("detach_reset, expected", [(False, 0.25 * -0.8), (True, 0.0)])
def test_reset_is_not_detached_by_default(detach_reset, expected):
    node = MLFNode(levels=1, detach_reset=detach_reset)
    x = torch.tensor([[0.8], [0.7]], requires_grad=True)
    out = run(node, x)
    # t=1: u = 0.8 fires; v = u (1 - s), dv/dx1 = -u ds/du = -0.8 when the reset keeps its gradient.
    # t=2: u = 0.25 v + 0.7 = 0.7 fires with window gradient 1: do2/dx1 = 0.25 dv/dx1.
    (g,) = torch.autograd.grad(out[1].sum(), x)
    assert g[0].item() == pytest.approx(expected)


def test_single_and_multi_step_agree_and_monitor_sees_outputs():
    node = MLFNode(levels=3)
    x = torch.randn(6, 4, 3) * 2
    multi = run(node, x)
    node.step_mode = "s"
    single = torch.stack([node(xt) for xt in x])
    functional.reset_net(node)
    assert torch.equal(multi, single)
    assert isinstance(node.v, float) and node.v == 0.0
    net = nn.Sequential(nn.Identity(), MLFNode(step_mode="m"))
    mon = monitor.OutputMonitor(net, MLFNode)
    run(net, x)
    assert len(mon.records) == 1 and torch.equal(mon.records[0], multi)
    mon.remove_hooks()


def test_invalid_arguments_name_valid_choices():
    with pytest.raises(ValueError, match="positive int"):
        MLFNode(levels=0)
    with pytest.raises(ValueError, match="one threshold per level"):
        MLFNode(levels=2, thresholds=(0.6,))
    with pytest.raises(ValueError, match="'s', 'm'"):
        MLFNode(step_mode="x")


def _scalar_conv_bn(conv, bn, weight):
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = weight
        bn.weight.fill_(1.0), bn.bias.zero_(), bn.running_mean.zero_(), bn.running_var.fill_(1.0)
    bn.eps = 0.0


def test_ds_block_with_mlf_shortcut_hand_computed():
    block = BasicBlock(1, 1, stride=2, family="ds").eval()  # stride 2 -> shortcut conv1x1-BN-MLF
    assert isinstance(block.downsample_sn, MLFNode) and len(block.downsample) == 2
    _scalar_conv_bn(block.conv1, block.bn1, 1.0)
    _scalar_conv_bn(block.conv2, block.bn2, 1.0)
    _scalar_conv_bn(block.downsample[0], block.downsample[1], 2.0)
    x = torch.tensor([1.0, 2.0]).reshape(2, 1, 1, 1, 1)
    # residual: MLF(1, 2) = 1, 2 (u = 1 -> level 1; then (2, 2.25, 2.25) -> levels 1, 2); twice -> 1, 2
    # shortcut: MLF(2, 4) = 2 (levels 1, 2), then u = (4, 4, 0.5 + 4) -> 3
    # no activation after the sum: 3, 5 (above K)
    assert run(block, x).flatten().tolist() == [3.0, 5.0]


def test_ds_block_zero_init_passes_spike_counts_unchanged():
    block = BasicBlock(4, 4, family="ds")
    block.zero_init_last()
    x = torch.randint(0, 4, (3, 2, 4, 5, 5)).float()
    assert torch.equal(run(block, x), x)


@pytest.mark.parametrize("levels", [1, 3])
def test_ds_resnet_levels_reach_every_neuron_and_train(levels):
    net = sj_sew.create_model("ds_resnet14", levels=levels, num_classes=10, in_channels=3, T=2,
                              widths=(8, 16, 32))
    nodes = [m for m in net.modules() if isinstance(m, MLFNode)]
    assert len(nodes) == 1 + 2 * 6 + 2 and all(n.levels == levels for n in nodes)
    assert all(not n.detach_reset for n in nodes)
    out = run(net, torch.rand(2, 3, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 10) and net.conv1.weight.grad.abs().sum() > 0


def test_registered_depths_widths_and_dvs_variants():
    assert sj_sew.list_models("ds_resnet*") == ["ds_resnet", "ds_resnet14", "ds_resnet20", "ds_resnet32", "ds_resnet44",
                                                "ds_resnet68", "ds_resnet_dvs", "ds_resnet_dvs_cifar10"]
    net = sj_sew.create_model("ds_resnet20", T=None)
    assert (net.layer1[0].conv1.out_channels, net.layer3[0].conv1.out_channels, len(net.layer2)) == (64, 256, 3)
    dvs = sj_sew.create_model("ds_resnet_dvs", T=None)  # the authors' DVS Gesture net
    assert dvs.in_channels == 2 and dvs.fc.in_features == 64 and dvs.depth == 20 and dvs.num_classes == 11
    assert isinstance(dvs.bn0, TDBatchNorm) and not dvs.bn0.affine
    assert run(dvs, torch.rand(2, 1, 2, 16, 16)).shape == (1, 11)
    c10 = sj_sew.create_model("ds_resnet_dvs_cifar10", T=None)  # the authors' CIFAR10-DVS net
    assert (c10.depth, c10.fc.in_features, c10.layer1[0].conv1.out_channels, c10.bn0) == (14, 128, 32, None)
    assert sj_sew.create_model("ds_resnet", depth=8, T=None).depth == 8
    assert mlf_spec(levels=2).kwargs["thresholds"] == (0.6, 1.6)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        DSResNet(depth=15)
    with pytest.raises(ValueError, match="levels=1"):
        sj_sew.create_model("ds_resnet14", neuron="lif")
    with pytest.raises(ValueError, match="'td', 'bn'"):
        DSResNet(depth=8, norm="layer")


# Parameter counts of the authors' networks (github:langfengQ/MLF-DSResNet, parallel_nets/ResNet_for_*.py),
# counted from their code: CIFAR-10 ResNet-14..68, DVS Gesture resnet20, CIFAR10-DVS resnet14.
DS_AUTHORS_PARAMS = {"ds_resnet14": 2_777_674, "ds_resnet20": 4_327_754, "ds_resnet32": 7_427_914,
                     "ds_resnet44": 10_528_074, "ds_resnet68": 16_728_394, "ds_resnet_dvs": 272_395,
                     "ds_resnet_dvs_cifar10": 696_330}


@pytest.mark.parametrize("name", sorted(DS_AUTHORS_PARAMS))
def test_parameter_counts_equal_the_authors(name):
    assert sum(p.numel() for p in sj_sew.create_model(name).parameters()) == DS_AUTHORS_PARAMS[name]


def _tdbn_restated(x, bn, scale, training):
    """The authors' tdBN equations on [T*N, C, H, W], written out: eps outside the square root."""
    if training:
        mean, var = x.mean([0, 2, 3], keepdim=True), x.var([0, 2, 3], keepdim=True, unbiased=False)
    else:
        mean, var = bn.running_mean[None, :, None, None], bn.running_var[None, :, None, None]
    y = scale * (x - mean) / (torch.sqrt(var) + bn.eps)
    return y * bn.weight[None, :, None, None] + bn.bias[None, :, None, None] if bn.affine else y


@pytest.mark.parametrize("affine", [True, False])
def test_tdbn_equals_the_authors_equations_and_differs_from_batchnorm(affine):
    torch.manual_seed(0)
    bn = TDBatchNorm(3, scale=0.6, affine=affine).double()
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.3, 0.3)
    x = torch.randn(4, 5, 3, 6, 6, dtype=torch.float64) * 0.01  # small variance: where eps placement matters
    flat = x.flatten(0, 1)
    out = bn(x)
    assert torch.equal(out.flatten(0, 1), _tdbn_restated(flat, bn, 0.6, True))
    n = flat.numel() / 3
    expected_var = 0.9 + 0.1 * flat.var([0, 2, 3], unbiased=False) * n / (n - 1)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-12, atol=0)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    assert torch.equal(bn(x).flatten(0, 1), _tdbn_restated(flat, bn, 0.6, False))
    plain = nn.BatchNorm2d(3, affine=False).double()(flat) * 0.6  # eps inside the root: about 5% apart here
    assert (plain - _tdbn_restated(flat, bn, 0.6, True) / (bn.weight[None, :, None, None] if affine else 1)
            ).abs().max() > 1e-2


def test_ds_resnet_uses_tdbn_fan_in_init_and_repeats_static_input():
    torch.manual_seed(0)
    net = sj_sew.create_model("ds_resnet14", widths=(8, 16, 32), T=2)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, TDBatchNorm) and m.scale == pytest.approx(0.6) for m in norms)
    assert all(m.weight.eq(1).all() and m.bias.eq(0).all() for m in norms)
    w = net.layer3[0].conv2.weight  # fan-in 16 * 9 ... here 32 * 9: std sqrt(2 / fan_in)
    assert w.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.1)
    assert net.fc.weight.std().item() == pytest.approx((2 / 32) ** 0.5, rel=0.25)
    assert net.stem_once is False
    # the stem BN counts N*T samples, as when the authors repeat the image before conv1
    x = torch.rand(3, 3, 8, 8)
    run(net, x)
    ref = sj_sew.create_model("ds_resnet14", widths=(8, 16, 32), T=None)
    ref.load_state_dict(net.state_dict())  # same weights; its running stats are overwritten below
    with torch.no_grad():
        ref.bn1.running_var.fill_(1.0), ref.bn1.running_mean.zero_(), ref.bn1.num_batches_tracked.zero_()
    ref2 = sj_sew.create_model("ds_resnet14", widths=(8, 16, 32), T=2)
    ref2.load_state_dict(ref.state_dict())
    run(ref, x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
    assert torch.equal(ref.bn1.running_var, net.bn1.running_var)
    ref2.stem_once = True
    run(ref2, x)
    assert not torch.equal(ref2.bn1.running_var, net.bn1.running_var)  # N samples instead of N*T


def test_norm_bn_builds_the_earlier_reading():
    net = sj_sew.create_model("ds_resnet14", widths=(8, 16, 32), norm="bn", input_bn=True)
    assert isinstance(net.bn1, nn.BatchNorm2d) and net.bn1.weight.eq(0.6).all() and not net.bn0.affine
