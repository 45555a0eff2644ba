import pytest
import torch

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
    net = sj_sew.create_model("sew_resnet18", connect=or_connect, num_classes=3, zero_init_residual=True)
    assert net.layer1[0].connect.name == or_connect
    x = (torch.rand(2, 1, 64, 8, 8) < 0.5).float()
    assert torch.equal(net.layer1[0].connect.fn(torch.zeros_like(x), x), x)
