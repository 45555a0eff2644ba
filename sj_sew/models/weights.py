"""Published checkpoints onto sj_sew's networks: key mapping per source, strict checks, and a weights table.

Sources (``source=``), each a renaming of state-dict keys onto an sj_sew model:

- ``'sj_sew'`` and ``'spikingjelly'``: sj_sew's own names, which are also SpikingJelly's zoo names on both lines
  (``activation_based.model.sew_resnet/spiking_resnet``, 0.0.0.0.14's ``clock_driven.model`` single- and
  multi-step nets); SpikingJelly 2.x's ``ms_resnet`` (``stem.0/1``, ``head``) is renamed.
- ``'sew_authors'``: the SEW authors' code (fangwei123456/Spike-Element-Wise-ResNet), whose ImageNet nets wrap
  each conv-BN pair in a ``SeqToANNContainer`` (``layer1.0.conv1.module.0.weight`` is ``layer1.0.conv1.weight``,
  ``...conv1.module.1.*`` is ``...bn1.*``, shortcuts ``downsample.0.module.{0,1}`` / Spiking ResNet's
  ``downsample.module.{0,1}``) and whose DVS nets (7B-Net, Wide-7B-Net) are one ``conv`` list and ``out``.
  SpikingJelly >= 0.0.0.0.12 made ``SeqToANNContainer`` a Sequential: ``conv1.0.weight`` is accepted too.
- ``'ms_authors'``: github:BICLab/MS-ResNet (``conv2_x.0.residual_function.1.weight`` ...).
- ``'mlf_authors'``: github:langfengQ/MLF-DSResNet (``layer1.execute.0.bn1.bn.weight``, ``voting`` ...).

``'auto'`` tries each and takes the one that maps every key with the right shape. Nothing is guessed: a key that
does not map, a model key left without a value, or a differing shape refuses the whole checkpoint with one
message naming each (:class:`CheckpointMismatch`).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn as nn


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model; :attr:`problems` lists each key or shape at fault."""

    def __init__(self, arch: str, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"checkpoint does not fit {arch} (source {source!r}); {len(problems)} problem(s):\n  "
                         + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------------
# Key renaming, one function per source: (checkpoint key, target model) -> sj_sew key or None
# --------------------------------------------------------------------------------------------------

def _identity(key: str, model: nn.Module) -> str:
    return key


def _spikingjelly(key: str, model: nn.Module) -> str:
    for theirs, ours in (("stem.0.", "conv1."), ("stem.1.", "bn1."), ("head.", "fc.")):  # 2.x ms_resnet
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


_SEW_IMAGENET_RULES = [
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.(?:module\.)?0\."), r"\1.conv\2."),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.(?:module\.)?1\."), r"\1.bn\2."),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.0\.(?:module\.)?([01])\."), r"\1.downsample.\2."),  # SEW: SN after
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.module\.([01])\."), r"\1.downsample.\2."),  # Spiking ResNet
]
_DVS_UP = re.compile(r"^conv\.(\d+)\.0\.(?:module\.)?([01])\.(.+)$")  # conv1x1/3x3-BN of an up-projection
_DVS_UP_SN = re.compile(r"^conv\.(\d+)\.1\.(.+)$")  # its PLIF
_DVS_BLOCK = re.compile(r"^conv\.(\d+)\.conv\.([01])\.(?:0\.(?:module\.)?([01])|(1))\.(.+)$")  # SEW/plain block
_DVS_BASIC = re.compile(r"^conv\.(\d+)\.(?:conv\.1\.(?:module\.)?([01])|sn)\.(.+)$")  # Spiking ResNet block


def _sew_authors(key: str, model: nn.Module) -> str | None:
    if not key.startswith(("conv.", "out.")):
        for pattern, repl in _SEW_IMAGENET_RULES:
            if pattern.match(key):
                return pattern.sub(repl, key)
        return key  # conv1, bn1, fc: the same names
    layers = getattr(model, "layers", None)
    if layers is None:
        return None
    if key.startswith("out."):
        return f"layers.{len(layers) - 1}.{key[4:]}"
    # their list has an up-projection's conv-BN-SN as one entry where sj_sew has three
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    ups = [i - 2 * n for n, i in enumerate(convs)]
    index = int(key.split(".")[1])
    shift = 2 * sum(1 for u in ups if u < index)
    m = _DVS_UP.match(key)
    if m and index in ups:
        return f"layers.{index + shift + int(m.group(2))}.{m.group(3)}"
    m = _DVS_UP_SN.match(key)
    if m and index in ups:
        return f"layers.{index + shift + 2}.{m.group(2)}"
    m = _DVS_BLOCK.match(key)
    if m and not (m.group(4) and m.group(5) != "w"):  # a block's neuron holds only PLIF's w
        conv = int(m.group(2)) + 1
        kind = "sn" if m.group(4) else ("conv" if m.group(3) == "0" else "bn")
        return f"layers.{index + shift}.{kind}{conv}.{m.group(5)}"
    m = _DVS_BASIC.match(key)
    if m:
        kind = "sn2" if m.group(2) is None else ("conv2" if m.group(2) == "0" else "bn2")
        return f"layers.{index + shift}.{kind}.{m.group(3)}"
    return None


_MS_STAGE = re.compile(r"^conv(\d)_x\.(\d+)\.(residual_function|shortcut)\.(\d+)\.(?:bn\.)?(.+)$")


def _ms_authors(key: str, model: nn.Module) -> str | None:
    m = _MS_STAGE.match(key)
    if m:
        stage, block, part, index, rest = int(m.group(1)) - 1, m.group(2), m.group(3), int(m.group(4)), m.group(5)
        prefix = f"layer{stage}.{block}."
        if part == "residual_function":  # sn, conv, bn, sn, conv, bn
            names = {1: "conv1", 2: "bn1", 4: "conv2", 5: "bn2"}
            return prefix + names[index] + "." + rest if index in names else None
        return f"{prefix}downsample.{index}.{rest}"  # same positions (AvgPool first in ResNet-104)
    m = re.match(r"^conv1\.(\d)\.(?:bn\.)?(.+)$", key)
    if m:
        index, rest = int(m.group(1)), m.group(2)
        if getattr(model, "stem_kind", None) == "ms104":
            return {0: "conv1.", 1: "stem_rest.0.", 2: "stem_rest.1.", 3: "bn1."}.get(index, "?") + rest
        return {0: "conv1.", 1: "bn1."}.get(index, "?") + rest
    return key  # fc


def _mlf_authors(key: str, model: nn.Module) -> str:
    key = re.sub(r"\.bn\.", ".", key)
    return key.replace(".execute.", ".").replace(".shortcut.", ".downsample.").replace("voting.", "fc.")


#: source name -> key renaming.
SOURCES: dict[str, Callable[[str, nn.Module], str | None]] = {
    "sj_sew": _identity, "spikingjelly": _spikingjelly, "sew_authors": _sew_authors,
    "ms_authors": _ms_authors, "mlf_authors": _mlf_authors,
}


def model_keys(model: nn.Module) -> dict[str, torch.Size]:
    """The keys (parameters and persistent buffers) ``load_state_dict(strict=True)`` asks for, and shapes."""
    return {k: v.shape for k, v in model.state_dict().items()}


def map_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module, source: str = "auto",
                   arch: str | None = None) -> dict[str, torch.Tensor]:
    """``state_dict`` renamed onto ``model``'s keys; every key and shape is checked (:class:`CheckpointMismatch`)."""
    arch = arch or type(model).__name__
    state_dict = unwrap_checkpoint(state_dict)
    if source == "auto":
        failures = []
        for name in SOURCES:
            try:
                return map_state_dict(state_dict, model, name, arch)
            except CheckpointMismatch as e:
                failures.append(e)
        raise min(failures, key=lambda e: len(e.problems))
    if source not in SOURCES:
        raise ValueError(f"unknown checkpoint source {source!r}; valid: {['auto', *SOURCES]}")
    rename, wanted = SOURCES[source], model_keys(model)
    mapped: dict[str, torch.Tensor] = {}
    problems = []
    for key, value in state_dict.items():
        new = rename(key, model)
        if new is None or new not in wanted:
            problems.append(f"checkpoint key {key!r} does not map to any model key"
                            + (f" (renamed to {new!r})" if new not in (None, key) else ""))
        elif new in mapped:
            problems.append(f"checkpoint key {key!r} maps to {new!r}, which another key already filled")
        elif tuple(value.shape) != tuple(wanted[new]):
            problems.append(f"shape of {key!r} -> {new!r}: checkpoint {tuple(value.shape)}, model {tuple(wanted[new])}")
        else:
            mapped[new] = value
    missing = [k for k in wanted if k not in mapped and not any(f"-> {k!r}" in p for p in problems)]
    problems += [f"model key {k!r} gets no value from the checkpoint" for k in missing]
    if problems:
        raise CheckpointMismatch(arch, source, problems)
    return mapped


def unwrap_checkpoint(obj) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint (``'model'``, ``'state_dict'``, ...), without a DDP
    ``module.`` prefix."""
    for wrapper in ("model", "state_dict", "model_state_dict", "net"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TypeError("not a state dict: expected a mapping of names to tensors, or a checkpoint holding one "
                        "under 'model' or 'state_dict'")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


# --------------------------------------------------------------------------------------------------
# The weights table
# --------------------------------------------------------------------------------------------------

SEW_FIGSHARE = "https://figshare.com/articles/software/Spike-Element-Wise-ResNet/14752998"


@dataclass(frozen=True)
class Weights:
    """A known checkpoint: what it is for and how to check it.

    ``sha256`` None means no checksum has been recorded here yet: the file then loads with a warning (the
    key and shape checks still apply). ``model_kwargs`` are the arguments the net was trained with.
    """

    name: str
    arch: str
    source: str
    url: str
    filename: str
    dataset: str
    accuracy: dict[str, float]
    model_kwargs: dict = field(default_factory=dict)
    sha256: str | None = None


_WEIGHTS: dict[str, Weights] = {}


def register_weights(weights: Weights) -> None:
    """Add an entry to the table (its name must be new)."""
    if weights.name in _WEIGHTS:
        raise ValueError(f"weights {weights.name!r} are already registered")
    if weights.source not in SOURCES:
        raise ValueError(f"unknown source {weights.source!r}; valid: {list(SOURCES)}")
    _WEIGHTS[weights.name] = weights


def list_weights(arch: str | None = None) -> list[str]:
    """Registered weight names (for ``arch`` only, if given)."""
    return sorted(n for n, w in _WEIGHTS.items() if arch is None or w.arch == arch)


def get_weights(name: str) -> Weights:
    try:
        return _WEIGHTS[name]
    except KeyError:
        raise ValueError(f"unknown weights {name!r}; registered: {list_weights()}") from None


# The SEW authors' published ImageNet checkpoints (SEW ADD, T = 4, IF neurons) and the paper's Table 3 accuracy.
for _depth, _top1, _top5 in ((18, 63.18, 84.53), (34, 67.04, 87.25), (50, 67.78, 87.52), (101, 68.76, 88.25),
                             (152, 69.26, 88.57)):
    register_weights(Weights(
        f"sew_resnet{_depth}_imagenet_add", f"sew_resnet{_depth}", "sew_authors", SEW_FIGSHARE,
        f"sew{_depth}_checkpoint_319.pth", "imagenet", {"top1": _top1, "top5": _top5},
        dict(connect="ADD", neuron="if", T=4, num_classes=1000)))
register_weights(Weights("net7b_dvs128_gesture_add", "net7b", "sew_authors", SEW_FIGSHARE, "dvsgesture_add.pth",
                         "dvs128_gesture", {"top1": 97.92}, dict(connect="ADD", num_classes=11)))
register_weights(Weights("wide_net7b_cifar10_dvs_add", "wide_net7b", "sew_authors", SEW_FIGSHARE,
                         "cifar10dvs_add_T16.pth", "cifar10_dvs", {"top1": 74.4}, dict(connect="ADD", num_classes=10)))


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_dir() -> Path:
    """Where named weights are looked for: ``$SJ_SEW_WEIGHTS`` or ``~/.cache/sj_sew/weights``."""
    return Path(os.environ.get("SJ_SEW_WEIGHTS", Path.home() / ".cache" / "sj_sew" / "weights"))


def resolve_weights(weights, arch: str) -> tuple[Weights | None, object]:
    """(table entry or None, what to load: a path or a state dict) for ``create_model(..., weights=...)``."""
    if isinstance(weights, Weights) or (isinstance(weights, str) and weights in _WEIGHTS):
        entry = weights if isinstance(weights, Weights) else _WEIGHTS[weights]
        if entry.arch != arch:
            raise ValueError(f"weights {entry.name!r} are for {entry.arch}, not {arch}")
        path = weights_dir() / entry.filename
        if not path.is_file():
            raise FileNotFoundError(f"weights {entry.name!r}: {path} not found. sj_sew downloads nothing; fetch "
                                    f"{entry.filename} from {entry.url} into {weights_dir()} (or set SJ_SEW_WEIGHTS), "
                                    "or pass its path as weights=")
        return entry, path
    if isinstance(weights, Mapping):
        return None, weights
    if isinstance(weights, (str, os.PathLike)):
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights={weights!r} is neither a file nor a registered name "
                                    f"({list_weights(arch) or list_weights()})")
        return None, Path(weights)
    raise TypeError(f"weights must be a path, a registered name, a Weights entry or a state dict, got "
                    f"{type(weights).__name__}")


def read_checkpoint_file(path: str | os.PathLike, trusted: bool = False):
    """``torch.load`` of a checkpoint with ``weights_only=True``; ``trusted=True`` allows the full pickle that
    training checkpoints need when they store their argparse arguments (the SEW authors', SpikingJelly's
    ``train_classify``). A file that loads neither way raises a one-line :class:`RuntimeError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not trusted:
            pickled = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            what = f"pickles {pickled.group(1)}, which weights_only=True refuses" if pickled else \
                f"does not load with weights_only=True ({_reason(e)})"
            raise RuntimeError(f"{path} {what}; if you trust the file, pass trusted=True (it then runs the "
                               "file's pickle)") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RuntimeError(f"{path} is not a torch checkpoint ({_reason(e)})") from e


def _reason(error: Exception) -> str:
    """One line on why ``torch.load`` failed (for weights_only, the unpickler's own reason)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {line[:200]}"


#: The authors' DVS net names (their ``--model``/``-model``) -> (sj_sew arch names, family).
_RECORDED_NETS = {"sewresnet": (("net7b", "wide_net7b"), "sew"), "dvsgnetsew32": (("net7b",), "sew"),
                  "plainnet": (("net7b", "wide_net7b"), "plain"), "spikingresnet": (("net7b", "wide_net7b"), "spiking")}


def recorded_arguments(checkpoint) -> dict:
    """The training arguments a checkpoint records beside its state dict (``'args'``: an ``argparse.Namespace``
    or a mapping), or {}."""
    args = checkpoint.get("args") if isinstance(checkpoint, Mapping) else None
    if args is None:
        return {}
    return dict(args) if isinstance(args, Mapping) else dict(getattr(args, "__dict__", {}))


def check_recorded_arguments(checkpoint, model: nn.Module, arch: str, source: str = "auto") -> None:
    """Refuse (:class:`CheckpointMismatch`) a checkpoint whose recorded arguments name another network: its
    ``model``/``arch`` must name ``arch`` (and the family of a DVS net), its ``connect``/``cnf``/``connect_f`` the
    ``connect`` that ``model``'s SEW blocks use."""
    args, problems = recorded_arguments(checkpoint), []
    family = getattr(model, "family", None)
    recorded = next((str(args[k]) for k in ("model", "arch") if args.get(k)), None)
    if recorded is not None:
        name = recorded.lower().removeprefix("multi_step_")
        archs, wanted_family = _RECORDED_NETS.get(name, ((name,), None))
        if arch not in archs or wanted_family not in (None, family):
            problems.append(f"the file records model={recorded!r}"
                            + (f" ({' or '.join(archs)}, family {wanted_family!r})" if wanted_family else "")
                            + f", the requested network is {arch}" + (f" (family {family!r})" if wanted_family else ""))
    key = next((k for k in ("connect", "cnf", "connect_f") if args.get(k)), None)
    if key is not None:
        ours = sorted({m.connect.name for m in model.modules() if hasattr(getattr(m, "connect", None), "name")})
        theirs = str(args[key]).upper()
        if family != "sew" or ours != [theirs]:
            problems.append(f"the file records {key}={args[key]!r}, the requested {arch} "
                            + (f"is built with connect={'/'.join(ours)!r}; pass connect={theirs!r}" if family == "sew"
                               else f"has no SEW connect (family {family!r})"))
    if problems:
        raise CheckpointMismatch(arch, source, problems)


def weights_model_kwargs(weights, arch: str) -> dict:
    """The arguments a registered checkpoint's net was built with ({} for a path or state dict)."""
    if isinstance(weights, Weights):
        return dict(weights.model_kwargs)
    if isinstance(weights, str) and weights in _WEIGHTS:
        return dict(_WEIGHTS[weights].model_kwargs)
    return {}


def load_weights(model: nn.Module, arch: str, weights, source: str | None = None, trusted: bool = False) -> nn.Module:
    """Load ``weights`` (path, registered name, :class:`Weights` or state dict) into ``model`` strictly, after
    mapping its keys (``source``: the entry's, or ``'auto'``), checking the file's checksum when known and the
    training arguments it records (:func:`check_recorded_arguments`). ``trusted=True`` allows a file that
    pickles its arguments (:func:`read_checkpoint_file`)."""
    entry, what = resolve_weights(weights, arch)
    if isinstance(what, Path):
        if entry is not None and entry.sha256 is not None:
            got = sha256(what)
            if got != entry.sha256:
                raise ValueError(f"{what}: sha256 {got} is not the recorded {entry.sha256} of {entry.name!r}")
        elif entry is not None:
            warnings.warn(f"weights {entry.name!r}: no checksum recorded in sj_sew's table; the file is checked "
                          "by key names and shapes only", stacklevel=3)
        what = read_checkpoint_file(what, trusted)
    source = source or (entry.source if entry is not None else "auto")
    check_recorded_arguments(what, model, arch, source)
    model.load_state_dict(map_state_dict(what, model, source, arch), strict=True)
    return model
