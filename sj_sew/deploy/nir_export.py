"""NIR (Neuromorphic Intermediate Representation) export of SEW-ADD, Spiking, Plain and MS ResNets.

NIR has Conv2d, Affine, AvgPool2d, Flatten, IF and LIF, but no Add, BatchNorm, MaxPool or multiplication. So
:func:`to_nir` works on the BatchNorm-folded :func:`~sj_sew.deploy.inference_model` copy and writes a sum as
several edges into one node (NIR sums a node's inputs): a SEW-ADD block's output ``A + S`` becomes an edge
from A and an edge from (every term of) S into each node that reads the block's output; everything that does is
linear (conv, pooling, affine) or a neuron, which sums its input currents. AND/IAND multiply spikes and are
refused, as are max pooling (unless ``max_pool='avg'``, see :func:`max_pool_to_avg`), soft reset and neurons
NIR has no primitive for (MLF, hence DS-ResNet). Only ``nir`` is needed (both SpikingJelly lines).

:func:`from_nir` reads a graph back into PyTorch with ``nirtorch`` and sj_sew's own discrete-time IF/LIF/PLIF
(:class:`NIRIF`, :class:`NIRLIF`, :class:`NIRPLIF`); :func:`run_nir` feeds it one time step per call.

Neuron semantics (how the discrete neurons are written as NIR's continuous ones)
-------------------------------------------------------------------------------
SpikingJelly's neuron runs per time step t, from ``V = v_reset`` at rest: charge ``H = f(V, X[t])``, fire
``S = (H >= v_threshold)``, hard reset ``V = v_reset`` where ``S`` else ``H``. NIR's ``IF`` is
``dv/dt = r * I`` and its ``LIF`` ``tau * dv/dt = (v_leak - v) + r * I``, with the same fire and reset to
``v_reset``. One forward-Euler step of length ``dt`` (the ``dt`` argument, also in the graph's metadata), the
input ``I = X[t]`` held over the step, is SpikingJelly's charge when the fields are:

* IF: ``r = 1/dt``, so ``v += dt * r * X = X``.
* LIF with ``tau`` in steps: NIR ``tau = tau * dt``, ``v_leak = v_reset``, and ``r = 1`` for ``decay_input``
  (``v += (X - (v - v_reset)) / tau``) or ``r = tau`` without it (``v += -(v - v_reset) / tau + X``).
* PLIF (k = sigmoid(w)): the LIF above with ``tau = 1/k`` steps, written in float64 so that float32(1/tau) is
  k again, and the node's metadata ``{PLIF_METADATA: "PLIF"}``. :func:`from_nir` then charges with the product
  ``* k`` as SpikingJelly's PLIF does (:func:`~sj_sew.neurons.dynamics.charge_plif`); a plain LIF divides by
  tau, which differs in the last bit and flips spikes near the threshold (the test's 7B-Net: logits off by
  0.26). Readers that ignore the metadata (SpikingJelly 2.x's importer builds a ``LIFNode``) read the same tau:
  exact where k is a power of two (e.g. the initial w = 0, k = 1/2), else equal up to such flips.
* ``v_reset`` as it is, every field an array of the neurons' shape. Soft reset (``v_reset=None``:
  ``V = H - v_threshold``) has no NIR form and is refused.
* The threshold edge: SpikingJelly fires at ``H >= v_threshold``, NIR's spec at ``v > v_threshold``. They
  differ where a charge lands exactly on the threshold, which is common where spikes feed an IF (a spike of
  1.0 onto ``v_threshold = 1.0``). Every graph writes the threshold one float32 step lower,
  ``nextafter(v_th, -inf)`` (:meth:`_Builder.threshold`), so that a reader following the spec (``v > v_th'``)
  fires exactly where SpikingJelly does, for every float32 membrane; the node's metadata records the threshold
  before that step and the rule (``{THRESHOLD_METADATA: v_th, FIRES_METADATA: ">="}``). :func:`from_nir`
  reads that record back and fires at ``H >= v_th`` with the original threshold (:func:`_firing_threshold`):
  its neurons then hold the model's own threshold and SpikingJelly's rule (the one ``fire`` of
  :mod:`sj_sew.neurons.dynamics`), so the round trip is bit for bit whatever the membrane's dtype (``>``
  against the lower threshold is the same only for float32 membranes). A graph without the record, or whose
  threshold no longer matches it, is read as the spec says (``>``). A reader that fires at ``>=`` (SpikingJelly 2.x's importer) differs from
  SpikingJelly only where a charge lands exactly on ``nextafter(v_th, -inf)``.

Graphs for a given reader (``to_nir(..., target=...)``)
-------------------------------------------------------
The default graph is the spec-literal one above. Some readers, as released, read only part of the spec; for
them ``target=`` writes a graph that computes the same network under the spec *and* in that reader
(:data:`READER_TARGETS`; each rewrite is an equivalent NIR form, not a different network; which readers run
which graph is measured by scripts/nir_readers.py and tested in tests/test_nir_readers.py):

* ``Flatten`` with negative dims (``start_dim=-3``: the same flatten under the spec, which counts dims without
  the batch axis); readers that hand ``start_dim`` to ``torch.nn.Flatten`` unchanged then keep the batch axis.
* No ``AvgPool2d``: average pooling as a ``Conv2d`` from each channel to itself with weights ``1/(kh*kw)``
  (zeros between channels: the zero products add exactly nothing; not ``groups = C``, which nir 1.0.8's type
  check reads as one input channel). Its weights take ``C*C*kh*kw`` floats.
* IF read only with ``r == 1`` as a leaky neuron (snnTorch): IF as a ``LIF`` with ``tau = 2**90 * dt`` and
  ``r = tau/dt``: a leak of ``2**-90`` per step, below float32 resolution, and the input unscaled.
* ``r`` ignored (Norse's LIF reads ``dv = dt/tau * (v_leak - v + I)``): without ``decay_input`` (``r = tau``)
  the membrane is written in units of ``1/tau`` (threshold and reset divided by tau, ``r = 1``): the same
  spikes.
* Exact integration (Sinabs with upstream/sinabs/'s fix: ``v = a*v + (1 - a)*r*I``, ``a = exp(-dt/tau)``, the
  ODE solved over a step with the input held): LIF's tau is written as ``-dt / log(1 - 1/tau_steps)``, so that
  ``a`` is SpikingJelly's ``1 - 1/tau`` and ``(1 - a)*r`` its input factor (r as above).
* A fixed ``dt`` (snnTorch's importer assumes 1e-4) or a reader's default (Norse's ``from_nir``: 1e-3; Sinabs:
  1, the unit its own export writes).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based import base, layer, neuron as sj_neuron

from .. import _compat
from ..blocks import ResidualBlock
from ..neurons import dynamics
from .inference import ChannelsLastMaxPool2d, InferenceModel, inference_model

MAX_POOL_CHOICES = ("error", "avg")
#: key of a ``nir.LIF`` node's metadata that marks a PLIF (value ``"PLIF"``): :func:`from_nir` charges it with the
#: product ``* k`` (k = float32(1/tau_steps)) as SpikingJelly's PLIF does, any other LIF with the division ``/ tau``
PLIF_METADATA = "sj_sew_neuron"
#: keys of a neuron node's metadata: SpikingJelly's threshold before the graph's one-float32-step-lower rewrite,
#: and its firing rule (``">="``); :func:`from_nir` restores them (see the module docstring's threshold edge)
THRESHOLD_METADATA, FIRES_METADATA = "sj_sew_v_threshold", "sj_sew_fires"


@dataclasses.dataclass(frozen=True)
class ReaderTarget:
    """How a graph is written for one reader as released (see the module docstring); ``dt`` is the dt the
    reader assumes and ``fixed_dt`` whether it ignores any other."""
    dt: float
    fixed_dt: bool = False
    pool_as_conv: bool = False
    if_as_lif: bool = False
    ignores_r: bool = False
    zero_reset: bool = False  # it reads neither v_reset nor v_leak: both must be 0
    exact_decay: bool = False  # it integrates LIF exactly: the decay per step is exp(-dt/tau), not 1 - dt/tau


#: ``to_nir(target=...)`` -> how the graph is written for that reader (snnTorch 1.0.0 and Norse 1.1.0 as
#: released). Sinabs 3.1.3 as released fires several spikes per step with a subtractive reset and a lower clamp,
#: which no NIR graph undoes; ``'sinabs'`` is for Sinabs with upstream/sinabs/'s fix, which integrates LIF
#: exactly (and for any reader that does).
READER_TARGETS = {
    "snntorch": ReaderTarget(dt=1e-4, fixed_dt=True, if_as_lif=True, zero_reset=True),
    "norse": ReaderTarget(dt=1e-3, pool_as_conv=True, ignores_r=True, zero_reset=True),
    "sinabs": ReaderTarget(dt=1.0, pool_as_conv=True, exact_decay=True),
}
#: IF for a reader that reads IF only as a leaky neuron: a LIF of tau = IF_AS_LIF_TAU_STEPS * dt
IF_AS_LIF_TAU_STEPS = 2.0 ** 90


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the 'nir' package: pip install 'sj_sew[export]' (or pip install nir)") from None
    return nir


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def max_pool_to_avg(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every max pooling replaced by average pooling of the same kernel, stride and
    padding (zeros counted). This is a different network: fine-tune it before exporting it to NIR with
    ``max_pool='avg'``; its outputs are what the exported graph computes."""
    net = copy.deepcopy(model)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.MaxPool2d, ChannelsLastMaxPool2d)):
                args = child.args if isinstance(child, ChannelsLastMaxPool2d) else dict(
                    kernel_size=child.kernel_size, stride=child.stride, padding=child.padding,
                    dilation=child.dilation, ceil_mode=child.ceil_mode)
                if _pair(args.get("dilation", 1)) != (1, 1):
                    raise ValueError(f"max pooling {name!r} is dilated; average pooling has no dilation")
                setattr(parent, name, layer.AvgPool2d(args["kernel_size"], args["stride"], args["padding"],
                                                      ceil_mode=args["ceil_mode"], step_mode="m"))
    return net


class _Builder:
    """Emits NIR nodes and edges while walking a BN-folded network; a *value* is the list of node names whose
    outputs are summed (a residual sum is a longer list)."""

    def __init__(self, dt: float, max_pool: str, target: ReaderTarget | None = None):
        self.nir = _nir()
        self.dt, self.max_pool, self.target = dt, max_pool, target
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []

    def node(self, name: str, node, value: list[str]) -> list[str]:
        key = name.replace(".", "_") or "node"
        if key in self.nodes:
            i = 1
            while f"{key}_{i}" in self.nodes:
                i += 1
            key = f"{key}_{i}"
        if len(set(value)) != len(value):
            raise ValueError(f"{name}: the same path enters a sum twice ({value}); NIR edges cannot carry a weight")
        self.nodes[key] = node
        self.edges += [(src, key) for src in value]
        return [key]

    # --- one module -----------------------------------------------------------------------------
    def module(self, name: str, m: nn.Module, value, shape):
        nir = self.nir
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return value, shape
        if isinstance(m, (nn.Sequential,)):
            for child_name, child in m.named_children():
                value, shape = self.module(f"{name}.{child_name}", child, value, shape)
            return value, shape
        if isinstance(m, ResidualBlock):
            return self.block(name, m, value, shape)
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ValueError(f"{name}: NIR export takes ungrouped, zero-padded convolutions with numeric padding")
            bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
            out = self.node(name, nir.Conv2d(input_shape=shape[1:], weight=_np(m.weight), stride=_pair(m.stride),
                                             padding=_pair(m.padding), dilation=_pair(m.dilation), groups=1,
                                             bias=_np(bias)), value)
            h, w = (math.floor((s + 2 * p - d * (k - 1) - 1) / st) + 1 for s, p, d, k, st in
                    zip(shape[1:], _pair(m.padding), _pair(m.dilation), m.kernel_size, _pair(m.stride)))
            return out, (m.out_channels, h, w)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ValueError(f"{name}: BatchNorm that does not follow a convolution cannot be folded, and NIR has "
                             "no BatchNorm")
        if isinstance(m, (nn.MaxPool2d, ChannelsLastMaxPool2d)):
            if self.max_pool == "error":
                raise ValueError(f"{name}: NIR has no max pooling (a max of spikes is an OR, not a linear map). "
                                 "Export the average-pooling variant instead: net = "
                                 "sj_sew.deploy.max_pool_to_avg(net), fine-tune it, then to_nir(net, ..., "
                                 "max_pool='avg')")
            args = m.args if isinstance(m, ChannelsLastMaxPool2d) else dict(
                kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode)
            return self.avg_pool(name, _pair(args["kernel_size"]), _pair(args["stride"]), _pair(args["padding"]),
                                 args["ceil_mode"], True, value, shape)
        if isinstance(m, nn.AvgPool2d):
            return self.avg_pool(name, _pair(m.kernel_size), _pair(m.stride if m.stride else m.kernel_size),
                                 _pair(m.padding), m.ceil_mode, m.count_include_pad, value, shape,
                                 m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            if _pair(m.output_size) != (1, 1):
                raise ValueError(f"{name}: only global average pooling (output 1x1) maps to NIR's AvgPool2d")
            return self.avg_pool(name, shape[1:], shape[1:], (0, 0), False, True, value, shape)
        if isinstance(m, nn.Flatten):  # for a reader: negative dims, the same flatten (see the module docstring)
            start = -len(shape) if self.target else 0
            out = self.node(name, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=-1),
                            value)
            return out, (int(np.prod(shape)),)
        if isinstance(m, nn.Linear):
            node = (nir.Affine(_np(m.weight), _np(m.bias)) if m.bias is not None else nir.Linear(_np(m.weight)))
            return self.node(name, node, value), (m.out_features,)
        if isinstance(m, base.MemoryModule):
            return self.neuron(name, m, value, shape), shape
        raise ValueError(f"{name}: {type(m).__name__} has no NIR form; NIR export takes convolutions, folded "
                         "BatchNorm, IF/LIF/PLIF neurons, average pooling, flatten and linear layers")

    def avg_pool(self, name, kernel, stride, padding, ceil_mode, count_include_pad, value, shape, divisor=None):
        if divisor is not None or (any(padding) and not count_include_pad):
            raise ValueError(f"{name}: NIR's AvgPool2d divides by the kernel size; this pooling does not")
        sizes = [(s + 2 * p - k) / st + 1 for s, p, k, st in zip(shape[1:], padding, kernel, stride)]
        if ceil_mode and any(v != int(v) for v in sizes):
            raise ValueError(f"{name}: ceil_mode pooling of a {shape[1:]} map has partial windows; NIR cannot "
                             "express them")
        if self.target and self.target.pool_as_conv:  # channel c to c with weights 1/(kh*kw), all others 0
            channels = shape[0]
            weight = np.zeros((channels, channels, *kernel), dtype=np.float32)
            weight[np.arange(channels), np.arange(channels)] = 1.0 / (kernel[0] * kernel[1])
            node = self.nir.Conv2d(input_shape=shape[1:], weight=weight, stride=tuple(stride), padding=tuple(padding),
                                   dilation=(1, 1), groups=1, bias=np.zeros(channels, dtype=np.float32))
        else:
            node = self.nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        out = self.node(name, node, value)
        return out, (shape[0], *(math.floor(v) for v in sizes))

    def neuron(self, name: str, m: nn.Module, value, shape):
        """IF/LIF/PLIF as the module docstring writes them; for a reader :attr:`target`, its rewrites."""
        problem = _neuron_problem(name, m)
        if problem:
            raise ValueError(problem)
        t = self.target or ReaderTarget(dt=self.dt)  # the spec-literal graph: no rewrite
        if t.zero_reset and m.v_reset != 0:
            raise ValueError(f"{name}: this reader reads neither v_reset nor v_leak (it takes both as 0); the "
                             f"neuron resets to {m.v_reset}")
        plif = isinstance(m, sj_neuron.ParametricLIFNode)
        dtype = np.float64 if plif else np.float32  # PLIF: tau = 1/k in float64, so that float32(1/tau) is k again

        def full(v, dtype=np.float32):  # NIR neuron parameters have the neurons' shape (as SpikingJelly writes them)
            return np.full(shape, float(v), dtype=dtype)

        if isinstance(m, sj_neuron.IFNode) and not t.if_as_lif:
            node = self.nir.IF(r=full(1.0 / self.dt), v_threshold=self.threshold(full(m.v_threshold)),
                               v_reset=full(m.v_reset), metadata=self.firing(m.v_threshold))
            return self.node(name, node, value)
        scale = 1.0  # of the membrane
        if isinstance(m, sj_neuron.IFNode):  # a leak below float32 resolution, input unscaled
            tau = r = IF_AS_LIF_TAU_STEPS
        else:
            tau = dynamics.plif_tau(m.w) if plif else float(m.tau)
            r = 1.0 if m.decay_input else tau
            if t.ignores_r and not m.decay_input:  # the membrane in units of 1/tau, r = 1
                r, scale = 1.0, 1.0 / tau
        time_constant = tau
        if t.exact_decay and not isinstance(m, sj_neuron.IFNode):  # exp(-1/tau') = 1 - 1/tau
            if tau <= 1:
                raise ValueError(f"{name}: tau = {tau} steps leaks everything in one step; an exactly "
                                 "integrated LIF has no such time constant")
            time_constant = -1.0 / math.log1p(-1.0 / tau)
        node = self.nir.LIF(tau=full(time_constant * self.dt, dtype), r=full(r, dtype), v_leak=full(m.v_reset * scale),
                            v_threshold=self.threshold(full(m.v_threshold * scale)),
                            v_reset=full(m.v_reset * scale),
                            metadata={**self.firing(np.float32(m.v_threshold * scale)),
                                      **({PLIF_METADATA: "PLIF"} if plif else {})})
        return self.node(name, node, value)

    @staticmethod
    def threshold(v_threshold: np.ndarray) -> np.ndarray:
        """One float32 step lower: the spec's ``v > v_th'`` is then SpikingJelly's ``v >= v_th``."""
        return np.nextafter(np.float32(v_threshold), np.float32(-np.inf)).astype(np.float32)

    @staticmethod
    def firing(v_threshold: float) -> dict:
        """The metadata that records the threshold before :meth:`threshold` and SpikingJelly's rule."""
        return {THRESHOLD_METADATA: float(np.float32(v_threshold)), FIRES_METADATA: ">="}

    # --- a residual block -----------------------------------------------------------------------
    def block(self, name: str, b: ResidualBlock, value, shape):
        family = b.family
        if family == "sew" and b.connect.name != "ADD":
            raise ValueError(f"{name}: connect={b.connect.name} multiplies spikes (AND: A*S, IAND: (1-A)*S); NIR has "
                             "no multiplication. Only SEW-ADD blocks export")
        if family not in ("sew", "spiking", "plain", "ms"):
            raise ValueError(f"{name}: family {family!r} is not exported to NIR; exportable: sew (ADD), spiking, "
                             "plain, ms")
        x, x_shape = value, shape
        for i in range(1, b.num_convs + 1):
            if b.kind.preactivation:
                value, shape = self.module(f"{name}.sn{i}", getattr(b, f"sn{i}"), value, shape)
            value, shape = self.module(f"{name}.conv{i}", getattr(b, f"conv{i}"), value, shape)
            value, shape = self.module(f"{name}.bn{i}", getattr(b, f"bn{i}"), value, shape)
            if not b.kind.preactivation and i < b.num_convs:
                value, shape = self.module(f"{name}.sn{i}", getattr(b, f"sn{i}"), value, shape)
        if family == "plain":
            return self.module(f"{name}.sn{b.num_convs}", b.residual_neuron, value, shape)
        short = x
        if b.downsample is not None:
            short, _ = self.module(f"{name}.downsample", b.downsample, x, x_shape)
            if b.kind.shortcut == "conv-bn-sn":
                short, _ = self.module(f"{name}.downsample_sn", b.downsample_sn, short, shape)
        if family == "spiking":
            return self.module(f"{name}.sn{b.num_convs}", b.residual_neuron, value + short, shape)
        if family == "sew":
            a, _ = self.module(f"{name}.sn{b.num_convs}", b.residual_neuron, value, shape)
            return a + short, shape
        return value + short, shape  # ms: the membrane sum


def _neuron_problem(name: str, m: nn.Module) -> str | None:
    """Why neuron ``m`` has no NIR form, or None."""
    if not isinstance(m, (sj_neuron.IFNode, sj_neuron.LIFNode, sj_neuron.ParametricLIFNode)):
        why = ("it fires several spikes per step (multi-level firing)" if type(m).__name__ == "MLFNode"
               else "NIR has no primitive for it")
        return (f"{name}: neuron {type(m).__name__} cannot be exported to NIR: {why}. Exportable: IF, LIF, "
                "PLIF (as LIF) with hard reset")
    if m.v_reset is None:
        return f"{name}: soft reset (v_reset=None) cannot be exported: NIR's IF/LIF reset to v_reset"
    return None


def _layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network as one sequence of (name, module), in the order its forward runs them on each time step."""
    describe = getattr(net, "layer_sequence", None)
    if not callable(describe):
        raise ValueError(f"to_nir exports sj_sew networks, which describe their layer order (layer_sequence): "
                         f"SEW/Spiking/Plain ResNets, MS-ResNets, NotationNets (net7b, ...); got {type(net).__name__}")
    return list(describe())


def to_nir(model: nn.Module, input_shape: tuple[int, int, int] | tuple[int, int] | int = 32, dt: float | None = None,
           max_pool: str = "error", path: str | os.PathLike | None = None, target: str | None = None):
    """The NIR graph of an sj_sew network (or its :class:`InferenceModel`), BatchNorm folded.

    Args:
        model: a SEW-ADD, Spiking, Plain or MS ResNet, or a NotationNet of such blocks.
        input_shape: ``(C, H, W)`` of one time step, ``(H, W)`` or a side (C is the network's).
        dt: the time step in seconds that NIR's continuous-time neurons are written with (default 1e-4, or the
            dt that ``target`` assumes).
        max_pool: ``'error'`` (default) refuses max pooling; ``'avg'`` writes average pooling in its place: the
            graph then computes :func:`max_pool_to_avg` (model), a different network.
        path: also write the graph there (HDF5, ``nir.read`` loads it).
        target: None (default) for the spec-literal graph, or a reader of :data:`READER_TARGETS`: the same
            network written so that the reader runs it (``'snntorch'``, ``'norse'``: as released; ``'sinabs'``:
            with upstream/sinabs/'s fix, or any reader that integrates LIF exactly).

    The graph takes one time step ``[N, C, H, W]`` per call and outputs that step's logits; the network's
    output is their mean over T.
    """
    if max_pool not in MAX_POOL_CHOICES:
        raise ValueError(f"unknown max_pool {max_pool!r}; valid: {list(MAX_POOL_CHOICES)}")
    if target is not None and target not in READER_TARGETS:
        raise ValueError(f"unknown target {target!r}; valid: None (the spec-literal graph), {list(READER_TARGETS)}")
    reader = READER_TARGETS.get(target)
    if dt is None:
        dt = reader.dt if reader else 1e-4
    if reader and reader.fixed_dt and dt != reader.dt:
        raise ValueError(f"{target}'s NIR importer assumes dt = {reader.dt}; got dt={dt!r}")
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    net = model.model if isinstance(model, InferenceModel) else inference_model(model).model
    layers = _layers(net)
    for name, m in net.named_modules():  # the neurons first: their refusal says more than a layer's
        if isinstance(m, base.MemoryModule) and _neuron_problem(name, m):
            raise ValueError(_neuron_problem(name, m))
    if isinstance(input_shape, int):
        input_shape = (input_shape, input_shape)
    if len(input_shape) == 2:
        input_shape = (net.in_channels, *input_shape)
    input_shape = tuple(int(s) for s in input_shape)
    nir = _nir()
    builder = _Builder(dt, max_pool, reader)
    builder.nodes["input"] = nir.Input(input_type={"input": np.array(input_shape)})
    value, shape = ["input"], input_shape
    for name, m in layers:
        value, shape = builder.module(name, m, value, shape)
    builder.nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    builder.edges += [(src, "output") for src in value]
    graph = nir.NIRGraph(nodes=builder.nodes, edges=builder.edges,
                         metadata={"source": f"sj_sew {type(net).__name__}", "dt": dt,
                                   **({"target": target} if target else {})})
    if path is not None:
        nir.write(os.fspath(path), graph)
    return graph


# --------------------------------------------------------------------------------------------------
# Import (nirtorch, sj_sew's discrete-time neurons)
# --------------------------------------------------------------------------------------------------

def _scalar(values, what: str) -> float:
    unique = np.unique(np.asarray(values))
    if unique.size != 1:
        raise ValueError(f"{what} must be the same for every neuron (found {unique.size} values)")
    return float(unique[0])


class NIRIF(nn.Module):
    """Discrete-time IF read from ``nir.IF`` (``r = 1/dt``): :mod:`sj_sew.neurons.dynamics`' IF charge, fire and
    hard reset; ``forward(x, state)`` returns ``(spikes, membrane)`` as nirtorch expects."""

    def __init__(self, v_threshold: float, v_reset: float):
        super().__init__()
        self.v_threshold, self.v_reset = v_threshold, v_reset

    def charge(self, v, x):
        return dynamics.charge_if(v, x)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        v = torch.full_like(x, self.v_reset) if state is None else state
        return dynamics.fire_and_reset(self.charge(v, x), self.v_threshold, self.v_reset)


class NIRLIF(NIRIF):
    """Discrete-time LIF read from ``nir.LIF``: the LIF charge with decay_input (``r = 1``) or without
    (``r = tau``), tau in steps."""

    def __init__(self, tau: float, decay_input: bool, v_threshold: float, v_reset: float):
        super().__init__(v_threshold, v_reset)
        self.tau, self.decay_input = tau, decay_input

    def charge(self, v, x):
        return dynamics.charge_lif(v, x, self.tau, self.v_reset, self.decay_input)


class NIRPLIF(NIRIF):
    """Discrete-time PLIF read from a ``nir.LIF`` that :func:`to_nir` marked as one (metadata
    ``PLIF_METADATA``): PLIF's charge, the leak a product with ``inv_tau`` = float32(1/tau_steps), which is the
    exported sigmoid(w) exactly (tau is written as 1/sigmoid(w) in float64)."""

    def __init__(self, tau: float, decay_input: bool, v_threshold: float, v_reset: float):
        super().__init__(v_threshold, v_reset)
        self.decay_input = decay_input
        self.register_buffer("inv_tau", torch.tensor(1.0 / tau, dtype=torch.float32))

    def charge(self, v, x):
        return dynamics.charge_plif(v, x, self.inv_tau, self.v_reset, self.decay_input)


def _metadata(node, key):
    value = (node.metadata or {}).get(key)
    return value.decode() if isinstance(value, bytes) else value  # bytes when read from some files


def _firing_threshold(node) -> float:
    """The threshold at which a neuron read from ``node`` fires with ``H >= v_th`` (sj_sew's one rule,
    :func:`~sj_sew.neurons.dynamics.fire_and_reset`): the threshold the node's metadata records if the node's
    own is that one float32 step lower (as :func:`to_nir` writes it); otherwise the spec's ``v > v_threshold``,
    which for a float32 membrane is ``v >= nextafter(v_threshold, +inf)``."""
    written = np.float32(_scalar(node.v_threshold, "v_threshold"))
    recorded = _metadata(node, THRESHOLD_METADATA)
    if _metadata(node, FIRES_METADATA) == ">=" and recorded is not None and \
            _Builder.threshold(np.float32(recorded)) == written:
        return float(np.float32(recorded))
    return float(np.nextafter(written, np.float32(np.inf)))


def _node_map(dt: float) -> dict:
    nir = _nir()

    def conv2d(n):
        w = torch.from_numpy(np.asarray(n.weight))
        m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[-2:]), stride=_pair(np.asarray(n.stride).tolist()),
                      padding=_pair(np.asarray(n.padding).tolist()), dilation=_pair(np.asarray(n.dilation).tolist()),
                      groups=int(n.groups), bias=True)
        m.weight.data, m.bias.data = w, torch.from_numpy(np.asarray(n.bias))
        return m

    def affine(n):
        w = torch.from_numpy(np.asarray(n.weight))
        m = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(n, nir.Affine))
        m.weight.data = w
        if isinstance(n, nir.Affine):
            m.bias.data = torch.from_numpy(np.asarray(n.bias))
        return m

    def avgpool(n):
        return nn.AvgPool2d(_pair(np.asarray(n.kernel_size).tolist()), _pair(np.asarray(n.stride).tolist()),
                            _pair(np.asarray(n.padding).tolist()))

    def flatten(n):  # NIR's dims exclude the batch
        return nn.Flatten(n.start_dim + 1 if n.start_dim >= 0 else n.start_dim,
                          n.end_dim + 1 if n.end_dim >= 0 else n.end_dim)

    def if_node(n):
        r = _scalar(n.r, "nir.IF.r")
        if not math.isclose(r * dt, 1.0, rel_tol=1e-6):
            raise ValueError(f"nir.IF.r = {r} is not 1/dt = {1 / dt}: pass the dt the graph was written with")
        return NIRIF(_firing_threshold(n), _scalar(n.v_reset, "v_reset"))

    def lif_node(n):
        tau = _scalar(n.tau, "nir.LIF.tau") / dt
        r = _scalar(n.r, "nir.LIF.r")
        decay_input = math.isclose(r, 1.0, rel_tol=1e-6)
        if not decay_input and not math.isclose(r, tau, rel_tol=1e-6):
            raise ValueError(f"nir.LIF.r = {r} is neither 1 nor tau/dt = {tau}")
        plif = _metadata(n, PLIF_METADATA) == "PLIF"
        return (NIRPLIF if plif else NIRLIF)(tau, decay_input, _firing_threshold(n), _scalar(n.v_reset, "v_reset"))

    return {nir.Input: lambda n: nn.Identity(), nir.Output: lambda n: nn.Identity(), nir.Conv2d: conv2d,
            nir.Affine: affine, nir.Linear: affine, nir.AvgPool2d: avgpool, nir.Flatten: flatten,
            nir.IF: if_node, nir.LIF: lif_node}


def from_nir(graph, dt: float = 1e-4) -> nn.Module:
    """A PyTorch module (nirtorch's interpreter) computing a NIR graph of Conv2d/Affine/Linear/AvgPool2d/Flatten/
    IF/LIF nodes, one time step per call: ``out, state = module(x, state)``. ``graph`` may be a path."""
    try:
        import nirtorch
    except ImportError:
        raise ImportError("reading NIR into PyTorch needs nirtorch: pip install 'sj_sew[export]'") from None
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = nir.read(os.fspath(graph))
    return nirtorch.nir_to_torch(graph, _node_map(dt))


def from_nir_spikingjelly(graph, dt: float = 1e-4) -> nn.Module:
    """The same through SpikingJelly's own importer (2.x ``nir_exchange.import_from_nir``, single-step mode);
    a clear error on SpikingJelly 0.0.0.0.14, which has none (use :func:`from_nir` there)."""
    importer = _compat.spikingjelly_nir_import()
    if importer is None:
        raise RuntimeError(f"SpikingJelly {_compat.SJ_VERSION} has no nir_exchange (SpikingJelly 2.x ships it), or "
                           "nir/nirtorch are not installed; read the graph with sj_sew.deploy.from_nir, which needs "
                           "only nir and nirtorch")
    return importer(graph, dt=dt, step_mode="s")


@torch.no_grad()
def run_nir(module: nn.Module, sequence: torch.Tensor) -> torch.Tensor:
    """Feed ``sequence`` ``[T, N, ...]`` to an imported NIR module step by step from rest (``state=None`` first,
    then the returned state); returns the per-step outputs ``[T, N, ...]``."""
    state, outputs = None, []
    for frame in sequence:
        out, state = module(frame, state)
        outputs.append(out)
    return torch.stack(outputs)
