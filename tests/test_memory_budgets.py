"""Memory budgets and compact saved tensors: gradients bit-equal to the default mode's for every family,
BatchNorm statistics and neuron state equal; the packing is exact and falls back where a value does not fit."""
import copy
import pickle

import pytest
import torch
from conftest import grads, model_pair, train_forward_backward
from spikingjelly.activation_based import base, functional

import sj_sew
from sj_sew.memory import (BUDGETS, Packed, SegmentedSequential, compact_saved_tensors, is_compact, memory_saving,
                           pack, unpack)

# every family; stages, loose blocks, the static-input stem and PLIF
CASES = [
    ("sew_resnet18", {"num_classes": 10, "T": 3, "width": 16}, (2, 3, 32, 32)),
    ("sew_resnet50", {"num_classes": 10, "connect": "IAND", "width": 8}, (2, 2, 3, 32, 32)),
    ("spiking_resnet18", {"num_classes": 10, "neuron": "lif", "width": 16}, (2, 2, 3, 32, 32)),
    ("plain_resnet18", {"num_classes": 10, "width": 8}, (2, 2, 3, 32, 32)),
    ("ms_resnet", {"depth": 14, "T": 2}, (2, 3, 16, 16)),
    ("ds_resnet14", {"widths": (8, 16, 32), "T": 2}, (2, 3, 16, 16)),
    ("surrogate_net", {"T": 2}, (2, 3, 32, 32)),
]


def _neuron_states(net):
    return [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in m._memories.items()}
            for m in net.modules() if isinstance(m, base.MemoryModule)]


def _step(net, x):
    """Forward from rest + backward of a fixed loss; returns (output, neuron state after the backward)."""
    functional.reset_net(net)
    out = net(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), _neuron_states(net)


def _assert_same_step(default, other, x):
    out_a, state_a = _step(default, x)
    out_b, state_b = _step(other, x)
    assert torch.equal(out_a, out_b)
    ga, gb = grads(default), grads(other)
    assert ga.keys() == gb.keys() and len(ga) > 5
    for k in ga:
        assert torch.equal(ga[k], gb[k]), f"gradient of {k} differs (must be bit-equal)"
    for (k, a), b in zip(default.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), f"{k} (BatchNorm statistics) differ"
    assert len(state_a) == len(state_b)
    for sa, sb in zip(state_a, state_b):
        for key in sa:
            va, vb = sa[key], sb[key]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, f"neuron state {key} differs"


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=[c[0] for c in CASES])
def test_budget_gradients_bit_equal(name, kwargs, shape, budget):
    default, saving = model_pair(name, **kwargs)
    assert memory_saving(saving, budget=budget) is saving
    assert is_compact(saving)
    _assert_same_step(default, saving, torch.rand(*shape) * 3)


# The fused neurons' backward writes its gradient over the recomputed potentials inside checkpointed segments,
# and a neuron that ends a segment keeps no spikes when recomputed: every reset rule takes its own branch there.
@pytest.mark.parametrize("neuron_kwargs", [{"neuron": "if", "v_reset": None},
                                           {"neuron": "if", "detach_reset": False},
                                           {"neuron": "lif", "v_reset": -0.2, "detach_reset": False},
                                           {"neuron": "lif", "v_reset": None, "detach_reset": False}],
                         ids=["if-soft", "if-hard-attached", "lif-hard-attached", "lif-soft-attached"])
def test_memory_budget_exact_for_every_reset_rule(neuron_kwargs):
    default, saving = model_pair("sew_resnet18", num_classes=10, T=3, width=8, **neuron_kwargs)
    memory_saving(saving, budget="memory")
    _assert_same_step(default, saving, torch.rand(2, 3, 32, 32) * 3)


def test_memory_budget_backward_twice_with_retain_graph():
    """The overwritten potentials are recomputed for each backward pass: two passes accumulate the same
    gradients as in the default mode."""
    default, saving = model_pair("spiking_resnet18", num_classes=10, T=2, width=8)
    memory_saving(saving, budget="memory")
    x = torch.rand(2, 3, 32, 32) * 3
    for net in (default, saving):
        functional.reset_net(net)
        loss = (net(x) * torch.linspace(-1, 1, 10)).sum()
        loss.backward(retain_graph=True)
        loss.backward()
    ga, gb = grads(default), grads(saving)
    assert all(torch.equal(ga[k], gb[k]) for k in ga) and any(ga[k].abs().sum() > 0 for k in ga)


@pytest.mark.parametrize("name,kwargs,shape", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_legacy_checkpointing_gradients_bit_equal(name, kwargs, shape):
    default, saving = model_pair(name, **kwargs)
    memory_saving(saving, blocks_per_segment=1, checkpoint_last_stage=True)
    assert not is_compact(saving)
    _assert_same_step(default, saving, torch.rand(*shape) * 3)


def test_compact_context_on_any_model_is_exact():
    """compact_saved_tensors around the forward pass of a default-mode model (and of SpikingJelly's zoo)."""
    default, other = model_pair("sew_resnet18", num_classes=10, width=16, T=2)
    x = torch.rand(2, 3, 32, 32) * 3
    out_a, _ = _step(default, x)
    functional.reset_net(other)
    with compact_saved_tensors():
        out_b = other(x)
    (out_b * torch.linspace(-1, 1, out_b.shape[-1])).sum().backward()
    assert torch.equal(out_a, out_b.detach())
    for k, g in grads(default).items():
        assert torch.equal(g, grads(other)[k]), k


def test_budgets_plan_segments_and_compaction():
    net = sj_sew.create_model("sew_resnet50", num_classes=10, width=8)
    stages = [m for m in net.modules() if isinstance(m, SegmentedSequential)]
    memory_saving(net, budget="memory")
    assert all(st.segment_size == 1 and st.compact for st in stages) and net.grad_checkpointing
    memory_saving(net, budget="balanced")
    assert [st.segment_size for st in stages] == [2, 2, 3, 2] and all(st.compact for st in stages)
    memory_saving(net, budget="speed")
    assert not any(st.segment_size for st in stages) and is_compact(net) and not net.grad_checkpointing
    net.set_grad_checkpointing(False)
    assert not is_compact(net)
    with pytest.raises(ValueError, match="budget"):
        memory_saving(net, budget="fast")


def test_compact_model_pickles_and_copies():
    net = memory_saving(sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2), budget="memory")
    for again in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert is_compact(again) and again.layer1.compact
        x = torch.rand(2, 3, 32, 32)
        assert torch.equal(train_forward_backward(again, x), train_forward_backward(net, x))


def test_checkpointed_segments_keep_packed_inputs():
    """The checkpoint holds a segment's input as packed bits / uint8, not float32."""
    net = memory_saving(sj_sew.create_model("sew_resnet18", num_classes=10, width=16, T=2), budget="memory")
    held = []
    real = sj_sew.memory.packing.pack
    sj_sew.memory.packing.pack = lambda t: held.append(real(t)) or held[-1]
    try:
        functional.reset_net(net)
        net(torch.rand(2, 3, 32, 32) * 3).sum().backward()
    finally:
        sj_sew.memory.packing.pack = real
    kinds = {p.kind for p in held if isinstance(p, Packed)}
    assert "bits" in kinds and "u8" in kinds, kinds  # plain spikes, and ADD sums of spikes


def test_pack_roundtrip_and_sizes():
    spikes = (torch.rand(3, 4, 1000) < 0.3).float()
    p = pack(spikes)
    assert isinstance(p, Packed) and p.kind == "bits" and p.nbytes == spikes.numel() // 8
    assert torch.equal(unpack(p), spikes) and unpack(p).dtype == spikes.dtype
    sums = torch.randint(0, 256, (5, 1001)).to(torch.float16)
    p = pack(sums)
    assert p.kind == "u8" and torch.equal(unpack(p), sums) and unpack(p).dtype == torch.float16
    odd = torch.rand(4099) < 0.5  # bool, a length that is not a multiple of 8
    assert pack(odd).kind == "bits" and torch.equal(unpack(pack(odd)), odd)
    index = torch.randint(0, 30000, (64, 100))
    p = pack(index)
    assert p.kind == "int" and p.data.dtype == torch.int16 and torch.equal(unpack(p), index)
    assert unpack(p).dtype == torch.int64
    every_byte = torch.arange(256).repeat(32).float()
    assert torch.equal(unpack(pack((every_byte.view(-1, 1) // 2 ** torch.arange(8) % 2).flatten())),
                       (every_byte.view(-1, 1) // 2 ** torch.arange(8) % 2).flatten())


@pytest.mark.parametrize("bad", [256.0, 0.5, -1.0, float("nan"), float("inf"), -0.0],
                         ids=["256", "fraction", "negative", "nan", "inf", "negative zero"])
def test_pack_falls_back_where_a_value_does_not_fit(bad):
    t = torch.randint(0, 2, (8192,)).float()
    t[1234] = bad
    kept = pack(t)
    assert kept is t, "a tensor with a value that has no exact compact form is kept as it is"
    wide = torch.randint(0, 2 ** 40, (8192,))
    assert pack(wide) is wide
    assert pack(torch.ones(10)) is not None and not isinstance(pack(torch.ones(10)), Packed)  # small: kept
    view = torch.ones(8192 * 2)[::2]
    assert pack(view) is view  # a view: compacting it would add memory
    param = torch.nn.Parameter(torch.ones(8192))
    assert pack(param) is param


def test_fallback_path_keeps_gradients_exact():
    """An MS-ResNet's segment inputs are membrane potentials (no compact form): kept as float, still exact."""
    default, saving = model_pair("ms_resnet", depth=8, T=2)
    memory_saving(saving, budget="memory")
    held = []
    real = sj_sew.memory.packing.pack
    sj_sew.memory.packing.pack = lambda t: held.append(real(t)) or held[-1]
    try:
        _assert_same_step(default, saving, torch.rand(2, 3, 16, 16) * 3)
    finally:
        sj_sew.memory.packing.pack = real
    assert any(isinstance(p, torch.Tensor) and p.is_floating_point() and p.numel() >= 4096 for p in held)


def test_compact_scope_closes_when_the_forward_raises():
    net = memory_saving(sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2), budget="speed")
    with pytest.raises(ValueError, match="non-finite"):
        net(torch.full((2, 3, 32, 32), float("nan")))
    assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None, "the pack hooks leaked"
