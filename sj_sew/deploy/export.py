"""Export of the inference model as a fixed-T graph: TorchScript (trace) and ONNX.

:func:`graph_model` prepares the graph: the :func:`~sj_sew.deploy.inference_model` copy (BatchNorm folded), with
every neuron replaced by :class:`UnrolledNeuron`, a stateless module that runs the whole sequence from rest with
plain tensor operations (no autograd functions, buffers written in place or per-call state), so that tracers
and the ONNX exporter see one straight graph unrolled over the T time steps, and every multi-step convolution,
pooling, linear and flatten layer by :class:`FramesLayer`, whose reshapes leave the batch size free.
"""
from __future__ import annotations

import copy
import os
import warnings

import torch
import torch.nn as nn
from spikingjelly.activation_based import base, functional, layer, neuron as sj_neuron

from ..neurons import MLFNode, dynamics
from .inference import ChannelsLastMaxPool2d, InferenceModel, inference_model

#: SpikingJelly neuron classes (and their sj_sew subclasses) that :class:`UnrolledNeuron` reproduces.
UNROLLABLE = (sj_neuron.IFNode, sj_neuron.LIFNode, sj_neuron.ParametricLIFNode, MLFNode)


def _float(value, what: str, node) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{type(node).__name__}.{what} has {value.numel()} values; export needs one scalar")
        return float(value)
    return float(value)


class UnrolledNeuron(nn.Module):
    """A stateless copy of one IF, LIF, PLIF or MLF neuron for export: ``forward(x_seq)`` runs the ``T`` steps of
    ``x_seq`` (``[T, N, ...]``) from rest and returns the spikes (MLF: the spike counts), ``[T, N, ...]``.

    Each step is :mod:`sj_sew.neurons.dynamics`' charge (IF, LIF or PLIF, with or without decay_input), fire and
    hard or soft reset (MLF: its charge, per-level fire and reset to 0). PLIF's learned 1/tau is frozen.
    Inference only (no surrogate gradient).
    """

    def __init__(self, node: nn.Module):
        super().__init__()
        if not isinstance(node, UNROLLABLE):
            raise ValueError(f"cannot export neuron {type(node).__name__}: the exportable neurons are IF, LIF, "
                             f"PLIF and MLF ({', '.join(c.__name__ for c in UNROLLABLE)} and their subclasses)")
        self.source = type(node).__name__
        if isinstance(node, MLFNode):
            self.kind = "mlf"
            self.decay = float(node.decay)
            self.register_buffer("thresholds", node.thresholds.detach().clone().reshape(-1, 1), persistent=False)
            return
        self.v_threshold = _float(node.v_threshold, "v_threshold", node)
        self.v_reset = _float(node.v_reset, "v_reset", node)
        if isinstance(node, sj_neuron.ParametricLIFNode):
            self.kind = "plif"
            self.register_buffer("inv_tau", dynamics.plif_inv_tau(node.w.detach().clone()).reshape(()),
                                 persistent=False)
            self.decay_input = bool(node.decay_input)
        elif isinstance(node, sj_neuron.LIFNode):
            self.kind = "lif"
            self.tau = _float(node.tau, "tau", node)
            self.decay_input = bool(node.decay_input)
        else:
            self.kind = "if"

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "if":
            return dynamics.charge_if(v, x)
        if self.kind == "plif":
            return dynamics.charge_plif(v, x, self.inv_tau, self.v_reset, self.decay_input)
        return dynamics.charge_lif(v, x, self.tau, self.v_reset, self.decay_input)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self._run(x_seq, False)[0]

    def threshold_margin(self, x_seq: torch.Tensor) -> torch.Tensor:
        """|H - V_th| of every step and neuron (MLF: the least over its levels), ``[T, N, ...]``: how far each
        charge was from firing the other way. Where it is within float rounding, another runtime (ONNX Runtime,
        another summation order) may fire where this one does not."""
        return self._run(x_seq, True)[1]

    def _run(self, x_seq: torch.Tensor, margins: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kind == "mlf":
            return self._mlf(x_seq, margins)
        v = x_seq[0] * 0.0  # rest; unlike zeros_like/full_like, keeps the batch axis dynamic in ONNX
        if self.v_reset:
            v = v + self.v_reset
        spikes, charges = [], []
        for t in range(x_seq.shape[0]):
            h = self._charge(v, x_seq[t])
            s, v = dynamics.fire_and_reset(h, self.v_threshold, self.v_reset)
            spikes.append(s)
            if margins:
                charges.append(h)
        return torch.stack(spikes), (torch.stack(charges) - self.v_threshold).abs() if margins else None

    def _mlf(self, x_seq: torch.Tensor, margins: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        theta = self.thresholds.to(x_seq).reshape(-1, *([1] * (x_seq.dim() - 1)))
        v = (x_seq[0] * 0.0).unsqueeze(0)
        counts, charges = [], []  # charges: |H - theta| of the nearest level
        for t in range(x_seq.shape[0]):
            h = dynamics.charge_mlf(v, x_seq[t].unsqueeze(0), self.decay)  # as MLFNode.level_step
            s = dynamics.fire(h, theta).to(h.dtype)
            v = dynamics.reset_by_product(h, s)
            counts.append(s.sum(0))
            if margins:
                charges.append((h - theta).abs().amin(0))
        return torch.stack(counts), torch.stack(charges) if margins else None

    def extra_repr(self) -> str:
        return f"{self.kind} (from {self.source})"


class FramesLayer(nn.Module):
    """A stateless layer (convolution, pooling, linear, flatten) run on the ``T * N`` frames of ``x_seq``
    (``[T, N, ...]``) and reshaped back to ``[T, N, ...]`` with the batch axis written as -1, so that the traced
    graph takes any batch size (SpikingJelly's multi-step layers reshape with the traced ``N``). A SpikingJelly
    layer runs through the forward of its PyTorch base class (its step mode is left as it is)."""

    def __init__(self, layer_: nn.Module):
        super().__init__()
        self.layer = layer_
        self._frames_forward = next(c for c in type(layer_).__mro__
                                    if c.__module__.startswith("torch.nn.") and issubclass(c, nn.Module)).forward

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        y = self._frames_forward(self.layer, x_seq.flatten(0, 1))
        return y.reshape(x_seq.shape[0], -1, *y.shape[1:])  # T is fixed (1 for a static image's stem)


#: SpikingJelly's stateless layers that :class:`FramesLayer` runs on frames when in multi-step mode.
FRAME_LAYERS = (layer.Conv2d, layer.MaxPool2d, layer.AvgPool2d, layer.AdaptiveAvgPool2d, layer.Linear,
                layer.Flatten)


def _replace_neurons(module: nn.Module) -> int:
    """Neurons -> :class:`UnrolledNeuron`; multi-step stateless layers (and channels-last max pools) ->
    :class:`FramesLayer`; returns the number of neurons."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ChannelsLastMaxPool2d):
                setattr(parent, name, FramesLayer(nn.MaxPool2d(**child.args)))
            elif isinstance(child, FRAME_LAYERS) and getattr(child, "step_mode", "s") == "m":
                setattr(parent, name, FramesLayer(child))
            elif isinstance(child, UNROLLABLE):
                setattr(parent, name, UnrolledNeuron(child))
                count += 1
            elif isinstance(child, base.MemoryModule):
                raise ValueError(f"cannot export {name!r}: neuron {type(child).__name__} has no export form; "
                                 f"supported: IF, LIF, PLIF, MLF")
    return count


class GraphModel(nn.Module):
    """The export form of an sj_sew network for a fixed ``T``: stateless, every call from rest.

    Input: ``[T, N, C, H, W]``, or ``[N, C, H, W]`` for a network built with ``T`` (static image).
    Output: logits averaged over T, ``[N, num_classes]``, as the network's own forward.
    """

    def __init__(self, net: nn.Module, T: int):
        super().__init__()
        self.net = net
        self.T = T

    def example_input(self, batch: int = 1, size: int | tuple[int, int] = 32, static: bool = False) -> torch.Tensor:
        """A random input of the exported shape (``static``: an image batch, for networks built with T)."""
        h, w = (size, size) if isinstance(size, int) else size
        shape = (batch, self.net.in_channels, h, w)
        return torch.rand(shape) if static else torch.rand((self.T, *shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and x.shape[0] != self.T:
            raise ValueError(f"the graph is unrolled for T={self.T} steps; got a sequence of {x.shape[0]}")
        return self.net(x)


def graph_model(model: nn.Module, T: int | None = None) -> GraphModel:
    """The export form (:class:`GraphModel`) of an sj_sew network or :class:`InferenceModel`, unrolled for ``T``
    steps (default: the network's own ``T``). ``model`` is left unchanged."""
    net = model.model if isinstance(model, InferenceModel) else model
    T = T if T is not None else getattr(net, "T", None)
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"export needs a fixed number of time steps: pass T=<int> (the network was built with "
                         f"T={getattr(net, 'T', None)!r})")
    prepared = copy.deepcopy(net) if isinstance(model, InferenceModel) else inference_model(net).model
    functional.reset_net(prepared)
    if _replace_neurons(prepared) == 0:
        raise ValueError(f"{type(net).__name__} has no spiking neuron to export")
    prepared.eval().requires_grad_(False)
    if getattr(prepared, "T", None) is not None:
        prepared.T = T
    return GraphModel(prepared, T)


def _example(graph: GraphModel, example_input: torch.Tensor | None) -> torch.Tensor:
    return graph.example_input() if example_input is None else example_input


def export_torchscript(model: nn.Module, path: str | os.PathLike | None = None, T: int | None = None,
                       example_input: torch.Tensor | None = None) -> torch.jit.ScriptModule:
    """Trace the export form of ``model`` for ``T`` steps (``example_input`` fixes C, H and W; default
    ``[T, 1, C, 32, 32]``); saved to ``path`` (``torch.jit.load`` reads it, also from C++) if given."""
    graph = graph_model(model, T)
    x = _example(graph, example_input)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of the input checks, the trace deprecation notice
        traced = torch.jit.trace(graph, x, check_trace=False)
    if path is not None:
        traced.save(os.fspath(path))
    return traced


def export_onnx(model: nn.Module, path: str | os.PathLike, T: int | None = None,
                example_input: torch.Tensor | None = None, opset_version: int = 17) -> str:
    """Write the export form of ``model`` for ``T`` steps to an ONNX file (input ``"input"``, output
    ``"logits"``). The graph has the example input's T, C, H and W; its batch axis is dynamic (named ``"batch"``).
    Returns the path."""
    graph = graph_model(model, T)
    x = _example(graph, example_input)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (x,), os.fspath(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=opset_version,
                          dynamic_axes={"input": {x.dim() - 4: "batch"}, "logits": {0: "batch"}})
    return os.fspath(path)
