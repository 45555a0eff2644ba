"""What every sj_sew network shares: the input contract, the static-input stem, backend sync, and
gradient checkpointing (:meth:`SpikingNetwork.set_grad_checkpointing`)."""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
from spikingjelly.activation_based import base

from ..blocks import ResidualBlock
from ..memory import SegmentedSequential, mark_checkpointed, set_compact
from ..neurons import NeuronSpec


_SINGLE_STEP_REFUSED = (
    "{name} is a multi-step network (its residual blocks and neurons take [T, N, ...] sequences): {what} is "
    "not supported. For one frame [N, C, H, W] per call, equal step by step to the multi-step forward, use "
    "sj_sew.deploy.streaming(net); for the per-step logits of a sequence, net(x, per_step=True); keep "
    "functional.set_step_mode(net, 'm')")


@dataclasses.dataclass(frozen=True)
class LayerSequence:
    """The modules a network's forward runs on every time step, in that order, as ``(name, module)`` pairs:
    :attr:`stem` (up to the static-input repeat point), :attr:`body` and :attr:`head`. A stage or a residual
    block is one entry; a name is the module's path in the network (``get_submodule``), or its role for a
    module the forward applies as a function (``'flatten'``). Iterating yields every pair in order."""

    stem: tuple[tuple[str, nn.Module], ...]
    body: tuple[tuple[str, nn.Module], ...]
    head: tuple[tuple[str, nn.Module], ...]

    def __iter__(self):
        return iter(self.stem + self.body + self.head)


class SpikingNetwork(nn.Module, base.StepModule):
    """Base of the sj_sew networks.

    Input is a sequence ``[T, N, C, H, W]``, or a static batch ``[N, C, H, W]`` when the model was
    built with ``T``: then :meth:`stem` (the stateless layers before the first neuron) runs once and
    its output is repeated T times (the authors' trick). The forward output is the same as repeating
    the image first, except for one training-time detail: the stem BatchNorm's running variance is
    updated with the unbiased correction of N*H*W values instead of N*T*H*W (same batch mean and variance).
    Output is the logits averaged over time, ``[N, num_classes]``; ``net(x, per_step=True)`` returns the
    per-step logits ``[T, N, num_classes]`` instead (their mean over dim 0 is the default output).
    The network is multi-step only: SpikingJelly's ``set_step_mode(net, 's')`` is refused (:attr:`step_mode`);
    one frame per call is :func:`sj_sew.deploy.streaming`.
    Set :attr:`stem_once` False to repeat the image T times before the stem instead (MS-ResNet's and
    DS-ResNet's authors do; their stem BN statistics then count N*T samples).
    Subclasses implement :meth:`stem`, :meth:`body` and :meth:`head`; stages are
    :class:`~sj_sew.memory.SegmentedSequential` and layers outside them are called through
    :func:`sj_sew.memory.run`, so that :meth:`set_grad_checkpointing` is honoured.
    """

    #: static input: run the stem once and repeat its output (True), or repeat the image first (False).
    stem_once = True
    #: the side of the square input the network was built for (its FC layers depend on it), or None for any.
    input_size: int | None = None

    def __init__(self, neuron: NeuronSpec, in_channels: int, num_classes: int, T: int | None):
        super().__init__()
        if T is not None and (not isinstance(T, int) or T < 1):
            raise ValueError(f"T must be a positive int or None, got {T!r}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.neuron_spec = neuron
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.T = T
        self.grad_checkpointing = False
        self._backend_device = None

    # --- subclass hooks -------------------------------------------------------------------------
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stateless layers before the first neuron, on ``[T, N, ...]`` (T may be 1)."""
        raise NotImplementedError

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """From the stem's output to the last feature map, ``[T, N, C, H, W]``."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, N, num_classes]`` from the features."""
        raise NotImplementedError

    def layer_sequence(self) -> LayerSequence:
        """What :meth:`stem`, :meth:`body` and :meth:`head` run, in order (:class:`LayerSequence`), for the tools
        that walk a network layer by layer (NIR export, BatchNorm folding) without knowing its class."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its layer order (layer_sequence)")

    # --- gradient checkpointing ----------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True, blocks_per_segment: int | str = "sqrt",
                               checkpoint_last_stage: bool = False, compact: bool = False) -> None:
        """Exact gradient checkpointing (see :func:`sj_sew.memory.memory_saving`); ``enable=False`` undoes it.
        ``compact``: saved tensors and segment inputs stored packed (exact), also with ``enable=False``."""
        if not (blocks_per_segment == "sqrt" or (isinstance(blocks_per_segment, int) and blocks_per_segment >= 1)):
            raise ValueError(f"blocks_per_segment must be 'sqrt' or a positive int, got {blocks_per_segment!r}")
        stages = [m for m in self.modules() if isinstance(m, SegmentedSequential) and len(m)
                  and all(isinstance(c, ResidualBlock) for c in m)]
        in_stage = {id(b) for st in stages for b in st}
        loose = [m for m in self.modules() if isinstance(m, ResidualBlock) and id(m) not in in_stage]
        if enable and not stages and not loose:
            raise ValueError(f"{type(self).__name__} has no sj_sew residual blocks to checkpoint")
        covered = {id(d) for unit in stages + loose for d in unit.modules()}
        neurons = [m for m in self.modules() if isinstance(m, base.MemoryModule) and id(m) not in covered]
        for i, stage in enumerate(stages):
            skip = i == len(stages) - 1 and len(stages) > 1 and not checkpoint_last_stage
            size = math.ceil(math.sqrt(len(stage))) if blocks_per_segment == "sqrt" else blocks_per_segment
            stage.segment_size = size if enable and not skip else None
            stage.compact = bool(compact and stage.segment_size)
        for m in loose + neurons:
            mark_checkpointed(m, enable, compact)
        set_compact(self, compact)
        self.grad_checkpointing = enable

    # --- shared behaviour -----------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise TypeError/ValueError naming what is wrong with ``x`` (type, dtype, device, shape, T, channels,
        size, non-finite values) before any layer sees it. The input's dtype must be the model's (outside
        autocast): float64 data runs on a ``model.double()``, or converts with ``x.float()``; no silent cast."""
        self._check_tensor(x)
        if x.dim() not in (4, 5):
            raise ValueError(f"input must be [T, N, C, H, W] or, for a model built with T, [N, C, H, W]; "
                             f"got shape {tuple(x.shape)}")
        if x.dim() == 5 and x.shape[0] == 0:
            raise ValueError(f"the input sequence has T = 0 time steps (shape {tuple(x.shape)}); it needs at least 1")
        if x.dim() == 4 and self.T is None:
            raise ValueError(f"static input {tuple(x.shape)} needs a model built with T=<time steps>; "
                             "or pass a sequence [T, N, C, H, W]")
        if x.dim() == 5 and self.T is not None and x.shape[0] != self.T:
            raise ValueError(f"model was built with T={self.T} but the sequence has {x.shape[0]} steps "
                             f"(shape {tuple(x.shape)}); build it with T=None to accept any length")
        self._check_frames(x)

    def check_frame(self, frame: torch.Tensor) -> None:
        """:meth:`check_input` for one time step ``[N, C, H, W]`` of a stream (the model's T does not apply)."""
        self._check_tensor(frame)
        if frame.dim() != 4:
            raise ValueError(f"a streaming step takes one frame [N, C, H, W]; got shape {tuple(frame.shape)}. For "
                             "a whole sequence [T, N, C, H, W] call the network itself, or stream.run(sequence)")
        self._check_frames(frame)
        self._check_step_modes()

    def _check_tensor(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor (spikes or intensities), got dtype {x.dtype}; "
                            "convert it with x.float()")
        weight = next(self.parameters(), None)
        if weight is None:
            return
        if x.device != weight.device:
            raise ValueError(f"the input is on {x.device} but the model on {weight.device}; move the input "
                             f"(x.to('{weight.device}')) or the model (model.to('{x.device}'))")
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"input dtype {x.dtype} differs from the model's parameters ({weight.dtype}); convert the "
                            f"input (x.to({weight.dtype})) or the model (model.to({x.dtype})), or run under "
                            "torch.autocast")

    def _check_frames(self, x: torch.Tensor) -> None:
        """What frames [..., N, C, H, W] must satisfy: a batch, the channels and size built for, finite values."""
        if x.shape[-4] == 0:
            raise ValueError(f"the input batch is empty (N = 0, shape {tuple(x.shape)})")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels at dim {x.dim() - 3} "
                             f"(shape [T, N, C, H, W] or [N, C, H, W]); got shape {tuple(x.shape)}")
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"{type(self).__name__} was built for {self.input_size}x{self.input_size} input "
                             f"(input_size={self.input_size}) but got {x.shape[-2]}x{x.shape[-1]} (shape "
                             f"{tuple(x.shape)}); build it with input_size={x.shape[-1]} or resize the input")
        # no data-dependent branch in a traced graph, and no read-back (a sync) in a captured CUDA graph
        in_graph = (torch.jit.is_tracing() or torch.compiler.is_compiling()
                    or (x.is_cuda and torch.cuda.is_current_stream_capturing()))
        if not in_graph and not bool(torch.isfinite(x).all()):
            raise ValueError(f"input holds non-finite values (nan or inf; shape {tuple(x.shape)}); check the data")

    def sync_backend(self, device: torch.device) -> None:
        """Point every neuron at the backend the spec picks for ``device`` (no-op once per device); on
        SpikingJelly 2.x with ``backend='cuda'|'triton'``, check on a GPU that the kernel is available."""
        if device == self._backend_device:
            return
        self.neuron_spec.sync(self.modules(), device)
        self._backend_device = device

    # --- step mode (SpikingJelly's functional.set_step_mode) ---------------------------------------
    def supported_step_mode(self) -> tuple[str, ...]:
        """SpikingJelly's StepModule interface: only multi-step, ``('m',)``."""
        return ("m",)

    @property
    def step_mode(self) -> str:
        """Always ``'m'``: input is a sequence ``[T, N, ...]`` (or a static image, see the class). Setting
        anything else (``functional.set_step_mode(net, 's')`` sets this first) raises :class:`ValueError`."""
        return "m"

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value != "m":
            raise ValueError(_SINGLE_STEP_REFUSED.format(name=type(self).__name__, what=f"step_mode={value!r}"))

    def _check_step_modes(self) -> None:
        """Refuse a forward after a submodule was set to single-step (``set_step_mode`` on a part of the net)."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        single = [name for name, m in self.named_modules()
                  if m is not self and isinstance(m, base.StepModule) and m.step_mode != "m"]
        if single:
            more = f" (and {len(single) - 1} more)" if len(single) > 1 else ""
            what = f"{single[0]!r} has step_mode={self.get_submodule(single[0]).step_mode!r}{more}"
            raise ValueError(_SINGLE_STEP_REFUSED.format(name=type(self).__name__, what=what))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``[T, N, C, H, W]``."""
        self.check_input(x)
        self._check_step_modes()
        self.sync_backend(x.device)
        if x.dim() == 4 and not self.stem_once:  # the authors of this net repeat the image first
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        if x.dim() == 4:  # static image: stem once, then repeat over T (the SEW authors' trick)
            s = self.stem(x.unsqueeze(0))
            s = s.expand(self.T, *s.shape[1:])
        else:
            s = self.stem(x)
        return self.body(s)

    def forward_head(self, features: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """Logits from :meth:`forward_features`: averaged over time ``[N, num_classes]``, or with ``per_step``
        the logits of every step ``[T, N, num_classes]``."""
        logits = self.head(features)
        return logits if per_step else logits.mean(0)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """Logits ``[N, num_classes]`` (mean over time), or ``[T, N, num_classes]`` with ``per_step=True``
        (what TET-style losses take; equal to :func:`sj_sew.deploy.streaming`'s outputs step by step)."""
        return self.forward_head(self.forward_features(x), per_step=per_step)
