"""Identity mapping at zero init (paper, Sec. 3.3) for every block family, g and neuron."""
import pytest
import torch

from conftest import run, spikes
from sj_sew.blocks import BasicBlock, Bottleneck
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
    """Sec. 3.2: with LIF (tau = 2, Vth = 1) a single input spike cannot fire SN(F(S) + S) from rest."""
    b, c = _block(BasicBlock, "spiking", "ADD", neuron)
    x = spikes(6, 3, c, 5, 5)
    assert not torch.equal(run(b, x), x)


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
