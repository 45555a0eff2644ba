"""The analysis tools on every block family: per-block probes, firing rates and their hook helper."""
import math

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew import _compat
from sj_sew.analysis import FiringRateMonitor, default_neuron_types
from sj_sew.analysis.hooks import ForwardHooks
from sj_sew.analysis.probes import BlockProbe, probe
from sj_sew.blocks import ResidualBlock
from sj_sew.neurons import MLFNode

# one model per family; sew with IAND so that its block outputs stay binary spikes
FAMILY_MODELS = {
    "sew": ("sew_resnet18", {"connect": "IAND"}),
    "spiking": ("spiking_resnet18", {}),
    "plain": ("plain_resnet50", {}),  # Bottleneck blocks: the stride is on conv2
    "ms": ("ms_resnet18", {}),
    "ds": ("ds_resnet20", {}),
}
# which of S (block input), A (residual neuron output), O (block output) are 0/1 spikes
BINARY = {"sew": "SAO", "spiking": "SAO", "plain": "SAO", "ms": "A", "ds": ""}
T, N = 2, 2
_models = {}
# the rate tests run the models in train mode: BatchNorm on batch statistics keeps every layer firing at init


def model_of(family: str) -> nn.Module:
    if family not in _models:
        name, options = FAMILY_MODELS[family]
        torch.manual_seed(0)
        _models[family] = sj_sew.create_model(name, T=T, num_classes=10, **options)
    functional.reset_net(_models[family])
    return _models[family]


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(N, 3, 32, 32, generator=g) * 2, torch.tensor([3, 7])


def record_blocks(model):
    """Independently recorded per block: input, residual neuron output and output of one forward."""
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    seen = {kind: [None] * len(blocks) for kind in "SAO"}

    def keep(kind, i, pre=False):
        if pre:
            return lambda module, args: seen[kind].__setitem__(i, args[0].detach().clone())
        return lambda module, args, out: seen[kind].__setitem__(i, out.detach().clone())

    hooks = ForwardHooks()
    for i, b in enumerate(blocks):
        hooks.add(b, keep("S", i, pre=True), pre=True).add(b.residual_neuron, keep("A", i)).add(b, keep("O", i))
    x, _ = batch()
    with hooks, torch.no_grad():
        model(x)
    functional.reset_net(model)
    return blocks, seen


def is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def no_hooks_left(model) -> bool:
    """No hook but the ones a model's neurons carry from construction (kernel choice, CuPy dtype guard)."""
    def own(hook):
        owners = (_compat.KernelScope, sj_sew.neurons.backend.CupyDtypeGuard)
        return isinstance(getattr(hook, "__self__", None), owners)

    return all(own(h) for m in model.modules() for h in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()])


# ------------------------------------------------------------------------------------------ BlockProbe


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_block_probe_rates_and_downsample_flags(family):
    model = model_of(family).train()
    blocks, seen = record_blocks(model)
    assert {b.family for b in blocks} == {family}
    x, _ = batch()
    summary = probe(model, x)
    assert no_hooks_left(model)
    for kind, key in zip("SAO", ("rate_s", "rate_a", "rate_o")):
        rates = summary[key]
        assert len(rates) == len(blocks)
        for rate, t in zip(rates, seen[kind]):
            assert rate == pytest.approx(t.float().mean().item(), rel=1e-6, abs=1e-9)
            if kind in BINARY[family]:
                assert is_binary(t) and 0.0 <= rate <= 1.0
        if kind in BINARY[family]:
            assert max(rates) > 0
    truth = [s.shape != o.shape for s, o in zip(seen["S"], seen["O"])]
    assert summary["downsample"] == truth and any(truth) and not all(truth)


def test_strided_plain_bottleneck_is_a_downsampling_block():
    """The stride of a Bottleneck is on conv2, with no shortcut to tell: the flag must still be set."""
    blocks, seen = record_blocks(model_of("plain"))
    strided = [i for i, b in enumerate(blocks) if b.conv2.stride != (1, 1)]
    assert strided and all(blocks[i].conv1.stride == (1, 1) and blocks[i].downsample is None for i in strided)
    flags = BlockProbe(model_of("plain")).downsample
    for i in strided:
        assert flags[i] and seen["S"][i].shape[-1] == 2 * seen["O"][i].shape[-1]


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_block_probe_gradient_norms(family):
    model = model_of(family).train()
    x, y = batch()
    summary = probe(model, x, y)
    model.zero_grad(set_to_none=True)
    norms = summary["grad_norm"]
    assert len(norms) == len(summary["rate_s"])
    assert all(math.isfinite(g) and g > 0 for g in norms), norms
    assert no_hooks_left(model)


def test_block_probe_needs_blocks_and_gradients_flag():
    with pytest.raises(ValueError, match="no sj_sew ResidualBlock"):
        BlockProbe(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="gradients=True"):
        BlockProbe(model_of("sew")).grad_norms()


# ---------------------------------------------------------------------------------- FiringRateMonitor


@pytest.mark.parametrize("family", list(FAMILY_MODELS))
def test_firing_rate_monitor_counts_every_neuron(family):
    model = model_of(family).train()
    neurons = {name: m for name, m in model.named_modules() if isinstance(m, default_neuron_types())}
    outputs = {}
    hooks = ForwardHooks()
    for name, m in neurons.items():
        hooks.add(m, lambda module, args, out, name=name: outputs.setdefault(name, []).append(out.detach()))
    x, _ = batch()
    with FiringRateMonitor(model) as monitor, hooks, torch.no_grad():
        model(x)
    functional.reset_net(model)
    assert no_hooks_left(model)
    rates = monitor.rates()
    assert set(rates) == set(neurons)
    spikes = steps = 0
    for name, outs in outputs.items():
        total, count = sum(float(o.sum()) for o in outs), sum(o.numel() for o in outs)
        assert rates[name] == pytest.approx(total / count, rel=1e-6, abs=1e-9)
        if all(is_binary(o) for o in outs):
            assert 0.0 <= rates[name] <= 1.0
        spikes, steps = spikes + total, steps + count
    assert monitor.mean_rate() == pytest.approx(spikes / steps, rel=1e-6)
    assert monitor.mean_rate() > 0
    if family == "ds":  # MLF neurons fire several levels at once, each counted
        assert any(isinstance(neurons[name], MLFNode) and max(o.max().item() for o in outputs[name]) > 1
                   and rates[name] > 0 for name in rates)


def test_firing_rate_monitor_counts_mlf_levels():
    """An MLF neuron firing two of its three levels counts two spikes."""
    node = MLFNode(levels=3, step_mode="m")
    with FiringRateMonitor(nn.Sequential(node)) as monitor, torch.no_grad():
        out = node(torch.full((1, 4), 2.0))  # crosses 0.6 and 1.6, not 2.6
    assert out.max().item() == 2 and monitor.rates() == {"0": 2.0}
    assert monitor.totals() == (8.0, 4)


# ---------------------------------------------------------------------------------------- ForwardHooks


def test_hooks_are_removed_after_an_exception():
    layer = nn.Linear(2, 2)
    calls = []
    hooks = ForwardHooks().add(layer, lambda m, args: calls.append("pre"), pre=True)
    hooks.add(layer, lambda m, args, out: calls.append("post"))
    with pytest.raises(RuntimeError, match="boom"):
        with hooks:
            assert hooks.active
            layer(torch.zeros(1, 2))
            raise RuntimeError("boom")
    assert calls == ["pre", "post"] and not hooks.active and no_hooks_left(layer)
    layer(torch.zeros(1, 2))
    assert calls == ["pre", "post"]
    with hooks:  # usable again once left
        layer(torch.zeros(1, 2))
    assert calls == ["pre", "post"] * 2 and no_hooks_left(layer)


def test_analysis_tools_remove_their_hooks_after_an_exception():
    model = model_of("sew")
    x, _ = batch()
    for tool in (FiringRateMonitor(model), BlockProbe(model, gradients=True)):
        with pytest.raises(RuntimeError, match="boom"):
            with tool:
                model(x)
                raise RuntimeError("boom")
        functional.reset_net(model)
        assert no_hooks_left(model)


def test_hooks_left_half_registered_are_removed_and_reentry_refused():
    layer = nn.Linear(2, 2)
    hooks = ForwardHooks().add(layer, lambda m, args, out: None).add(object(), lambda m, args, out: None)
    with pytest.raises(AttributeError):
        hooks.__enter__()
    assert not hooks.active and no_hooks_left(layer)
    single = ForwardHooks().add(layer, lambda m, args, out: None)
    with single:
        with pytest.raises(RuntimeError, match="already active"):
            single.__enter__()
    assert no_hooks_left(layer)
