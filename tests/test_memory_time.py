"""Checkpointing over time (sj_sew.memory.time_chunked_backward): gradients, loss and logits equal to the
whole-sequence backward (float64: to rounding; float32 with the 'memory' budget), for every family, any chunk
length, dropout included; the neuron-state gradient really crosses chunk boundaries; BatchNorm that mixes time
steps is refused."""
from __future__ import annotations

import copy

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew.memory import freeze_batchnorm, memory_saving, time_chunked_backward
from sj_sew.models.notation import NotationNet

#: one small net per family (the mlf/ds family's MLF neurons hold three potentials each)
NETS = {
    "sew": ("sew_resnet18", dict(width=8, T=6)),
    "spiking": ("spiking_resnet18", dict(width=8, T=6)),
    "plain": ("plain_resnet18", dict(width=8, T=6)),
    "ms": ("ms_resnet18", dict(widths=(4, 4, 8, 8))),
    "ms_dropout": ("ms_resnet104", dict(widths=(4, 4, 8, 8), stem_width=4)),
    "ds": ("ds_resnet20", dict(widths=(4, 4, 8))),
    "plif_notation": ("c8k3s1-BN-PLIF-{SEW Block(c8)-MPk2s2}*3-FC5", dict(input_size=32)),
}


def _net(key, dtype=torch.float64):
    name, kwargs = NETS[key]
    torch.manual_seed(0)
    if name.startswith("c8"):  # a notation net: PLIF neurons, SpikingJelly's own class
        model = NotationNet(name, **kwargs).to(dtype)
    else:
        model = sj_sew.create_model(name, num_classes=5, **kwargs).to(dtype)
    for m in model.modules():  # statistics as after training, so that frozen BatchNorm is not the identity
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    freeze_batchnorm(model)
    if name.startswith(("sew", "spiking", "plain")):
        x = torch.rand(2, 3, 32, 32, dtype=dtype)  # static images, repeated over model.T
    else:
        size = getattr(model, "input_size", None) or (128 if model.in_channels == 2 else 32)
        x = (torch.rand(7, 2, model.in_channels, size, size) < 0.3).to(dtype)
    return model, x, torch.tensor([1, 3])


def _whole_sequence(model, x, y):
    functional.reset_net(model)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    functional.reset_net(model)
    return loss.detach(), logits.detach()


def _grads(model):
    return [p.grad for p in model.parameters()]


def _max_rel_error(got, want):
    pairs = [(a, b) for a, b in zip(got, want) if b is not None]
    assert all(a is not None for a, _ in pairs), "a parameter got no gradient"
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-300)) for a, b in pairs)


@pytest.mark.parametrize("key, chunk_steps", [(key, 2) for key in NETS] + [("sew", c) for c in ("sqrt", 1, 100)])
def test_gradients_equal_the_whole_sequence_backward(key, chunk_steps):
    model, x, y = _net(key)
    chunked = copy.deepcopy(model)
    torch.manual_seed(1)  # the same dropout masks in both runs
    loss, logits = _whole_sequence(model, x, y)
    torch.manual_seed(1)
    got_loss, got_logits = time_chunked_backward(chunked, x, y, chunk_steps=chunk_steps)
    torch.testing.assert_close(got_loss, loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_logits, logits, rtol=1e-12, atol=1e-12)
    assert _max_rel_error(_grads(chunked), _grads(model)) < 1e-10
    assert chunked.T == model.T, "the built T comes back"


def test_the_state_gradient_crosses_chunk_boundaries(monkeypatch):
    """Without handing the neuron-state gradient back to the earlier chunk the gradients are wrong: the test
    above would fail."""
    model, x, y = _net("sew")
    chunked = copy.deepcopy(model)
    _whole_sequence(model, x, y)
    real = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda tensors, grads: real(tensors[:1], grads[:1]))
    time_chunked_backward(chunked, x, y, chunk_steps=2)
    assert _max_rel_error(_grads(chunked), _grads(model)) > 1e-3


def test_neurons_are_left_at_rest_and_rng_as_after_the_forward_passes():
    model, x, y = _net("ms_dropout")
    torch.manual_seed(2)
    time_chunked_backward(model, x, y, chunk_steps=3)
    after_chunked = torch.random.get_rng_state()
    torch.manual_seed(2)
    with torch.no_grad():
        functional.reset_net(model)
        model(x)
        functional.reset_net(model)
    assert torch.equal(after_chunked, torch.random.get_rng_state())
    model2, _, _ = _net("ms_dropout")
    time_chunked_backward(model2, x, y, chunk_steps=3)
    rest = copy.deepcopy(model2)
    functional.reset_net(rest)
    states = [(a._memories, b._memories) for a, b in zip(model2.modules(), rest.modules()) if hasattr(a, "_memories")]
    assert states and all(a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a) for a, b in states)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def test_composes_with_the_memory_budget_in_float32():
    model, x, y = _net("sew", torch.float32)
    reference = memory_saving(copy.deepcopy(model), budget="memory")
    chunked = memory_saving(copy.deepcopy(model), budget="memory")
    loss, _ = _whole_sequence(reference, x, y)
    got, _ = time_chunked_backward(chunked, x, y)
    torch.testing.assert_close(got, loss, rtol=1e-6, atol=1e-6)
    assert _max_rel_error(_grads(chunked), _grads(reference)) < 1e-4


def test_batchnorm_that_mixes_time_steps_is_refused():
    model, x, y = _net("sew")
    model.train()  # BatchNorm back on batch statistics over T x N
    with pytest.raises(ValueError, match="BatchNorm layer.*training mode.*freeze_batchnorm"):
        time_chunked_backward(model, x, y)
    freeze_batchnorm(model)
    with pytest.raises(ValueError, match="chunk_steps must be a positive int or 'sqrt'"):
        time_chunked_backward(model, x, y, chunk_steps=0)
    model.T = None
    with pytest.raises(ValueError, match=r"static images \[N, C, H, W\] need a model with an integer \.T"):
        time_chunked_backward(model, x, y)
