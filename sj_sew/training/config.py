"""The configuration of a training run: its schema, the SEW paper's recipes, and how flags resolve into one.

A run is described by a :class:`RunConfig`. Checkpoints store it as a plain dict (:meth:`RunConfig.to_dict`)
so that ``torch.load(weights_only=True)`` reads it back; :meth:`RunConfig.from_dict` accepts the dicts of
every earlier checkpoint. :func:`resolve_config` layers defaults, a preset (or a checkpoint's config) and
explicitly given values, and :func:`check_config` rejects what would fail only after the data or the
model were built; both raise :class:`ConfigError`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import torch.nn as nn

from ..neurons import close_matches
from .checkpoint import read_checkpoint


class ConfigError(ValueError):
    """A run configuration that cannot run; the message names the command-line flag at fault."""


#: The quick start's net: a 7B-Net-like SEW ResNet (ADD) for the 16x16 emulated sensor (3 blocks, 16 -> 2 pixels).
QUICKSTART_NET = "c16k3s1-BN-PLIF-{SEW Block(c16)-MPk2s2}*3-FC10"


@dataclass
class RunConfig:
    """Everything that defines a training run; the defaults hold under every preset.

    ``num_classes`` and ``input_size`` are read off the data by :func:`sj_sew.training.run` (None until then).
    ``val_fraction`` of each class of the training split is held out as the validation split that selects the
    best epoch (0: no validation split, the last epoch is the reported one). ``progress`` None shows progress
    bars only when the output is a terminal. ``amp`` is False, ``'fp16'`` (autocast + GradScaler, CUDA) or
    ``'bf16'`` (autocast, CUDA or CPU); True, as earlier checkpoints store it, means ``'fp16'``.
    """

    dataset: str = "events"
    data_root: str | None = None
    download: bool = False
    data_options: dict = field(default_factory=dict)
    model: str | None = None
    notation: str | None = None
    family: str | None = None
    connect: str | None = None
    neuron: str | None = None
    surrogate: str | None = None
    T: int | None = None
    T_train: int | None = None
    lr: float | None = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    step_size: int = 64
    gamma: float = 0.1
    epochs: int = 10
    batch_size: int = 32
    amp: bool | str = False
    backend: str = "auto"
    zero_init: bool = False
    seed: int = 0
    out: str | None = None
    workers: int = 0
    device: str | None = None
    threads: int | None = None
    sync_bn: bool = False
    memory_saving: bool = False
    tensorboard: bool = True
    progress: bool | None = None
    val_fraction: float = 0.1
    preset: str = "quickstart"
    num_classes: int | None = None
    input_size: int | None = None

    def to_dict(self) -> dict:
        """Plain types only, as checkpoints store it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The config a dict describes (a checkpoint's; keys it lacks take their defaults)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown run configuration keys {unknown}")
        values = dict(values)
        values.setdefault("val_fraction", 0.0)  # runs from before the validation split had none
        return cls(**values)

    def __post_init__(self):
        self.amp = normalize_amp(self.amp)


#: ``--amp`` values: float16 autocast with loss scaling, bfloat16 autocast.
AMP_MODES = ("fp16", "bf16")


def normalize_amp(amp):
    """``False`` for no mixed precision (False/None/'no'/'off'), ``'fp16'`` for True (earlier configs), else
    ``amp`` as given (:func:`check_config` rejects values outside :data:`AMP_MODES`)."""
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("no", "off", "none", "false")):
        return False
    if amp is True:
        return "fp16"
    return amp.lower() if isinstance(amp, str) else amp


#: SEW paper, Table 8: learning rate of each network on DVS128 Gesture (SEW by g, else by family).
DVS_GESTURE_LR = {"ADD": 0.001, "AND": 0.03, "IAND": 0.063, "spiking": 0.1, "plain": 0.005}

PRESETS = {
    # the main job: seconds to build the data, a few minutes to train on 2 CPU cores, >= 90% test accuracy
    # (one intra-op thread: these small convs gain little from more, and spinning OpenMP threads slow to a
    # crawl when other jobs share the CPU)
    "quickstart": dict(dataset="events", notation=QUICKSTART_NET, T=4, optimizer="adam", lr=0.003,
                       scheduler="cosine", epochs=10, batch_size=16, zero_init=True, threads=1),
    # Tables 7 and 8: 7B-Net, T = 16, random temporal delete to 12, SGD, StepLR(64, 0.1), 192 epochs
    "dvs128_gesture": dict(dataset="dvs128_gesture", model="net7b", T=16, T_train=12, optimizer="sgd",
                           momentum=0.9, lr=None, scheduler="step", step_size=64, gamma=0.1, epochs=192,
                           batch_size=16, amp=True, workers=4),
    # Tables 6 and 7: Wide-7B-Net, SGD 0.01, cosine T_max = 64, 64 epochs, no random temporal delete
    "cifar10_dvs": dict(dataset="cifar10_dvs", model="wide_net7b", T=16, optimizer="sgd", momentum=0.9,
                        lr=0.01, scheduler="cosine", epochs=64, batch_size=16, workers=4),
    # Table 7 and Sec. 4.1: SEW ResNet with IF neurons, T = 4, SGD 0.1, cosine T_max = 320, 320 epochs, AMP
    "imagenet": dict(dataset="imagenet", model="sew_resnet18", neuron="if", T=4, optimizer="sgd", momentum=0.9,
                     lr=0.1, scheduler="cosine", epochs=320, batch_size=32, amp=True, workers=8),
    # Appendix A.5 (Table 9): the lightweight CIFAR-10 net; the paper tunes lr per surrogate and does not give
    # T, epochs or batch size: these values are our choice
    "cifar10_surrogate": dict(dataset="cifar10", model="surrogate_net", T=4, optimizer="sgd", momentum=0.9,
                              lr=0.1, scheduler="cosine", epochs=64, batch_size=64, workers=4),
}

#: Data sets that can be downloaded (only with ``download``), and the builder option that allows it.
DOWNLOAD_OPTION = {"cifar10": "download", "dvs128_gesture": "allow_download", "cifar10_dvs": "allow_download"}

#: Settings that may differ from the checkpoint's configuration when resuming.
RESUME_MAY_CHANGE = ("epochs", "workers", "device", "threads", "out", "progress", "tensorboard", "backend")


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_data_options(pairs: list[str]) -> dict:
    """``['KEY=VALUE', ...]`` (``--data-option``) as a dict; values become int, float, bool or None where
    they read as one."""
    bad = [s for s in pairs if "=" not in s]
    if bad:
        raise ConfigError(f"--data-option takes KEY=VALUE, got {bad}")
    return {k: _parse_value(v) for k, v in (s.split("=", 1) for s in pairs)}


#: What a run is called that no preset describes: ``--dataset``, ``--model`` or ``--notation`` without ``--preset``.
CUSTOM = "custom"

#: The flags that describe a run of one's own: given without ``--preset``, no preset applies.
OWN_RUN_FLAGS = ("dataset", "model", "notation")

PRESET_RULE = """\
Presets: --preset NAME applies that recipe. Without --preset, the quickstart preset applies only when none of
--dataset, --model and --notation is given; a run that sets one of them starts from the plain defaults of
sj_sew.training.RunConfig (SGD, lr 0.1, batch 32, ...) and is called 'custom'. Explicit flags override both."""


def preset_for(flags: dict, preset: str | None) -> str:
    """The preset a new run with explicitly given ``flags`` uses: ``preset`` if given, else quickstart when
    ``flags`` name no data set or net (:data:`OWN_RUN_FLAGS`), else :data:`CUSTOM` (no preset)."""
    if preset is not None:
        return preset
    return CUSTOM if any(k in flags for k in OWN_RUN_FLAGS) else "quickstart"


def _preset_config(flags: dict, preset: str) -> dict:
    if preset != CUSTOM and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid: {sorted(PRESETS)}")
    cfg = {**RunConfig().to_dict(), **PRESETS.get(preset, {}), **flags, "preset": preset}
    if "model" in flags and "notation" not in flags:  # one picks the net; the other's preset value goes
        cfg["notation"] = None
    if "notation" in flags and "model" not in flags:
        cfg["model"] = None
    if cfg["lr"] is None and preset == "dvs128_gesture":
        family = cfg["family"] or "sew"
        net = (cfg["connect"] or "ADD").upper() if family == "sew" else family
        if net not in DVS_GESTURE_LR:
            raise ConfigError(f"the SEW paper gives no DVS128 Gesture learning rate for {net!r} (Table 8 has "
                              f"{sorted(DVS_GESTURE_LR)}): give --lr")
        cfg["lr"] = DVS_GESTURE_LR[net]
    return cfg


def _resumed_config(flags: dict, preset: str | None, saved: dict) -> dict:
    saved = RunConfig.from_dict(saved).to_dict()
    if preset is not None and preset != saved["preset"]:
        raise ConfigError(f"--preset {preset} differs from the checkpoint's preset {saved['preset']}")
    changed = sorted(k for k, v in flags.items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v)
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming (only {list(RESUME_MAY_CHANGE)}); "
                          "start a new run with a new --out instead")
    return {**saved, **flags}


def resolve_config(flags: dict, preset: str | None = None, saved: dict | None = None) -> RunConfig:
    """Defaults <- ``preset`` (see :func:`preset_for`: quickstart unless ``flags`` set the data set or the net),
    or the checkpoint config ``saved`` when resuming, <- the explicitly given ``flags`` (RunConfig fields;
    ``data_options`` as a dict or as ``KEY=VALUE`` strings); then :func:`check_config`. Raises :class:`ConfigError`."""
    flags = dict(flags)
    if isinstance(flags.get("data_options"), (list, tuple)):
        flags["data_options"] = parse_data_options(flags["data_options"])
    if saved is not None:
        cfg = RunConfig.from_dict(_resumed_config(flags, preset, saved))
    else:
        cfg = RunConfig.from_dict(_preset_config(flags, preset_for(flags, preset)))
    check_config(cfg)
    return cfg


def locate_checkpoint(resume: str, out: str | None) -> Path:
    """The checkpoint ``--resume`` names: a file, a run directory's ``checkpoint.pt``, or (``resume=''``)
    ``out``'s."""
    if not (resume or out):
        raise ConfigError("--resume needs a checkpoint or run directory: --resume PATH, or --resume with --out DIR")
    target = Path(resume or out)
    path = target / "checkpoint.pt" if target.is_dir() or not target.suffix else target
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}")
    return path


def default_out(preset: str) -> str:
    """``runs/<preset>-<date>-<time>``: where a run without ``out`` writes."""
    return str(Path("runs") / f"{preset}-{datetime.now():%Y%m%d-%H%M%S}")


def resolve_run(flags: dict, preset: str | None = None, resume: str | None = None) -> tuple[RunConfig, dict | None]:
    """The run that explicitly given settings describe: (its config, the checkpoint state it continues from,
    or None). ``resume`` is a checkpoint or run directory, '' for ``flags['out']``'s, or None for a new run,
    whose ``out`` defaults to ``runs/<preset>-<time>`` and must not hold a run yet."""
    flags, state = dict(flags), None
    if resume is not None:
        path = locate_checkpoint(resume, flags.get("out"))
        state = read_checkpoint(path)
        if "optimizer" not in state:
            raise ConfigError(f"{path} holds weights only (no optimizer state; best.pt is the selected epoch's "
                              f"weights): resume from the run's checkpoint.pt, or evaluate this file with "
                              f"scripts/evaluate.py")
        out = Path(flags.setdefault("out", str(path.parent)))
        if out.resolve() != path.parent.resolve() and (out / "checkpoint.pt").exists():
            raise ConfigError(f"--out {out} already holds another run; resuming {path} there would overwrite it. "
                              f"Choose an empty --out, or leave --out out to continue in {path.parent}")
    cfg = resolve_config(flags, preset, state["config"] if state else None)
    if cfg.out is None:
        cfg.out = default_out(cfg.preset)
        check_out(cfg.out)
    if state is None and (Path(cfg.out) / "checkpoint.pt").exists():
        raise ConfigError(f"{Path(cfg.out)} already holds a run; continue it with --resume or choose another --out")
    return cfg, state


def _check_model(cfg: RunConfig) -> None:
    from ..models import PAPER_NETS, list_models

    if cfg.model is not None and cfg.model not in list_models():
        raise ConfigError(f"unknown model {cfg.model!r}; valid: {list_models()}")
    if cfg.model is None and cfg.notation is None:
        raise ConfigError(f"give --model (one of {list_models()}) or --notation")
    if cfg.model is not None and cfg.notation is not None:
        raise ConfigError("give either --model or --notation, not both")
    if cfg.family is not None and cfg.notation is None and cfg.model not in PAPER_NETS:
        raise ConfigError(f"--family applies to notation nets ({sorted(PAPER_NETS)} or --notation); for ResNets "
                          f"choose the family by name, e.g. --model {cfg.model.replace('sew_', 'spiking_')}")
    if cfg.notation is not None or cfg.model in PAPER_NETS:
        _check_notation_net(cfg)


def _check_notation_net(cfg: RunConfig) -> None:
    """Build a notation net (small) as the run would, so that a notation that does not parse or does not fit
    the data set's input fails now, naming the flag. Skipped where ``--data-option``s may change the input
    size; the global random state is left as it was."""
    from ..models import parse_notation

    flag = "--notation" if cfg.notation is not None else f"--model {cfg.model}"
    if cfg.notation is not None:
        if not isinstance(cfg.notation, str) or not cfg.notation.strip():
            raise ConfigError(f"--notation must be a network in the paper's notation, got {cfg.notation!r}")
        try:
            parse_notation(cfg.notation)
        except ValueError as e:
            raise ConfigError(f"--notation {cfg.notation!r} does not parse: {e}") from None
    if cfg.data_options or cfg.input_size is not None:
        return
    try:
        with torch.random.fork_rng(devices=[]):
            model_from_config(cfg)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{flag} cannot be built for data set {cfg.dataset!r}: {e}") from None


def _check_numbers(cfg: RunConfig) -> None:
    from .loop import OPTIMIZERS, SCHEDULERS

    for key, valid in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
        if getattr(cfg, key) not in valid:
            raise ConfigError(f"unknown {key} {getattr(cfg, key)!r}; valid: {list(valid)}")
    for key in ("epochs", "batch_size", "step_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(cfg, key)}")
    if cfg.lr is None or not 0 < cfg.lr < math.inf:
        raise ConfigError(f"--lr must be > 0 and finite, got {cfg.lr}")
    for key in ("momentum", "weight_decay"):
        value = getattr(cfg, key)
        if not 0 <= value < math.inf:
            raise ConfigError(f"--{key.replace('_', '-')} must be a finite number >= 0, got {value}")
    if cfg.momentum >= 1:
        raise ConfigError(f"--momentum must be < 1 (SGD momentum; 0.9 in the paper), got {cfg.momentum}")
    if not 0 < cfg.gamma < math.inf:
        raise ConfigError(f"--gamma (the StepLR factor) must be a finite number > 0, got {cfg.gamma}")
    if cfg.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {cfg.threads}")


def _check_data_options(cfg: RunConfig) -> None:
    from ..data import dataset_options

    valid = dataset_options(cfg.dataset)
    unknown = sorted(set(cfg.data_options) - set(valid))
    if unknown:
        hint = close_matches(unknown, valid, "{match}= for {name}=")
        reserved = [k for k in unknown if k in ("root", "T", "train")]
        if reserved:
            hint += f"; {reserved} are set by --data-root/--T, not --data-option"
        raise ConfigError(f"--data-option {unknown[0]}={cfg.data_options[unknown[0]]!r}: data set {cfg.dataset!r} "
                          f"takes no option {unknown}; valid: {valid or 'none'}{hint}")


def _check_data_root(cfg: RunConfig) -> None:
    root = Path(cfg.data_root)
    if not str(cfg.data_root).strip():
        raise ConfigError("--data-root must name a directory, got ''")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--data-root {root} is a file; give the directory that holds the data set's files")
    if not root.exists() and not cfg.download:
        raise ConfigError(f"--data-root {root} does not exist; give the directory that holds the "
                          f"{cfg.dataset} files" + (" (or add --download)" if cfg.dataset in DOWNLOAD_OPTION else ""))
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"--data-root {root} is not readable")


def _check_data(cfg: RunConfig) -> None:
    from ..data import dataset_info

    try:
        info = dataset_info(cfg.dataset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    T = cfg.T if cfg.T is not None else info.default_T
    if T is None:
        raise ConfigError(f"static data set {cfg.dataset!r} needs --T (how many time steps each image is shown), "
                          "e.g. --T 4")
    if T < 1:
        raise ConfigError(f"--T must be >= 1, got {cfg.T}")
    if cfg.T_train is not None:
        if not info.sequence:
            raise ConfigError(f"--T-train (random temporal delete) applies to sequence data sets, not {cfg.dataset!r}")
        if not 1 <= cfg.T_train <= T:
            raise ConfigError(f"--T-train must be in [1, T={T}], got {cfg.T_train}")
    if cfg.download and cfg.dataset not in DOWNLOAD_OPTION:
        raise ConfigError(f"--download applies to {sorted(DOWNLOAD_OPTION)}; {cfg.dataset!r} is embedded or "
                          "never downloaded")
    if info.needs_root and not cfg.data_root:
        raise ConfigError(f"data set {cfg.dataset!r} is not embedded: give --data-root DIR with its files")
    if cfg.data_root is not None:
        _check_data_root(cfg)
    _check_data_options(cfg)


def _check_device(cfg: RunConfig) -> None:
    if cfg.device is None:
        return
    valid = "cpu, cuda or cuda:N"
    try:
        dev = torch.device(cfg.device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {cfg.device!r} is not a device; valid: {valid}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {cfg.device!r}: sj_sew trains on {valid}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {cfg.device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def _check_amp(cfg: RunConfig) -> None:
    if cfg.amp is not False and cfg.amp not in AMP_MODES:
        raise ConfigError(f"--amp {cfg.amp!r} is not a precision; valid: {', '.join(AMP_MODES)} "
                          "(--amp alone means fp16; --no-amp for float32)")


def check_out(out: str | Path) -> None:
    """Raise :class:`ConfigError` unless ``out`` is (or can be made) a writable run directory; creates nothing
    that stays (a probe directory is made and removed in the nearest existing parent)."""
    if not str(out).strip():
        raise ConfigError("--out must name a directory, got ''")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a directory; choose another --out")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {path}: {existing} is a file, not a directory; choose another --out")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".sj_sew-probe-").cleanup()
    except OSError as e:
        raise ConfigError(f"--out {path} is not writable (cannot create a directory in {existing}: "
                          f"{e.strerror or e}); choose another --out") from None


def _check_backend(cfg: RunConfig) -> None:
    from ..neurons import BACKENDS, NeuronSpec

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown --backend {cfg.backend!r}; valid: {list(BACKENDS)}")
    if cfg.backend in ("auto", "torch"):
        return
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        raise ConfigError(f"--backend {cfg.backend} runs GPU kernels; on {device} use --backend auto or torch")
    try:
        NeuronSpec("if", cfg.backend)
    except (ValueError, RuntimeError, ImportError) as e:
        raise ConfigError(f"--backend {cfg.backend}: {e}") from None


def check_config(cfg: RunConfig) -> None:
    """Raise :class:`ConfigError` for every error that would otherwise surface after the data or the model
    were built."""
    _check_numbers(cfg)
    _check_data(cfg)
    _check_device(cfg)
    _check_amp(cfg)
    _check_backend(cfg)
    _check_model(cfg)
    if cfg.out is not None:
        check_out(cfg.out)
    if cfg.sync_bn and (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu"):
        raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on CPU")


def model_from_config(cfg: RunConfig | dict) -> nn.Module:
    """The model a run configuration describes (a :class:`RunConfig`, or the dict every checkpoint holds):
    ``notation`` builds a :class:`~sj_sew.models.NotationNet`, else ``model`` a registered model. Input
    channels, size and classes come from the data set's info, or from ``input_size`` and ``num_classes``
    where the run read them off its data; sequence sets get ``T=None`` (any length), static sets the run's T."""
    from ..data import dataset_info
    from ..models import PAPER_NETS, NotationNet, create_model

    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    info = dataset_info(cfg.dataset)
    kwargs = dict(in_channels=info.in_channels, num_classes=cfg.num_classes or info.num_classes,
                  neuron=cfg.neuron, connect=cfg.connect, zero_init_residual=True if cfg.zero_init else None,
                  T=None if info.sequence else cfg.T, surrogate_function=cfg.surrogate,
                  backend=None if cfg.backend == "auto" else cfg.backend)
    if cfg.notation is not None or cfg.model in PAPER_NETS:
        kwargs.update(family=cfg.family, input_size=cfg.input_size or info.input_size)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if cfg.notation is not None:
        return NotationNet(cfg.notation, **kwargs)
    return create_model(cfg.model, **kwargs)
