"""The schema of a training run: :class:`RunConfig`, which of its fields define the network and which only say
how and where it ran, and configuration files.

Checkpoints store a config as a plain dict (:meth:`RunConfig.to_dict`) so that ``torch.load(weights_only=True)``
reads it back; :meth:`RunConfig.from_dict` accepts the dicts of every earlier checkpoint. How flags, presets and
files resolve into one config is :mod:`.resolve`; what is checked before a run starts is :mod:`.checks`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..neurons import close_matches


class ConfigError(ValueError):
    """A run configuration that cannot run; the message names the command-line flag at fault."""


@dataclass
class RunConfig:
    """Everything that defines a training run.

    ``num_classes`` and ``input_size`` are read off the data by :func:`sj_sew.training.run` (None until then);
    ``T`` is resolved to the data set's default where it has one. ``val_fraction`` of each class of the training
    split is held out as the validation split that selects the best epoch (0: no validation split, the last
    epoch is the reported one). ``progress`` None shows progress bars only when the output is a terminal.
    ``amp`` is False, ``'fp16'`` (autocast + GradScaler, CUDA) or ``'bf16'`` (autocast, CUDA or CPU); True, as
    earlier checkpoints store it, means ``'fp16'``. ``patience`` stops the run early once the validation accuracy
    has not improved for that many epochs (:func:`~sj_sew.training.loop.plateau_epoch`; None: train all
    ``epochs``, which stay the cap). ``weights`` starts the run from trained weights (a run
    directory, a checkpoint file or a name in the weights table: fine-tuning). ``warmup_epochs`` ramps the
    learning rate linearly up over that many epochs; ``clip_grad`` clips the gradients' global L2 norm.
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
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    clip_grad: float | None = None
    weights: str | None = None
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
    patience: int | None = None
    preset: str = "quickstart"
    num_classes: int | None = None
    input_size: int | None = None

    def to_dict(self) -> dict:
        """Plain types only, as checkpoints store it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The config a dict describes (a checkpoint's; keys it lacks take their defaults)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown run configuration keys {unknown}{_field_hint(unknown)}")
        values = dict(values)
        values.setdefault("val_fraction", 0.0)  # runs from before the validation split had none
        return cls(**values)

    def network(self) -> dict:
        """The fields that define the trained network (:data:`NETWORK_FIELDS`): all that loading, evaluating and
        exporting its weights need, on any machine."""
        return {k: getattr(self, k) for k in NETWORK_FIELDS}

    def __post_init__(self):
        self.amp = normalize_amp(self.amp)


FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))

#: What the network is: its builder's arguments, and the data set whose channels it takes (read from the
#: registry, not from files). Everything else says how and where it was trained.
NETWORK_FIELDS = ("dataset", "model", "notation", "family", "connect", "neuron", "surrogate", "T", "zero_init",
                  "num_classes", "input_size")

#: How and where a run ran: the machine's choices. They never stop a run from being loaded elsewhere.
MACHINE_FIELDS = ("data_root", "download", "out", "workers", "device", "threads", "sync_bn", "amp", "backend",
                  "memory_saving", "tensorboard", "progress")


def _field_hint(names) -> str:
    return close_matches(list(names), FIELDS)


#: ``--amp`` values: float16 autocast with loss scaling, bfloat16 autocast.
AMP_MODES = ("fp16", "bf16")


def normalize_amp(amp):
    """``False`` for no mixed precision (False/None/'no'/'off'), ``'fp16'`` for True (earlier configs), else
    ``amp`` as given (the checks reject values outside :data:`AMP_MODES`)."""
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("no", "off", "none", "false")):
        return False
    if amp is True:
        return "fp16"
    return amp.lower() if isinstance(amp, str) else amp


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


def _toml():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        raise ConfigError("TOML configuration files need Python 3.11 or later (tomllib); give the settings as "
                          "flags or in a JSON file") from None
    return tomllib


def read_config_file(path: str | Path) -> dict:
    """The settings a configuration file holds: TOML (``key = value``, keys as RunConfig fields or as the
    command line spells them, ``lr = 0.01``, ``batch-size = 16``; a ``preset`` key picks the preset), or a run
    directory's ``config.json`` (so ``--config runs/x/config.json`` starts that run again). Unknown keys are one
    :class:`ConfigError` naming the close matches."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            values = json.loads(text)
            values = values.get("config", values)  # a run's config.json nests it beside the network
        else:
            values = _toml().loads(text)
    except ValueError as e:
        raise ConfigError(f"--config {path} does not parse: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path} must hold a table of settings")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    if values.get("data_options") is not None and not isinstance(values["data_options"], dict):
        raise ConfigError(f"--config {path}: data_options must be a table (data_options = {{ per_class = 100 }})")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"--config {path}: unknown settings {unknown}{_field_hint(unknown)}")
    return values
