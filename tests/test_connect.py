import pytest
import torch
from conftest import run

import sj_sew
from sj_sew.connect import get_connect

# Paper, Table 1: g(A, S) on the four binary pairs (A, S) = (0,0), (0,1), (1,0), (1,1).
TABLE_1 = {"ADD": [0, 1, 1, 2], "AND": [0, 0, 0, 1], "IAND": [0, 1, 0, 0]}


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_connect_reproduces_table_1(name):
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    s = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert get_connect(name).fn(a, s).tolist() == TABLE_1[name]


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_identity_spike_gives_identity(name):
    g = get_connect(name)
    s = torch.tensor([0.0, 1.0])
    assert torch.equal(g.fn(torch.full_like(s, g.identity_spike), s), s)


def test_lookup_is_case_insensitive_and_errors_list_valid_names():
    assert get_connect("iand").name == "IAND"
    with pytest.raises(ValueError, match="ADD"):
        get_connect("XOR")
    with pytest.raises(TypeError):
        get_connect(3)


@pytest.fixture
def or_connect():
    """A user-registered g for the duration of one test (the registry is global)."""
    import sj_sew.connect as registry

    name = "OR_TEST"
    sj_sew.register_connect(name, lambda a, s: a + s - a * s, identity_spike=0.0)
    yield name
    registry._CONNECTS.pop(name)


def test_register_connect_adds_a_new_g_usable_by_models(or_connect):
    with pytest.raises(ValueError, match="already registered"):
        sj_sew.register_connect(or_connect, lambda a, s: a, identity_spike=0.0)
    net = sj_sew.create_model("sew_resnet18", connect=or_connect, num_classes=3, T=2, width=16)
    block = net.layer1[0]
    assert block.connect.name == or_connect
    seen = {}
    block.register_forward_pre_hook(lambda m, args: seen.update(S=args[0]))
    block.residual_neuron.register_forward_hook(lambda m, args, out: seen.update(A=out))
    block.register_forward_hook(lambda m, args, out: seen.update(O=out))
    run(net, torch.rand(2, 3, 64, 64) * 4)
    a, s, o = seen["A"], seen["S"], seen["O"]
    assert ((a == 1) & (s == 1)).any() and ((a == 1) & (s == 0)).any(), "the input exercises OR's cases"
    assert torch.equal(o, a + s - a * s), "the model's block computes the registered g"
    identity = sj_sew.create_model("sew_resnet18", connect=or_connect, num_classes=3, T=2, width=16,
                                   zero_init_residual=True)
    identity.layer1[0].register_forward_pre_hook(lambda m, args: seen.update(S=args[0]))
    identity.layer1[0].register_forward_hook(lambda m, args, out: seen.update(O=out))
    run(identity, torch.rand(2, 3, 64, 64) * 4)
    assert torch.equal(seen["O"], seen["S"]), "identity_spike=0 makes the zero-init block an identity"
