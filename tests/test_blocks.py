"""Identity mapping at zero init (paper, Sec. 3.3) for every block family, g and neuron."""
import pytest
import torch

from conftest import run, spikes
from spikingjelly.activation_based import functional

from sj_sew.blocks import FAMILIES, BasicBlock, Bottleneck
from sj_sew.neurons import NeuronSpec

NEURONS = ["if", "lif", "plif"]
BLOCKS = [BasicBlock, Bottleneck]


def _block(block, family, connect, neuron, **kw):
    channels = 16
    planes = channels // block.expansion
    b = block(channels, planes, 1, family, connect, NeuronSpec(neuron, **kw))
    b.zero_init_last()
    return b, channels


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("connect", ["ADD", "AND", "IAND"])
@pytest.mark.parametrize("training", [True, False])
def test_sew_block_is_identity_at_zero_init(block, neuron, connect, training):
    b, c = _block(block, "sew", connect, neuron)
    b.train(training)
    x = spikes(6, 3, c, 5, 5)
    assert torch.equal(run(b, x), x)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_spiking_block_is_identity_for_if(block):
    b, c = _block(block, "spiking", "ADD", "if")
    x = spikes(6, 3, c, 5, 5)
    assert torch.equal(run(b, x), x)


@pytest.mark.parametrize("neuron", ["lif", "plif"])
def test_spiking_block_is_not_identity_for_leaky_neurons(neuron):
    """Sec. 3.2: at zero init a Spiking ResNet block is O = SN(S); with LIF (tau = 2, Vth = 1) one input spike
    charges the membrane to 0.5 and cannot fire it, so the block is no identity."""
    b, c = _block(BasicBlock, "spiking", "ADD", neuron)
    lone = NeuronSpec(neuron).make()  # SN applied to S directly
    x = spikes(6, 3, c, 5, 5)
    functional.reset_net(b), functional.reset_net(lone)
    out, expected = b(x), lone(x)
    assert torch.equal(out, expected) and torch.equal(b.residual_neuron.v, lone.v), "the block computes SN(S)"
    assert b.residual_neuron.v.max() >= 0.5, "the input spikes charged the membrane"
    assert not torch.equal(out, x)


@pytest.mark.parametrize("neuron,kw", [("lif", {"tau": 4.0}), ("if", {"v_threshold": 0.3}),
                                       ("if", {"v_reset": None})])
def test_and_identity_holds_for_other_neuron_settings(neuron, kw):
    b, c = _block(BasicBlock, "sew", "AND", neuron, **kw)
    x = spikes(8, 2, c, 4, 4)
    assert torch.equal(run(b, x), x)


def test_downsample_blocks_follow_figure_2():
    spec = NeuronSpec("if")
    sew = BasicBlock(8, 16, 2, "sew", "ADD", spec)
    spk = BasicBlock(8, 16, 2, "spiking", "ADD", spec)
    plain = BasicBlock(8, 16, 2, "plain", "ADD", spec)
    assert hasattr(sew, "downsample_sn") and sew.downsample is not None
    assert spk.downsample is not None and not hasattr(spk, "downsample_sn")
    assert plain.downsample is None
    x = spikes(2, 2, 8, 8, 8)
    for b in (sew, spk, plain):
        assert run(b, x).shape == (2, 2, 16, 4, 4)
    # SEW ADD output is the sum of two spike tensors: integer-valued in [0, 2]
    out = run(sew, x)
    assert torch.equal(out, out.round()) and out.max() <= 2


def test_plain_zero_init_is_a_no_op():
    b = BasicBlock(8, 8, 1, "plain", "ADD", NeuronSpec("if"))
    before = b.bn2.weight.clone()
    b.zero_init_last()
    assert torch.equal(b.bn2.weight, before)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
@pytest.mark.parametrize("family", [name for name, f in FAMILIES.items() if f.identity_bias is not None])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_init_gives_the_shortcut_for_every_family(block, family, stride):
    """Zero init silences the residual branch of every family that has one: O equals the shortcut's output
    alone (the input itself at stride 1; SEW/Spiking with IF, MS on membrane input, DS on spike counts)."""
    channels = 16
    b = block(channels, channels // block.expansion * (1 if stride == 1 else 2), stride, family,
              neuron=NeuronSpec("if") if family in ("sew", "spiking") else None)
    b.zero_init_last()
    x = spikes(4, 2, channels, 6, 6) * (2 if family in ("ms", "ds") else 1)  # counts / membrane for MS, DS
    out = run(b, x)
    functional.reset_net(b)
    shortcut = b.shortcut(x)
    if family == "spiking":
        shortcut = b.residual_neuron(shortcut)
    functional.reset_net(b)
    assert torch.equal(out, shortcut)
    if stride == 1:
        assert torch.equal(out, x)
    assert b.changes_shape == (stride == 2)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_has_the_block_contract(family):
    b = Bottleneck(16, 8, 2, family)  # stride on the 3x3: conv2
    assert b.family == family and b.changes_shape and b.last_bn is b.bn3
    assert b.residual_neuron is b.sn3
    assert (b.downsample is None) == (FAMILIES[family].shortcut is None)
    assert run(b, spikes(2, 1, 16, 8, 8)).shape == (2, 1, 32, 4, 4)


def test_unknown_family_names_the_valid_ones():
    with pytest.raises(ValueError, match="'sew', 'spiking', 'plain', 'ms', 'ds'"):
        BasicBlock(4, 4, 1, "dense")
