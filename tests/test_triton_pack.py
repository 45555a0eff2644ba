"""Packed spike storage for backward (issue 23): :mod:`sj_sew.memory.triton_pack` and the marks of
:func:`sj_sew.memory.packing.mark_binary`.

- The Triton kernels, run by Triton's interpreter on CPU tensors, give the bytes of the torch reference
  (``_to_bits`` / ``_from_bits``) for every dtype and for sizes that are not multiples of 8; they compile for
  sm_90 here without a GPU.
- A marked tensor (and a view of it that a convolution saves) is packed without a single value check; a write
  in place, a reinterpreting view or a non-binary value behave as documented.
- sj_sew's IF/LIF/PLIF neurons mark their spikes (not a soft surrogate's output, not MLF's sums); a model's
  gradients under compact storage equal those without it, bit for bit, with the marks in use.
- On a GPU (skipped here): the kernels against the reference, packing a marked tensor without a host sync,
  exact gradients with the marks, and a training step with compact storage captured in a CUDA graph.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from spikingjelly.activation_based import functional, surrogate

import sj_sew
from compiled import check_compiled_equals_eager
from cuda_graphs import check_training_step_in_a_cuda_graph
from sj_sew.memory import packing, triton_pack
from sj_sew.memory.packing import Packed, compact_saved_tensors, mark_binary, pack, unpack
from sj_sew.memory.triton_pack import _from_bits, _to_bits, pack_bits, unpack_bits
from sj_sew.neurons import MLFNode, NeuronSpec
from sj_sew.neurons import backend as backends

pytest.importorskip("triton", reason="the kernels need the triton package")

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.bool]
SIZES = [1, 7, 13, 8 * 1024 + 5, 8 * 1024 * 2 + 3]  # odd tails; more than one program of 8192 elements


def _binary(numel, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(numel, generator=g) < 0.4).to(dtype)


@pytest.mark.parametrize("numel", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernels_equal_the_torch_reference(dtype, numel):
    t = _binary(numel, dtype)
    reference = _to_bits(t.to(torch.uint8))
    bits = pack_bits(t, kernel=True)
    assert bits.dtype == torch.uint8 and bits.shape == ((numel + 7) // 8,)
    assert torch.equal(bits, reference)
    back = unpack_bits(reference, numel, dtype, kernel=True)
    assert back.dtype == dtype and torch.equal(back, t)
    assert torch.equal(_from_bits(reference, numel), t.to(torch.uint8))


def test_bit_layout_by_hand():
    """Bit i of byte j is element 8j + i: elements 0, 3 and 9 set -> bytes 0b1001 and 0b10."""
    t = torch.zeros(11)
    t[[0, 3, 9]] = 1
    for kernel in (True, False):
        assert pack_bits(t, kernel=kernel).tolist() == [9, 2]
        assert torch.equal(unpack_bits(torch.tensor([9, 2], dtype=torch.uint8), 11, torch.float32, kernel=kernel), t)


def test_default_route_and_missing_triton(monkeypatch):
    """CPU tensors take the torch reference by default; without triton the reference serves, and asking for the
    kernel says what is missing."""
    t = _binary(8193, torch.float32)
    monkeypatch.setattr(triton_pack, "_launcher", lambda: pytest.fail("the kernel ran on a CPU tensor by default"))
    assert torch.equal(pack_bits(t), _to_bits(t.to(torch.uint8)))
    monkeypatch.setattr(triton_pack, "_launcher", lambda: None)  # as without the triton package
    assert torch.equal(unpack_bits(pack_bits(t), t.numel(), t.dtype), t)
    with pytest.raises(ImportError, match="triton"):
        pack_bits(t, kernel=True)


def test_marked_tensors_pack_without_a_value_check(monkeypatch):
    """A marked spike tensor, and the flattened view a convolution saves of it, go to bits without
    ``torch.equal`` (or any read of a value); an unmarked one still takes the checked path."""
    spikes = (torch.rand(4, 2, 8, 16, 16) < 0.3).float() + 0  # not a leaf
    mark_binary(spikes)
    flat = spikes.flatten(0, 1)  # what SpikingJelly's SeqToANNContainer hands a convolution

    def refuse(*args):
        raise AssertionError("a value check ran for a marked tensor")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "equal", refuse)
        patch.setattr(torch.Tensor, "max", refuse)
        packed = [pack(spikes), pack(flat)]
        with pytest.raises(AssertionError, match="value check"):
            pack(spikes.clone())  # unmarked: checked
    for t, p in zip((spikes, flat), packed):
        assert isinstance(p, Packed) and p.kind == "bits" and p.nbytes == t.numel() // 8
        assert torch.equal(unpack(p), t) and unpack(p).shape == t.shape
    root = (torch.rand(8192) < 0.3).float() + 0
    mark_binary(root.view(4, 2048))  # a kernel's output reshaped: the tensor it views gets the mark too
    assert packing._marked_binary(root) and packing._marked_binary(root.view(2, 4096))
    partial = (torch.rand(8192) + 0)
    mark_binary(partial[:4096])  # a part of a storage says nothing about the rest
    assert not packing._marked_binary(partial)


def test_what_ends_or_never_gets_a_mark():
    spikes = (torch.rand(8192) < 0.3).float() + 0
    mark_binary(spikes)
    spikes.add_(1)  # written in place: the mark no longer holds, the checked path finds the integers 1..2
    p = pack(spikes)
    assert p.kind == "u8" and torch.equal(unpack(p), spikes)
    marked = mark_binary((torch.rand(8192) < 0.3).float() + 0)
    as_int = marked.view(torch.int32)  # a view that reinterprets the bytes: not 0/1 values
    p = pack(as_int)
    assert not (isinstance(p, Packed) and p.kind == "bits") and torch.equal(unpack(p), as_int)
    with torch.no_grad():
        assert not packing._marked_binary(mark_binary(torch.ones(8192)))  # nothing is saved: no mark
    with torch.inference_mode():
        assert not packing._marked_binary(mark_binary(torch.ones(8192)))


def test_a_marked_tensor_with_non_binary_values_is_stored_as_nonzero():
    """mark_binary is a promise that is not checked: each value comes back as 1 where it was not 0 (NaN
    included) and as 0 where it was 0 or -0.0; the kernel and the reference agree."""
    values = torch.tensor([0.0, 1.0, 2.0, 0.5, -0.0, float("nan"), -3.0, 1.0])
    t = mark_binary(values.repeat(1024) + 0)
    p = pack(t)
    assert p.kind == "bits"
    expected = (t != 0).float()
    assert torch.equal(unpack(p), expected)
    assert torch.equal(unpack_bits(pack_bits(t, kernel=True), t.numel(), t.dtype, kernel=True), expected)


def test_neurons_mark_their_spikes_only():
    """With the hook of backend.set_spike_marks, IF/LIF/PLIF outputs carry the mark (every backend); a
    non-spiking surrogate's soft output and MLF's level sums do not."""
    x = torch.rand(2, 4, 8, requires_grad=True) * 2

    def marked_output(spec, node):
        backends.set_spike_marks([node], spec.cls, enabled=True)
        return packing._marked_binary(node(x))

    for name in ("if", "lif", "plif"):
        for backend in ("auto", "fused", "torch"):
            spec = NeuronSpec(name, backend=backend)
            assert marked_output(spec, spec.make()), (name, backend)
    soft = NeuronSpec("if", surrogate_function=surrogate.ATan(spiking=False))
    assert not marked_output(soft, soft.make())
    mlf = MLFNode(step_mode="m")
    backends.set_spike_marks([mlf], MLFNode, enabled=True)
    assert not mlf._forward_hooks and not packing._marked_binary(mlf(x))
    output = torch.rand(2, 4, 8) + 0
    backends.mark_spikes(spec.make(), (x, x), {}, output)  # a call with more than the input: no mark
    backends.mark_spikes(spec.make(), (x,), {"shortcut": x}, output)
    assert not packing._marked_binary(output)


def test_networks_mark_spikes_on_cuda_only():
    """A network's neurons get the marking hook when it runs on CUDA (sync_backend) and lose it on CPU, where
    a model's hooks and its packing stay as they were."""
    net = sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2)

    def hooked():
        return sum(hook is backends.mark_spikes for m in net.modules() for hook in m._forward_hooks.values())

    assert hooked() == 0
    net.sync_backend(torch.device("cuda"))  # what its first forward on a GPU does
    assert hooked() == len([m for m in net.modules() if isinstance(m, NeuronSpec("if").cls)]) > 0
    net.sync_backend(torch.device("cuda"))
    net(torch.rand(1, 3, 32, 32))
    assert hooked() == 0


@pytest.mark.parametrize("neuron", ["if", "plif"])
def test_model_gradients_under_compact_storage_are_bit_equal(neuron):
    """A SEW ResNet's outputs and gradients with compact saved tensors (the neurons' spikes packed through their
    marks, as on CUDA) equal those of the default mode exactly."""
    torch.manual_seed(0)
    net = sj_sew.create_model("sew_resnet18", num_classes=10, width=8, T=2, neuron=neuron)
    twin = copy.deepcopy(net)
    net.sync_backend(torch.device("cpu"))
    backends.set_spike_marks(net.modules(), net.neuron_spec.cls, enabled=True)  # as on CUDA
    x = torch.rand(2, 3, 64, 64)
    marked, real = [], packing.pack

    def spy(t):
        if isinstance(t, torch.Tensor) and t.numel() >= packing.MIN_COMPACT_NUMEL and packing._owns_storage(t):
            marked.append(packing._marked_binary(t))
        return real(t)

    outs = []
    for model, compact in ((net, True), (twin, False)):
        functional.reset_net(model)
        packing.pack = spy
        try:
            with compact_saved_tensors() if compact else torch.enable_grad():
                out = model(x)
        finally:
            packing.pack = real
        (out * torch.linspace(-1, 1, 10)).sum().backward()
        outs.append(out.detach())
    assert sum(marked) >= 5, "the neurons' spikes reached pack() marked"
    assert torch.equal(outs[0], outs[1])
    for (name, a), b in zip(net.named_parameters(), twin.parameters()):
        assert torch.equal(a.grad, b.grad), name


@pytest.mark.slow
def test_compiled_model_under_compact_storage_equals_eager():
    """torch.compile(fullgraph=True) of a forward called inside compact_saved_tensors, with the neurons' marking
    hooks as on CUDA (traced without a graph break: mark_binary does nothing while tracing, so what the compiled
    graph saves takes the checked path): outputs and gradients equal eager's (~35 s)."""
    torch.manual_seed(0)
    model = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend="fused")
    model.sync_backend(torch.device("cpu"))
    backends.set_spike_marks(model.modules(), model.neuron_spec.cls, enabled=True)
    assert any(hook is backends.mark_spikes for m in model.modules() for hook in m._forward_hooks.values())
    x = torch.rand(2, 3, 64, 64)

    def forward(x):
        out = model(x)
        return (out * torch.linspace(-1, 1, 5)).sum(), out

    check_compiled_equals_eager(forward, list(model.parameters()), lambda: (x,), context=compact_saved_tensors,
                                reset=model)


def test_kernels_compile_for_sm90_without_a_gpu():
    """Both kernels compile to a cubin for an H100/H200 (sm_90) with Triton's own toolchain, on CPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    consts = {"BYTES": triton_pack.BYTES_PER_PROGRAM}
    for dtype in ("fp32", "bf16", "fp16", "u8"):
        for body, sig in ((triton_pack._pack_body, dict(t_ptr="*" + dtype, bits_ptr="*u8")),
                          (triton_pack._unpack_body, dict(bits_ptr="*u8", out_ptr="*" + dtype))):
            signature = {**sig, "numel": "i64", "n_bytes": "i64", "BYTES": "constexpr"}
            src = ASTSource(fn=triton.jit(body), signature=signature, constexprs=consts)
            assert triton_compile(src, target=GPUTarget("cuda", 90, 32)).asm["cubin"]


# --- on a GPU (skipped without one) ------------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kernels_on_cuda_equal_the_torch_reference(dtype):
    for numel in SIZES:
        t = _binary(numel, dtype)
        bits = pack_bits(t.cuda())
        assert torch.equal(bits.cpu(), _to_bits(t.to(torch.uint8)))
        assert torch.equal(unpack_bits(bits, numel, dtype).cpu(), t)


@cuda
@pytest.mark.cuda
def test_marked_pack_on_cuda_never_synchronises():
    """pack() of a marked CUDA tensor and unpack() run with no host sync (torch's sync debug mode raises on one);
    an unmarked float tensor is still checked, which does synchronise (packing's docstring)."""
    spikes = mark_binary((torch.rand(4, 8, 32, 32, device="cuda") < 0.3).float() + 0)
    unmarked = spikes.clone()
    unpack(pack(spikes))  # warm-up: Triton compiles and loads both kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        p = pack(spikes.flatten(0, 1))
        back = unpack(p)
        with pytest.raises(RuntimeError):
            pack(unmarked)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert p.kind == "bits" and torch.equal(back, spikes.flatten(0, 1))


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("neuron", ["if", "plif"])
def test_compact_storage_on_cuda_is_exact_with_marked_spikes(monkeypatch, neuron):
    """On CUDA (sj_sew's kernels) the neurons' spikes reach pack() marked and are packed to bits; outputs and
    gradients equal the default storage's exactly (deterministic cuDNN: the same convolutions on the same
    values)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    torch.manual_seed(0)
    net = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, neuron=neuron, backend="fused").cuda()
    twin = copy.deepcopy(net)
    x = torch.rand(2, 3, 64, 64, device="cuda")
    marked, real = [], packing.pack

    def spy(t):
        if isinstance(t, torch.Tensor) and t.numel() >= packing.MIN_COMPACT_NUMEL and packing._owns_storage(t):
            marked.append(packing._marked_binary(t))
        return real(t)

    monkeypatch.setattr(packing, "pack", spy)
    results = []
    for model, compact in ((net, True), (twin, False)):
        functional.reset_net(model)
        with compact_saved_tensors() if compact else torch.enable_grad():
            out = model(x)
        (out * torch.linspace(-1, 1, 5, device="cuda")).sum().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    assert sum(marked) >= 5, "the neurons' spikes reached pack() marked"
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@cuda
@pytest.mark.cuda
def test_compact_training_step_in_a_cuda_graph(monkeypatch):
    """A SEW ResNet training step with compact saved tensors (memory_saving budget 'speed', sj_sew's kernels),
    captured once in a CUDA graph with the spikes packed by the kernel, replayed on new batches: the losses and
    weights of eager steps without compact storage from the same state."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    torch.manual_seed(0)
    model = sj_sew.create_model("sew_resnet18", width=8, num_classes=5, T=2, backend="fused").cuda()
    twin = copy.deepcopy(model)  # default storage
    sj_sew.memory_saving(model, budget="speed")
    kinds, real = [], packing.pack

    def spy(t):
        packed = real(t)
        kinds.append(getattr(packed, "kind", None))
        return packed

    @contextmanager
    def spying():
        monkeypatch.setattr(packing, "pack", spy)
        yield

    check_training_step_in_a_cuda_graph(model, size=64, twin=twin, capturing=spying)
    assert "bits" in kinds, "the marked spikes were packed inside the capture"