"""Residual blocks of every family sj_sew builds: one contract, :class:`ResidualBlock`, and a family table.

Every block maps multi-step input ``[T, N, C, H, W]`` to ``[T, N, C', H', W']``. Its residual branch F is
conv-BN-SN-...-conv-BN (two 3x3 convs in :class:`BasicBlock`, 1x1-3x3-1x1 in :class:`Bottleneck`, stride on
the 3x3 as in torchvision), or SN-conv-BN-...-SN-conv-BN for pre-activation families. The family decides
how the branch and the shortcut S' make the output:

=========== ======================================= =================================== =======================
family      output                                  shortcut when the shape changes     paper
=========== ======================================= =================================== =======================
``sew``     O = g(SN(F(S)), S')                     S' = SN(BN(conv1x1(S)))             SEW, eq. 11, Fig. 2b
``spiking`` O = SN(F(S) + S')                       S' = BN(conv1x1(S))                 SEW, eq. 7, Fig. 2a
``plain``   O = SN(F(S))                            none                                SEW, plain baseline
``ms``      O = F(S) + S' (pre-activation F)        S' = BN(conv1x1(S)), optionally     MS-ResNet (membrane
                                                    after average pooling               shortcut)
``ds``      O = SN(F(S)) + S'                       S' = SN(BN(conv1x1(S)))             Spiking DS-ResNet
=========== ======================================= =================================== =======================

``ms`` and ``ds`` blocks pass real values (membrane input) or spike counts through their sum unchanged.
Where a block's output is O = g(SN(F(S)), S') (``sew``, ``sew-conv-bn``) and its residual neuron runs sj_sew's
kernels (``backend='fused'`` on CUDA), the last BN (in eval mode), the neuron and g run as one kernel call
(:meth:`ResidualBlock.forward`).
Module names follow SpikingJelly's zoo and torchvision (``conv1``, ``bn1``, ``sn1``, ..., ``downsample.0/1``,
``downsample_sn``), so their state dicts load with ``strict=True``. Add a family with :func:`register_family`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from .connect import get_connect
from .neurons import NeuronSpec, mlf_spec, ms_neuron_spec
from .neurons import backend as neuron_backends
from .neurons.fused import kernel_route
from .neurons.ops import KERNEL_CONNECTS

SHORTCUTS = ("conv", "avgpool")


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """A bias-free multi-step conv (padding keeps the size at stride 1) and its BatchNorm."""
    conv = layer.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                        padding=kernel_size // 2, bias=False, step_mode="m")
    return conv, layer.BatchNorm2d(out_channels, step_mode="m")


# --------------------------------------------------------------------------------------------------
# The family table
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """How a family turns the branch output ``h`` = F(S) and the block input ``x`` into the block output.

    Attributes:
        name: the ``family=`` value.
        output: ``output(block, h, x)``.
        shortcut: the shortcut when the shape changes: ``'conv-bn-sn'``, ``'conv-bn'`` or None (no shortcut).
        preactivation: a neuron before every conv of F instead of after every BN but the last.
        identity_bias: the last BN's bias that, with its weight 0, makes the block an identity mapping
            (None: the family has none).
        default_neuron: the neuron spec used when a block is built without one.
    """

    name: str
    output: Callable[["ResidualBlock", torch.Tensor, torch.Tensor], torch.Tensor]
    shortcut: Optional[str]
    identity_bias: Optional[Callable[["ResidualBlock"], float]]
    default_neuron: Callable[[], NeuronSpec] = NeuronSpec
    preactivation: bool = False


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Add a block family (its name must be new)."""
    if family.name in FAMILIES:
        raise ValueError(f"block family {family.name!r} is already registered")
    if family.shortcut not in (None, "conv-bn", "conv-bn-sn"):
        raise ValueError(f"shortcut must be None, 'conv-bn' or 'conv-bn-sn', got {family.shortcut!r}")
    FAMILIES[family.name] = family


def list_families() -> list[str]:
    """The registered ``family=`` names."""
    return list(FAMILIES)


def get_family(name: str | Family) -> Family:
    """The registered family called ``name``."""
    if isinstance(name, Family):
        return name
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown block family {name!r}; valid: {list_families()}") from None


def _sew_output(block, h, x):
    return block.connect(block.residual_neuron(h), block.shortcut(x))


def _spiking_output(block, h, x):
    return block.residual_neuron(h + block.shortcut(x))


def _plain_output(block, h, x):
    return block.residual_neuron(h)


def _membrane_output(block, h, x):
    return h + block.shortcut(x)


def _spike_count_output(block, h, x):
    return block.residual_neuron(h) + block.shortcut(x)


def _sew_identity_bias(block) -> float:
    """Holds A at g's identity spike: 0 for ADD/IAND, 1 for AND (the input found by probing the neuron)."""
    return block.neuron.firing_input() if block.connect.identity_spike == 1.0 else 0.0


def _zero_bias(block) -> float:
    return 0.0


register_family(Family("sew", _sew_output, "conv-bn-sn", _sew_identity_bias))
# Spiking: O = SN(S) at zero init, an identity only for neurons that fire on one input spike from rest
# (IF with Vth <= 1), not LIF/PLIF (paper, Sec. 3.2).
register_family(Family("spiking", _spiking_output, "conv-bn", _zero_bias))
register_family(Family("plain", _plain_output, None, None))
register_family(Family("ms", _membrane_output, "conv-bn", _zero_bias, ms_neuron_spec, preactivation=True))
register_family(Family("ds", _spike_count_output, "conv-bn-sn", _zero_bias, mlf_spec))
register_family(Family("sew-conv-bn", _sew_output, "conv-bn", _sew_identity_bias))  # SEW without the shortcut SN


# --------------------------------------------------------------------------------------------------
# The block
# --------------------------------------------------------------------------------------------------

class ResidualBlock(nn.Module):
    """A residual block of any family; subclasses give only the conv layout of F (:meth:`layout`).

    Args:
        in_channels, planes, stride: input channels, branch width, stride (output: ``planes * expansion``).
        family: a name in :data:`FAMILIES`.
        connect: g of ``sew`` blocks (a name registered in :mod:`sj_sew.connect`).
        neuron: the :class:`NeuronSpec` of every neuron (default: the family's).
        shortcut: ``'conv'`` or ``'avgpool'`` (AvgPool(stride)-conv1x1-BN, MS-ResNet-104) when the shape changes.

    The contract every analysis and training tool relies on: :attr:`family`, :attr:`residual_neuron`,
    :attr:`last_bn`, :attr:`changes_shape` and :meth:`zero_init_last`.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, family: str = "sew",
                 connect: str = "ADD", neuron: NeuronSpec | None = None, shortcut: str = "conv"):
        super().__init__()
        self.kind = get_family(family)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: {list(SHORTCUTS)}")
        self.connect = get_connect(connect)
        self.neuron = neuron if neuron is not None else self.kind.default_neuron()
        self.in_channels, self.out_channels, self.stride = in_channels, planes * self.expansion, stride
        self.num_convs = 0
        for cin, cout, k, s in self.layout(in_channels, planes, stride):
            self.num_convs += 1
            if self.kind.preactivation:
                self.add_module(f"sn{self.num_convs}", self.neuron.make())
            conv, bn = conv_bn(cin, cout, k, s)
            self.add_module(f"conv{self.num_convs}", conv)
            self.add_module(f"bn{self.num_convs}", bn)
            if not self.kind.preactivation:
                self.add_module(f"sn{self.num_convs}", self.neuron.make())
        self.downsample = None
        if self.kind.shortcut is not None and self.changes_shape:
            conv, bn = conv_bn(in_channels, self.out_channels, 1, 1 if shortcut == "avgpool" else stride)
            pool = [layer.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False, step_mode="m")]
            self.downsample = nn.Sequential(*(pool if shortcut == "avgpool" else []), conv, bn)
            if self.kind.shortcut == "conv-bn-sn":
                self.downsample_sn = self.neuron.make()

    @staticmethod
    def layout(in_channels: int, planes: int, stride: int):
        """(in, out, kernel, stride) of each conv in F."""
        raise NotImplementedError

    @property
    def family(self) -> str:
        return self.kind.name

    @property
    def has_connect(self) -> bool:
        """Whether the output is SEW's g(A, S') (families 'sew' and 'sew-conv-bn'), so the connect function matters."""
        return self.kind.output is _sew_output

    @property
    def changes_shape(self) -> bool:
        """Whether the output's shape differs from the input's (stride or channels)."""
        return self.stride != 1 or self.in_channels != self.out_channels

    @property
    def residual_neuron(self) -> nn.Module:
        """The last neuron of the block: its output is A (sew, ds) or O (spiking, plain); for pre-activation
        families, the neuron before the last conv."""
        return getattr(self, f"sn{self.num_convs}")

    @property
    def last_bn(self) -> nn.Module:
        return getattr(self, f"bn{self.num_convs}")

    def branch(self, x: torch.Tensor, last_bn: bool = True) -> torch.Tensor:
        """F(S), up to the last BN (``last_bn=False``: up to the last conv)."""
        pre = self.kind.preactivation
        for i in range(1, self.num_convs + 1):
            if pre:
                x = getattr(self, f"sn{i}")(x)
            x = getattr(self, f"conv{i}")(x)
            if last_bn or i < self.num_convs:
                x = getattr(self, f"bn{i}")(x)
            if not pre and i < self.num_convs:
                x = getattr(self, f"sn{i}")(x)
        return x

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """S': the input itself, or the downsampling path when the shape changes."""
        if self.downsample is None:
            return x
        s = self.downsample(x)
        return self.downsample_sn(s) if self.kind.shortcut == "conv-bn-sn" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._runs_connect_kernel(x):
            return self._connect_kernel_output(x)
        return self.kind.output(self, self.branch(x), x)

    def _runs_connect_kernel(self, x: torch.Tensor) -> bool:
        """Whether O = g(SN(F(S)), S') runs as one call of sj_sew's kernels: a family with that output, g with a
        kernel (the registered one of its name, or a copy of it: a deep-copied block holds a copy), the residual
        neuron on its kernel route (:func:`~sj_sew.neurons.fused.kernel_route`) and no hook on it but the spike mark
        (a hook, e.g. a firing-rate monitor, must see A: the block then runs unfused)."""
        sn = self.residual_neuron
        return (self.has_connect and self.connect.name in KERNEL_CONNECTS
                and get_connect(self.connect.name) == self.connect and kernel_route(sn, x)
                and not _runs_hooks(sn, transparent=(neuron_backends.mark_spikes,)))

    def _connect_kernel_output(self, x: torch.Tensor) -> torch.Tensor:
        """O = g(SN(BN(conv(...))), S') in one :func:`sj_sew.neurons.ops.multistep` call; the last BN fused into it
        in eval mode (with running statistics, unhooked), else run as it is. The neuron's state is its own call's."""
        bn = self.last_bn
        fuse_bn = not bn.training and bn.running_mean is not None and not _runs_hooks(bn)
        h = self.branch(x, last_bn=not fuse_bn)
        shortcut = self.shortcut(x)
        out = self.residual_neuron._kernel_forward(h, bn=bn if fuse_bn else None, shortcut=shortcut,
                                                   connect=self.connect.name)
        return self.connect.mark_output(out, shortcut)  # (A: 0/1 spikes by construction)

    @torch.no_grad()
    def zero_init_last(self) -> None:
        """Make the block an identity mapping where its family allows one: last BN weight 0 and the
        family's identity bias (see :class:`Family`); a family without one is left untouched."""
        if self.kind.identity_bias is None:
            return
        self.last_bn.weight.zero_()
        self.last_bn.bias.fill_(self.kind.identity_bias(self))

    def extra_repr(self) -> str:
        return f"family={self.family}" + (f", connect={self.connect.name}" if self.has_connect else "")


def _runs_hooks(module: nn.Module, transparent=()) -> bool:
    """Whether calling ``module`` runs a hook (its own or a global one) other than those in ``transparent``: a
    fused call, which skips the module's call, would skip it."""
    own = (*module._forward_pre_hooks.values(), *module._forward_hooks.values(), *module._backward_hooks.values(),
           *module._backward_pre_hooks.values())
    global_hooks = torch.nn.modules.module  # (torch keeps these private; register_module_forward_hook fills them)
    return (any(h not in transparent for h in own) or bool(global_hooks._global_forward_pre_hooks)
            or bool(global_hooks._global_forward_hooks) or bool(global_hooks._global_backward_hooks)
            or bool(global_hooks._global_backward_pre_hooks))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34, MS-ResNet, DS-ResNet, the paper's small nets)."""

    expansion = 1

    @staticmethod
    def layout(in_channels, planes, stride):
        return [(in_channels, planes, 3, stride), (planes, planes, 3, 1)]


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50/101/152)."""

    expansion = 4

    @staticmethod
    def layout(in_channels, planes, stride):
        return [(in_channels, planes, 1, 1), (planes, planes, 3, stride), (planes, planes * 4, 1, 1)]
