"""Networks written in the SEW paper's own notation, e.g. the 7B-Net of DVS128 Gesture::

    c32k3s1-BN-PLIF-{SEW Block(c32)-MPk2s2}*7-FC11

Tokens (separated by ``-``; ``{...}*n`` repeats a group):

=================== =====================================================================
``c32k3s1``         conv, 32 channels, kernel 3, stride 1, padding k//2, no bias
``BN``              BatchNorm over the current channels
``IF|LIF|PLIF|SN``  a spiking neuron (the first one named is the net's default neuron)
``Block(c32)``      a residual block of the chosen family (``SEW Block(c32)`` is the same)
``MPk2s2``          max pooling, kernel 2, stride 2 (``APk2s2``: average pooling)
``DP``              dropout, p = 0.5
``FC11``            flatten, then a linear layer to 11 features (the last FC gets ``num_classes``)
=================== =====================================================================
"""
from __future__ import annotations

import difflib
import inspect
import re

import torch.nn as nn
from spikingjelly.activation_based import layer

from ..blocks import BasicBlock, get_family
from ..connect import pop_connect_alias
from ..memory import SegmentedSequential
from ..neurons import NeuronSpec, UnknownNeuronArgument, close_matches
from .base import LayerSequence, SpikingNetwork
from .init import init_weights
from .registry import register_variant

_NEURON_TOKENS = {"IF": "if", "LIF": "lif", "PLIF": "plif", "SN": None}
_PATTERNS = {
    "conv": re.compile(r"c(\d+)k(\d+)s(\d+)$"),
    "block": re.compile(r"(?:SEW\s*)?Block\s*\(\s*c(\d+)\s*\)$", re.IGNORECASE),
    "pool": re.compile(r"(MP|AP)k(\d+)s(\d+)$"),
    "fc": re.compile(r"FC(\d+)$"),
}


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in {text!r}")
        if ch == "-" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise ValueError(f"unbalanced brackets in {text!r}")
    parts.append("".join(current).strip())
    if any(not p for p in parts):
        raise ValueError(f"empty token in {text!r}")
    return parts


def parse_notation(text: str) -> list[tuple]:
    """Flatten the notation into a token list: ('conv', c, k, s), ('bn',), ('neuron', name),
    ('block', c), ('pool', 'MP'|'AP', k, s), ('dropout',), ('fc', features)."""
    if not isinstance(text, str):
        raise TypeError(f"a notation is a string in the paper's notation, e.g. 'c32k3s1-BN-PLIF-{{SEW Block(c32)"
                        f"-MPk2s2}}*5-FC10', got {type(text).__name__}")
    tokens: list[tuple] = []
    for part in _split_top_level(text):
        group = re.fullmatch(r"\{(.*)\}\s*\*\s*(\d+)", part, re.DOTALL)
        if group:
            tokens += parse_notation(group.group(1)) * int(group.group(2))
        elif part == "BN":
            tokens.append(("bn",))
        elif part == "DP":
            tokens.append(("dropout",))
        elif part in _NEURON_TOKENS:
            tokens.append(("neuron", _NEURON_TOKENS[part]))
        else:
            for kind, pattern in _PATTERNS.items():
                m = pattern.match(part)
                if m:
                    args = [int(g) if g.isdigit() else g for g in m.groups()]
                    tokens.append((kind, *args))
                    break
            else:
                raise ValueError(f"cannot parse {part!r} in {text!r}; tokens are cCkKsS, BN, IF, LIF, PLIF, SN, "
                                 "Block(cC), MPkKsS, APkKsS, DP, FCn and {...}*n")
    return tokens


class _LayerBuilder:
    """Turns notation tokens into modules, tracking channels and the (square) feature-map side."""

    def __init__(self, notation: str, spec: NeuronSpec, family: str, connect: str, channels: int, size: int,
                 num_classes: int, last_fc: int, up_kernel: int | None = None):
        self.notation, self.spec, self.family, self.connect = notation, spec, family, connect
        self.up_kernel = up_kernel
        self.channels, self.size, self.input_size = channels, size, size
        self.num_classes, self.last_fc = num_classes, last_fc
        self.modules: list[nn.Module] = []
        self.stem_len = self.head_start = None

    def add(self, i: int, tok: tuple) -> None:
        kind = tok[0]
        if kind in ("conv", "block", "pool", "bn") and self.head_start is not None:
            raise ValueError(f"{kind} after FC in {self.notation!r}: FC layers must come last")
        if kind == "neuron" and self.stem_len is None:
            self.stem_len = len(self.modules)
        if kind == "fc" and self.head_start is None:
            self.head_start = len(self.modules)
            self.modules.append(layer.Flatten(start_dim=1, step_mode="m"))
            self.channels *= self.size * self.size
        getattr(self, f"_{kind}")(i, *tok[1:])
        if self.size < 1:
            raise ValueError(f"{self.notation!r} shrinks a {self.input_size}x{self.input_size} input to nothing "
                             f"at {tok}; pass a larger input_size")

    def _conv(self, i, out, k, stride):
        if self.up_kernel is not None and out != self.channels:  # an up-projection
            k = self.up_kernel
        self.modules.append(layer.Conv2d(self.channels, out, k, stride=stride, padding=k // 2, bias=False,
                                         step_mode="m"))
        self.channels, self.size = out, (self.size + 2 * (k // 2) - k) // stride + 1

    def _bn(self, i):
        self.modules.append(layer.BatchNorm2d(self.channels, step_mode="m"))

    def _neuron(self, i, name):
        self.modules.append(self.spec.make())

    def _block(self, i, out):
        self.modules.append(BasicBlock(self.channels, out, 1, self.family, self.connect, self.spec))
        self.channels = out

    def _pool(self, i, kind, k, stride):
        cls = layer.MaxPool2d if kind == "MP" else layer.AvgPool2d
        self.modules.append(cls(k, stride, step_mode="m"))
        self.size = (self.size - k) // stride + 1

    def _dropout(self, i):
        self.modules.append(layer.Dropout(0.5, step_mode="m"))

    def _fc(self, i, features):
        out = self.num_classes if i == self.last_fc else features
        self.modules.append(layer.Linear(self.channels, out, step_mode="m"))
        self.channels = out


class NotationNet(SpikingNetwork):
    """A network built from the paper's notation; residual blocks take ``family`` and ``connect``.

    ``neuron=None`` uses the first neuron named in the notation for every neuron. ``input_size`` is
    the side of the (square) input, needed to size the first FC layer. ``up_kernel`` overrides the kernel of
    every conv that changes the channel count (the up-projections): the SEW authors' code builds 7B-Net and
    Wide-7B-Net with 1 where the paper's notation writes k3 (``net7b``/``wide_net7b`` default to 1; pass
    ``up_kernel=3`` for the notation's reading). ``connect`` also takes SpikingJelly's ``cnf=``/``connection=``.
    """

    def __init__(self, notation: str, family: str = "sew", connect: str | None = None, neuron=None,
                 backend: str = "auto", in_channels: int = 2, num_classes: int | None = None,
                 zero_init_residual: bool = False, T: int | None = None, input_size: int = 128,
                 up_kernel: int | None = None, **neuron_kwargs):
        connect = pop_connect_alias(neuron_kwargs, connect)
        if up_kernel is not None and (not isinstance(up_kernel, int) or up_kernel < 1 or up_kernel % 2 == 0):
            raise ValueError(f"up_kernel must be an odd positive int (1 or 3) or None, got {up_kernel!r}")
        tokens = parse_notation(notation)
        if neuron is None:
            named = [t[1] for t in tokens if t[0] == "neuron" and t[1] is not None]
            neuron = named[0] if named else "if"
        try:
            spec = NeuronSpec(neuron, backend, **neuron_kwargs)
        except UnknownNeuronArgument as e:  # a mistyped argument of the net itself is not the neuron's fault
            own = sorted(p for p in inspect.signature(NotationNet.__init__).parameters
                         if p not in ("self", "neuron_kwargs"))
            mine = [u for u in e.unknown if difflib.get_close_matches(u, own, n=1)]
            hint = close_matches(mine, own) if mine else close_matches(e.unknown, e.valid)
            e.args = (f"NotationNet got unknown {'argument' if len(e.unknown) == 1 else 'arguments'} {e.unknown}"
                      f"{hint}{' ' if hint else '. '}Its arguments: {own}, and the parameters of its neuron "
                      f"{e.cls.__name__}: {e.valid}",)  # still an UnknownNeuronArgument: create_model re-words it
            raise e from None
        fc_positions = [i for i, t in enumerate(tokens) if t[0] == "fc"]
        if not fc_positions:
            raise ValueError(f"notation {notation!r} has no FC layer to classify with")
        if num_classes is None:
            num_classes = tokens[fc_positions[-1]][1]
        super().__init__(spec, in_channels, num_classes, T)
        self.notation = notation
        self.family = get_family(family).name
        self.up_kernel, self.input_size = up_kernel, input_size
        builder = _LayerBuilder(notation, spec, family, connect, in_channels, input_size, num_classes,
                                fc_positions[-1], up_kernel)
        for i, tok in enumerate(tokens):
            builder.add(i, tok)
        self._head_start = builder.head_start
        self._stem_len = builder.stem_len if builder.stem_len is not None else builder.head_start
        self.layers = SegmentedSequential(*builder.modules)
        init_weights(self, zero_init_residual=zero_init_residual)

    def stem(self, x):
        return self.layers[: self._stem_len](x)

    def body(self, x):
        return self.layers[self._stem_len: self._head_start](x)

    def head(self, features):
        return self.layers[self._head_start:](features)

    def layer_sequence(self) -> LayerSequence:
        named = [(f"layers.{i}", m) for i, m in enumerate(self.layers)]
        return LayerSequence(stem=tuple(named[: self._stem_len]), body=tuple(named[self._stem_len: self._head_start]),
                             head=tuple(named[self._head_start:]))

    def extra_repr(self) -> str:
        return f"notation={self.notation!r}" + (f", up_kernel={self.up_kernel}" if self.up_kernel else "")


#: The paper's small networks: name -> (notation, default input channels, input size, what it is for).
PAPER_NETS = {
    "net7b": ("c32k3s1-BN-PLIF-{SEW Block(c32)-MPk2s2}*7-FC11", 2, 128,
              "7B-Net, DVS128 Gesture 128x128 (Table 5: 0.13M parameters; 130,426 with the authors' 1x1 stem)"),
    "wide_net7b": ("c64k3s1-BN-PLIF-{SEW Block(c64)-MPk2s2}*4-c128k3s1-BN-PLIF-{SEW Block(c128)-MPk2s2}*3-FC10", 2, 128,
                   "Wide-7B-Net, CIFAR10-DVS 128x128 (Table 6: 1.19M parameters; 1,192,218 with the authors' 1x1 "
                   "up-projections)"),
    "surrogate_net": ("c32k3s1-BN-IF-{{SEW Block(c32)}*2-MPk2s2}*5-FC10", 3, 32,
                      "the lightweight CIFAR-10 net of the surrogate study (Appendix A.5, Table 9)"),
}


#: up-projection kernel of the authors' code where it differs from the notation (fangwei123456/Spike-Element-Wise-ResNet,
#: ``dvsgesture/`` and ``cifar10dvs/``: ``up_kernel_size=1``); the surrogate study's net has no published code.
PAPER_UP_KERNEL = {"net7b": 1, "wide_net7b": 1}

for _name, (_notation, _channels, _size, _doc) in PAPER_NETS.items():
    _defaults = dict(in_channels=_channels, input_size=_size)
    if _name in PAPER_UP_KERNEL:
        _defaults["up_kernel"] = PAPER_UP_KERNEL[_name]
    register_variant(_name, NotationNet, f"{_doc}: ``{_notation}``; kwargs: see NotationNet.",
                     fixed=dict(notation=_notation), defaults=_defaults)
