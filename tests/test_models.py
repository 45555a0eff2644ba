import pytest
import torch
import torchvision

import sj_sew
from conftest import run, spikes

TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(depth):
    expected = n_params(getattr(torchvision.models, f"resnet{depth}")())
    assert expected == TORCHVISION_PARAMS[depth]
    for family in ("sew", "spiking"):
        assert n_params(sj_sew.create_model(f"{family}_resnet{depth}", neuron="if")) == expected


# The authors' numbers: Table 5/6 (0.13M, 1.19M) are the nets of their code (fangwei123456/Spike-Element-Wise-ResNet,
# dvsgesture/ and cifar10dvs/), which up-project with conv1x1-BN-PLIF where the notation writes k3.
def _sew_dvs_count(stages, classes, up_kernel):
    """Layer by layer: (in, out) channels of each up-projection, then SEW blocks of two conv3x3-BN-PLIF."""
    total, channels = 0, 2
    for width, blocks in stages:
        if width != channels:
            total += channels * width * up_kernel ** 2 + 2 * width + 1  # conv (no bias), BN, one PLIF parameter
        total += blocks * 2 * (width * width * 9 + 2 * width + 1)
        channels = width
    return total + channels * classes + classes  # 128x128 halved 7 times: 1x1


@pytest.mark.parametrize("name, stages, classes, authors, k3", [
    ("net7b", [(32, 7)], 11, 130_426, 130_938),
    ("wide_net7b", [(64, 4), (128, 3)], 10, 1_192_218, 1_258_778),
])
def test_paper_dvs_nets_have_the_authors_parameter_counts(name, stages, classes, authors, k3):
    assert n_params(sj_sew.create_model(name)) == _sew_dvs_count(stages, classes, 1) == authors
    assert n_params(sj_sew.create_model(name, up_kernel=3)) == _sew_dvs_count(stages, classes, 3) == k3
    assert round(authors / 1e6, 2) == {"net7b": 0.13, "wide_net7b": 1.19}[name]  # Tables 5 and 6
    ups = [m for m in sj_sew.create_model(name).layers if isinstance(m, torch.nn.Conv2d) and m.in_channels != m.out_channels]
    assert len(ups) == len(stages) and all(m.kernel_size == (1, 1) and m.padding == (0, 0) for m in ups)


def test_up_kernel_only_changes_up_projections_and_is_checked():
    net = sj_sew.NotationNet("c8k3s1-BN-IF-{Block(c8)}*1-c8k3s1-BN-IF-FC4", up_kernel=1, input_size=8)
    convs = [m for m in net.layers if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3)]  # 2->8 is an up-projection, 8->8 is not
    with pytest.raises(ValueError, match="up_kernel"):
        sj_sew.create_model("net7b", up_kernel=2)
    assert sj_sew.create_model("surrogate_net").up_kernel is None  # no published code: the notation's k3


def test_connect_takes_spikingjelly_and_authors_argument_names():
    for alias in ("cnf", "connection", "connect_f"):
        assert sj_sew.create_model("sew_resnet18", **{alias: "IAND"}).layer1[0].connect.name == "IAND"
        assert sj_sew.create_model("net7b", **{alias: "AND"}).layers[3].connect.name == "AND"
    assert sj_sew.create_model("sew_resnet18", connect="iand", cnf="IAND").layer1[0].connect.name == "IAND"
    with pytest.raises(ValueError, match="conflicting"):
        sj_sew.create_model("sew_resnet18", connect="ADD", cnf="IAND")


def _build_small(name):
    kwargs = {"num_classes": 5}
    if name.startswith(("sew_", "spiking_", "plain_")):
        model = sj_sew.create_model(name, T=2, **kwargs)
        return model, torch.rand(1, 3, 32, 32)
    model = sj_sew.create_model(name, **kwargs)
    return model, spikes(2, 1, model.in_channels, 128 if model.in_channels == 2 else 32,
                         128 if model.in_channels == 2 else 32)


@pytest.mark.parametrize("name", sj_sew.list_models())
def test_every_model_forward_backward(name):
    model, x = _build_small(name)
    out = run(model, x)
    assert out.shape == (1, 5)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"


def test_list_models_pattern_and_unknown_name():
    assert sj_sew.list_models("sew_resnet*") == [f"sew_resnet{d}" for d in (18, 34, 50, 101, 152)]
    with pytest.raises(ValueError, match="sew_resnet18"):
        sj_sew.create_model("sew_resnet19")


def test_register_model_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        sj_sew.register_model(lambda **kw: None, name="sew_resnet18")


def test_variant_refuses_to_override_what_its_name_fixes():
    with pytest.raises(TypeError, match="sew_resnet18 fixes family='sew'"):
        sj_sew.create_model("sew_resnet18", family="spiking")
    with pytest.raises(TypeError, match="ds_resnet20 fixes depth=20"):
        sj_sew.create_model("ds_resnet20", depth=32)
    net = sj_sew.create_model("ds_resnet_dvs", depth=14, in_channels=3)  # defaults may be overridden
    assert net.depth == 14 and net.in_channels == 3


def test_create_model_drops_none_kwargs():
    net = sj_sew.create_model("net7b", num_classes=None, T=None)
    assert net.num_classes == 11


@pytest.mark.parametrize("family", ["sew", "spiking", "plain"])
def test_notation_net_takes_any_family_and_g(family):
    for g in sj_sew.list_connects()[:3]:
        net = sj_sew.create_model("surrogate_net", family=family, connect=g, T=2, num_classes=4)
        assert run(net, torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_notation_parser_builds_the_written_net():
    net = sj_sew.NotationNet("c8k3s1-BN-LIF-{Block(c8)}*2-MPk2s2-c16k3s2-BN-IF-APk2s2-DP-FC6",
                             in_channels=2, input_size=16)
    assert isinstance(net.layers[3], sj_sew.BasicBlock) and isinstance(net.layers[4], sj_sew.BasicBlock)
    assert net.layers[-1].in_features == 16 * 2 * 2 and net.num_classes == 6
    assert type(net.layers[2]).__name__ == "LIFNode"
    assert run(net, spikes(3, 2, 2, 16, 16)).shape == (2, 6)


@pytest.mark.parametrize("bad", ["c8k3s1-BN-IF", "c8k3s1-{BN-IF", "c8k3s1-XYZ-FC2", "FC2-c8k3s1"])
def test_notation_errors_are_clear(bad):
    with pytest.raises(ValueError):
        sj_sew.NotationNet(bad, input_size=8)
