"""The SEW block's output through one call of sj_sew's kernels (issue 23), and the 0/1 marks beyond the neurons.

On CUDA with ``backend='fused'`` a SEW block (O = g(SN(BN(conv(...))), S')) computes O with one
``ops.multistep`` call: the last BN fused in eval mode, g always. Here the route is forced on CPU
(:func:`sj_sew.neurons.fused.kernel_route_forced`; the ops run their reference) and compared with the normal CPU
path of the same weights (the fused torch neuron for IF/LIF, SpikingJelly's for PLIF, the BN and g as modules):
outputs and every neuron's state bit for bit, gradients of the input and of every parameter to 1e-6. A hook on
the residual neuron (a firing-rate monitor) makes the block run unfused, and the monitor sees A.

Marks (:func:`sj_sew.memory.mark_binary`): AND/IAND of two marked 0/1 tensors and max pooling of a marked tensor
are marked (as on CUDA, where the neurons' hooks mark their spikes), ADD's sums and unmarked inputs never.
"""
from __future__ import annotations

import copy

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from compiled import check_compiled_equals_eager
from sj_sew.analysis import FiringRateMonitor
from sj_sew.connect import get_connect, register_connect
from sj_sew.memory import packing
from sj_sew.neurons import NeuronSpec, fused, ops
from sj_sew.neurons import backend as backends

CONNECTS = ["ADD", "AND", "IAND"]
NEURONS = ["if", "lif", "plif"]
#: gradients of the forced route against the normal path, relative to the largest of each tensor (its backward
#: sums in another order: measured up to 3e-7 for weights, 3e-6 for PLIF's w, a sum over every neuron and step)
GRAD_RTOL = 1e-5


def _assert_grad_close(got, want, name):
    err, scale = float((got - want).abs().max()), float(want.abs().max())
    assert err <= GRAD_RTOL * scale + 1e-7, f"{name}: max difference {err:.3g} for values up to {scale:.3g}"


def _randomize_batchnorms(model, x, seed=0):
    """Affine parameters away from their defaults, and running statistics those of a batch ``x`` (scaled and
    shifted a little, so an eval BN differs from a train BN): the neurons behind the BNs fire, not always."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.momentum = 1.0
        functional.reset_net(model)
        model.train()(x)
        functional.reset_net(model)
        for m in bns:
            c = m.num_features
            m.momentum = 0.1
            m.running_mean.add_(torch.randn(c, generator=g) * 0.1)
            m.running_var.mul_(torch.rand(c, generator=g) * 0.4 + 0.8)
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.3 + 0.3)


def _residual_rate(block, x):
    """The firing rate of A in one call of ``block`` from rest (a hook keeps the block unfused)."""
    rates = []
    handle = block.residual_neuron.register_forward_hook(lambda m, args, out: rates.append(float(out.mean())))
    with torch.no_grad():
        functional.reset_net(block)
        block(x)
    functional.reset_net(block)
    handle.remove()
    return rates[0]


class _FusedCalls:
    """Counts the neurons' kernel calls that fuse g (and a BN) while active."""

    def __init__(self, monkeypatch):
        self.connect = self.bn = 0
        real = fused._FusedMultiStep._kernel_forward

        def spy(node, x_seq, **fusion):
            self.connect += fusion.get("connect") is not None
            self.bn += fusion.get("bn") is not None
            return real(node, x_seq, **fusion)

        monkeypatch.setattr(fused._FusedMultiStep, "_kernel_forward", spy)


def _run(model, x, forced: bool, calls: int = 2):
    """Outputs of ``calls`` calls from rest (the state carries over), every neuron's state after them, the
    gradients of the input and of every parameter (and BN running statistics)."""
    functional.reset_net(model)
    model.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    with fused.kernel_route_forced() if forced else torch.enable_grad():  # (a checkpoint's recomputation too)
        out = torch.stack([model(xi) for _ in range(calls)])
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    states = {n: m.v.detach().clone() for n, m in model.named_modules() if isinstance(m, fused._FusedMultiStep)}
    grads = {n: p.grad for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    functional.reset_net(model)
    return out.detach(), states, xi.grad, grads, buffers


def _assert_same(forced, normal):
    (o1, v1, gx1, gp1, b1), (o0, v0, gx0, gp0, b0) = forced, normal
    assert torch.equal(o1, o0), f"{int((o1 != o0).sum())} outputs differ"
    assert v1.keys() == v0.keys() and all(torch.equal(v1[n], v0[n]) for n in v0), "neuron states differ"
    _assert_grad_close(gx1, gx0, "input")
    assert gp1.keys() == gp0.keys()
    for name in gp0:
        assert (gp1[name] is None) == (gp0[name] is None), name
        if gp0[name] is not None:
            _assert_grad_close(gp1[name], gp0[name], name)
    assert all(torch.equal(b1[n], b0[n]) for n in b0), "BN running statistics differ"


def _spikes(shape, seed=1, p=0.4):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


# --- the forced route against the normal path --------------------------------------------------------------
@pytest.mark.parametrize("bn_eval", [True, False], ids=["eval-bn", "train-bn"])
@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("connect", CONNECTS)
def test_sew_block_through_one_kernel_call_equals_the_normal_path(connect, neuron, bn_eval, monkeypatch):
    """A downsampling SEW block (shortcut conv-BN-SN): with the route forced, O comes from one fused call per
    forward (BN fused only in eval mode) and equals the normal path's."""
    torch.manual_seed(0)
    block = sj_sew.BasicBlock(4, 8, 2, family="sew", connect=connect, neuron=NeuronSpec(neuron, backend="fused"))
    x = _spikes((3, 2, 4, 8, 8))
    _randomize_batchnorms(block, x)
    block.train(not bn_eval)
    twin = copy.deepcopy(block)
    assert 0.05 < _residual_rate(copy.deepcopy(twin), x) < 0.95
    normal = _run(twin, x, forced=False)
    calls = _FusedCalls(monkeypatch)
    forced = _run(block, x, forced=True)
    assert calls.connect == 2 and calls.bn == (2 if bn_eval else 0)
    _assert_same(forced, normal)


@pytest.mark.parametrize("block_cls,family,stride,connect", [
    (sj_sew.BasicBlock, "sew", 1, "IAND"),  # identity shortcut
    (sj_sew.Bottleneck, "sew-conv-bn", 2, "ADD"),  # shortcut conv-BN, no SN: a real-valued S'
    (sj_sew.Bottleneck, "sew-conv-bn", 2, "AND")])
def test_other_sew_blocks_through_one_kernel_call(block_cls, family, stride, connect, monkeypatch):
    torch.manual_seed(0)
    block = block_cls(8, 2 if block_cls is sj_sew.Bottleneck else 8, stride, family=family, connect=connect,
                      neuron=NeuronSpec("lif", backend="fused", tau=2.0))
    x = _spikes((2, 2, 8, 6, 6))
    _randomize_batchnorms(block, x)
    block.eval()
    twin = copy.deepcopy(block)
    assert 0.05 < _residual_rate(copy.deepcopy(twin), x) < 0.95
    normal = _run(twin, x, forced=False)
    calls = _FusedCalls(monkeypatch)
    forced = _run(block, x, forced=True)
    assert calls.connect == 2 and calls.bn == 2
    _assert_same(forced, normal)


@pytest.mark.parametrize("bn_eval", [True, False], ids=["eval-bn", "train-bn"])
@pytest.mark.parametrize("connect,neuron", [("ADD", "plif"), ("IAND", "if")])
def test_sew_resnet_through_the_kernel_route_equals_the_normal_path(connect, neuron, bn_eval, monkeypatch):
    """A whole SEW ResNet-18 (width 8): every block's output from one fused call, logits, states and gradients
    as on the normal path."""
    torch.manual_seed(0)
    net = sj_sew.create_model("sew_resnet18", connect=connect, neuron=neuron, backend="fused", width=8,
                              num_classes=5, T=2)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _randomize_batchnorms(net, x)
    net.train(not bn_eval)
    twin = copy.deepcopy(net)
    normal = _run(twin, x, forced=False, calls=1)
    calls = _FusedCalls(monkeypatch)
    forced = _run(net, x, forced=True, calls=1)
    blocks = sum(isinstance(m, sj_sew.ResidualBlock) for m in net.modules())
    assert blocks == 8 and calls.connect == blocks and calls.bn == (blocks if bn_eval else 0)
    _assert_same(forced, normal)


@pytest.mark.parametrize("budget", ["balanced", "memory"])
def test_memory_saving_recomputes_the_fused_blocks_exactly(budget, monkeypatch):
    """Under sj_sew.memory_saving the checkpointed segments recompute the fused blocks in backward (the route is
    the same in forward and recomputation, as on CUDA): results as the normal path's without memory saving."""
    torch.manual_seed(0)
    net = sj_sew.create_model("sew_resnet18", connect="AND", neuron="lif", backend="fused", width=8,
                              num_classes=5, T=2)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    _randomize_batchnorms(net, x)
    net.train()
    twin = copy.deepcopy(net)
    sj_sew.memory_saving(net, budget=budget)
    normal = _run(twin, x, forced=False, calls=1)
    calls = _FusedCalls(monkeypatch)
    forced = _run(net, x, forced=True, calls=1)
    assert calls.connect > 8  # every block's forward, then the recomputed ones
    _assert_same(forced, normal)


@pytest.mark.slow
def test_fused_blocks_compile_fullgraph():
    """torch.compile(fullgraph=True) of a SEW ResNet-18 forward on the forced route, the marking hooks on as on
    CUDA (what a compiled training step on a GPU traces: the route's checks, one op call per block): one graph,
    outputs and gradients equal to eager (~15 s)."""
    torch.manual_seed(0)
    model = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend="fused", connect="IAND")
    model.sync_backend(torch.device("cpu"))
    backends.set_spike_marks(model.modules(), model.neuron_spec.cls, enabled=True)
    x = torch.rand(2, 3, 32, 32)

    def forward(x):
        out = model(x)
        return (out * torch.linspace(-1, 1, 5)).sum(), out

    with fused.kernel_route_forced():
        check_compiled_equals_eager(forward, list(model.parameters()), lambda: (x,), reset=model)


def test_a_monitor_on_the_residual_neuron_keeps_the_block_unfused(monkeypatch):
    """With firing-rate monitors (hooks on every neuron) the blocks run unfused on the forced route, give the
    normal path's results, and the residual neurons' rates are those of A (not of O = A + S)."""
    torch.manual_seed(0)
    net = sj_sew.create_model("sew_resnet18", connect="ADD", neuron="if", backend="fused", width=8,
                              num_classes=5, T=2)
    twin = copy.deepcopy(net)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with FiringRateMonitor(twin) as normal_monitor:
        normal = _run(twin, x, forced=False, calls=1)
    calls = _FusedCalls(monkeypatch)
    with FiringRateMonitor(net) as monitor:
        forced = _run(net, x, forced=True, calls=1)
    assert calls.connect == 0
    _assert_same(forced, normal)
    rates = monitor.rates()
    assert rates == normal_monitor.rates()
    residual = [f"{name}.sn2" for name, m in net.named_modules() if isinstance(m, sj_sew.ResidualBlock)]
    assert all(0.0 <= rates[n] <= 1.0 for n in residual) and any(0.0 < rates[n] < 1.0 for n in residual)
    with FiringRateMonitor(net):  # a monitor that has left takes its hooks with it: fused again
        pass
    _run(net, x, forced=True, calls=1)
    assert calls.connect == 8


def test_route_decision():
    """Only backend='fused' neurons on CUDA (or forced) take the route; a block whose g has no kernel, a family
    with another output, or a hooked residual neuron does not fuse."""
    x = _spikes((2, 1, 4, 4, 4))
    fused_block = sj_sew.BasicBlock(4, 4, connect="AND", neuron=NeuronSpec("if", backend="fused"))
    auto_block = sj_sew.BasicBlock(4, 4, connect="AND", neuron=NeuronSpec("if"))
    spiking_block = sj_sew.BasicBlock(4, 4, family="spiking", neuron=NeuronSpec("if", backend="fused"))
    assert not fused_block._runs_connect_kernel(x)  # CPU
    with fused.kernel_route_forced():
        assert fused_block._runs_connect_kernel(x)
        assert copy.deepcopy(fused_block)._runs_connect_kernel(x)  # (its g a copy of the registered one)
        assert not auto_block._runs_connect_kernel(x) and not spiking_block._runs_connect_kernel(x)
        handle = fused_block.residual_neuron.register_forward_pre_hook(lambda m, args: None)
        assert not fused_block._runs_connect_kernel(x)
        handle.remove()
        backends.set_spike_marks(fused_block.modules(), fused.IFNode, enabled=True)  # the mark is no reason
        assert fused_block._runs_connect_kernel(x)
        handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: None)
        try:
            assert not fused_block._runs_connect_kernel(x)  # a global hook
        finally:
            handle.remove()
        fused_block.last_bn.register_forward_hook(lambda m, args, out: None)  # a hooked BN still runs as a module
        assert fused_block._runs_connect_kernel(x)
        import sj_sew.connect as registry

        register_connect("XOR_TEST", _xor, identity_spike=0.0, keeps_binary=True)
        try:  # (the registry is global: the name must not outlive this test)
            xor_block = sj_sew.BasicBlock(4, 4, connect="XOR_TEST", neuron=NeuronSpec("if", backend="fused"))
            assert not xor_block._runs_connect_kernel(x)
            assert xor_block(x).shape == x.shape
        finally:
            registry._CONNECTS.pop("XOR_TEST")


def test_a_hooked_eval_bn_runs_as_a_module(monkeypatch):
    """An eval BN with a hook is not fused (the hook sees its output) while g still is; results as unfused."""
    torch.manual_seed(0)
    block = sj_sew.BasicBlock(4, 4, connect="IAND", neuron=NeuronSpec("if", backend="fused"))
    x = _spikes((2, 2, 4, 6, 6))
    _randomize_batchnorms(block, x)
    block.eval()
    twin = copy.deepcopy(block)
    seen = []
    for b in (block, twin):
        b.last_bn.register_forward_hook(lambda m, args, out: seen.append(out.detach()))
    normal = _run(twin, x, forced=False)
    calls = _FusedCalls(monkeypatch)
    forced = _run(block, x, forced=True)
    assert calls.connect == 2 and calls.bn == 0
    _assert_same(forced, normal)
    assert len(seen) == 4 and all(torch.equal(a, b) for a, b in zip(seen[:2], seen[2:]))


def _xor(a, s):
    return (a - s).abs()


# --- marks ------------------------------------------------------------------------------------------------
def test_and_iand_of_marked_spikes_are_marked_add_never():
    a, s = packing.mark_binary(_spikes((4, 8), 1)), packing.mark_binary(_spikes((4, 8), 2))
    real = torch.rand(4, 8)
    for name in ("AND", "IAND"):
        g = get_connect(name)
        out = g(a, s)
        assert packing._marked_binary(out) and torch.equal(out, g.fn(a, s))
        assert bool(((out == 0) | (out == 1)).all())
        assert not packing._marked_binary(g(a, real)) and not packing._marked_binary(g(real, s))
        with torch.no_grad():
            assert not packing._marked_binary(g(a, s))  # nothing is saved for backward: no mark
    out = get_connect("ADD")(a, s)
    assert not packing._marked_binary(out) and out.max() == 2
    with pytest.raises(ValueError, match="keeps_binary"):
        register_connect("SUM_TEST", lambda a, s: a + s, identity_spike=0.0, keeps_binary=True)
    assert "SUM_TEST" not in sj_sew.list_connects()


@pytest.mark.parametrize("connect,marked", [("AND", True), ("IAND", True), ("ADD", False)])
def test_fused_block_output_marked_as_the_unfused_one(connect, marked):
    """On the forced route, as on the normal path with the neurons' marking hooks (what CUDA does): the block's
    output is marked when g keeps 0/1 and the shortcut is marked; with an unmarked real input, never."""
    spec = NeuronSpec("if", backend="fused")
    block = sj_sew.BasicBlock(4, 4, connect=connect, neuron=spec)
    backends.set_spike_marks(block.modules(), spec.cls, enabled=True)
    for forced in (False, True):
        with fused.kernel_route_forced() if forced else torch.enable_grad():
            functional.reset_net(block)
            x = packing.mark_binary(_spikes((2, 2, 4, 6, 6)).requires_grad_())
            assert packing._marked_binary(block(x)) == marked, forced
            functional.reset_net(block)
            assert not packing._marked_binary(block(torch.rand(2, 2, 4, 6, 6) + 0.5))


def test_max_pooling_of_marked_spikes_is_marked():
    """set_spike_marks (what sync_backend does on CUDA) hooks the max pooling layers too: in a SEW ResNet the
    stem's pooled spikes are marked; pooling of an unmarked real tensor is not; disabled, the hooks go."""
    net = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2)
    net.sync_backend(torch.device("cpu"))  # (what the first forward does: on CPU, no marks)
    backends.set_spike_marks(net.modules(), net.neuron_spec.cls, enabled=True)  # as on CUDA
    seen = []
    net.maxpool.register_forward_hook(lambda m, args, out: seen.append(packing._marked_binary(out)))
    net(torch.rand(1, 3, 32, 32))
    assert seen == [True]
    pool = net.maxpool
    real = torch.rand(2, 1, 2, 6, 6)
    assert not packing._marked_binary(pool(real)) and seen[-1] is False
    spikes = packing.mark_binary(_spikes((2, 1, 2, 6, 6)))
    with torch.no_grad():
        assert not packing._marked_binary(pool(spikes))
    assert packing._marked_binary(pool(spikes))
    backends.set_spike_marks(net.modules(), net.neuron_spec.cls, enabled=False)
    assert not packing._marked_binary(pool(spikes))
    assert not any(h in (backends.mark_spikes, backends.mark_pooled_spikes)
                   for m in net.modules() for h in m._forward_hooks.values())


def test_notation_net_pools_marked_block_outputs():
    """In a notation net, max pooling after IAND blocks (0/1 outputs) is marked; after ADD blocks (sums) not."""
    for connect, marked in (("IAND", True), ("ADD", False)):
        net = sj_sew.NotationNet("c8k3s1-BN-IF-{SEW Block(c8)-MPk2s2}*2-FC5", input_size=16, connect=connect,
                                 T=2)
        net.sync_backend(torch.device("cpu"))
        backends.set_spike_marks(net.modules(), net.neuron_spec.cls, enabled=True)
        pools = [m for m in net.modules() if isinstance(m, backends.MAX_POOLS)]
        seen = []
        for pool in pools:
            pool.register_forward_hook(lambda m, args, out: seen.append(packing._marked_binary(out)))
        net(torch.rand(2, 2, 16, 16))
        assert seen == [marked] * 2, connect


def test_connect_kernel_table_covers_the_binary_connects():
    """The kernel's connect functions are those of connect.py, and the marked ones are AND and IAND."""
    assert set(ops.KERNEL_CONNECTS) <= set(sj_sew.list_connects())
    assert {n for n in ("ADD", "AND", "IAND") if get_connect(n).keeps_binary} == {"AND", "IAND"}
