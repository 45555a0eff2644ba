"""The network a run configuration describes, and the trained weights a run may start from (fine-tuning)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn as nn

from ..data import dataset_info
from ..models import PAPER_NETS, NotationNet, create_model
from ..models.weights import (CheckpointMismatch, check_recorded_arguments, list_weights, map_state_dict,
                              read_checkpoint_file, resolve_weights, unwrap_checkpoint)
from .checkpoint import CheckpointError, read_checkpoint
from .config import ConfigError, RunConfig
from .paths import run_file


def model_from_config(cfg: RunConfig | dict, backend: str | None = None) -> nn.Module:
    """The model a run configuration describes (a :class:`RunConfig`, or the dict every checkpoint holds):
    ``notation`` builds a :class:`~sj_sew.models.NotationNet`, else ``model`` a registered model. Input
    channels, size and classes come from the data set's info, or from ``input_size`` and ``num_classes``
    where the run read them off its data; sequence sets get ``T=None`` (any length), static sets the run's T.
    Only the network's fields are read; ``backend`` (default: the config's) picks the neuron kernels."""
    if isinstance(cfg, dict):
        cfg = RunConfig.from_dict(cfg)
    backend = cfg.backend if backend is None else backend
    info = dataset_info(cfg.dataset)
    kwargs = dict(in_channels=info.in_channels, num_classes=cfg.num_classes or info.num_classes,
                  neuron=cfg.neuron, connect=cfg.connect, zero_init_residual=True if cfg.zero_init else None,
                  T=None if info.sequence else cfg.T, surrogate_function=cfg.surrogate,
                  backend=None if backend == "auto" else backend)
    if cfg.notation is not None or cfg.model in PAPER_NETS:
        kwargs.update(family=cfg.family, input_size=cfg.input_size or info.input_size)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if cfg.notation is not None:
        return NotationNet(cfg.notation, **kwargs)
    return create_model(cfg.model, **kwargs)


def classifier_name(model: nn.Module) -> str | None:
    """The name of ``model``'s last linear layer (its classifier), or None."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _is_run(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return True


def _foreign_state(cfg: RunConfig, model: nn.Module) -> dict:
    """A file or weights-table entry mapped onto ``cfg``'s architecture (its own number of classes kept)."""
    if cfg.model is None:
        raise ConfigError(f"--weights {cfg.weights}: a file or a weights-table name maps onto a registered "
                          "architecture: give --model (a notation net fine-tunes from an sj_sew run directory)")
    try:
        entry, what = resolve_weights(cfg.weights, cfg.model)
        loaded = read_checkpoint_file(what) if isinstance(what, Path) else what
        raw = unwrap_checkpoint(loaded)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise ConfigError(f"--weights {cfg.weights}: {e}".replace("trusted=True", "scripts/convert_checkpoint.py "
                                                                  "--trusted, then give its output")) from None
    except RuntimeError as e:
        raise ConfigError(f"--weights {cfg.weights}: {str(e).splitlines()[0]}".replace(
            "pass trusted=True", "convert it first with scripts/convert_checkpoint.py --trusted")) from None
    head = classifier_name(model)
    classes = [v.shape[0] for k, v in raw.items() if head and k.endswith(f"{head}.weight") and v.dim() == 2]
    twin = model
    if classes and classes[0] != model.get_submodule(head).out_features:
        with torch.random.fork_rng(devices=[]):
            twin = model_from_config(dataclasses.replace(cfg, num_classes=classes[0]), backend="auto")
    try:
        check_recorded_arguments(loaded, twin, cfg.model)  # the net the file says it holds is the one asked for
        return map_state_dict(raw, twin, entry.source if entry is not None else "auto", cfg.model)
    except CheckpointMismatch as e:
        hint = f" (weights-table names for {cfg.model}: {list_weights(cfg.model)})" if list_weights(cfg.model) else ""
        raise ConfigError(f"--weights {cfg.weights} do not fit --model {cfg.model}: {e}{hint}") from None


def load_initial_weights(model: nn.Module, cfg: RunConfig) -> str:
    """Load ``cfg.weights`` (a run directory or sj_sew checkpoint, a checkpoint file of a source that
    :mod:`sj_sew.models.weights` maps, or a weights-table name) into ``model``: every tensor, except a classifier
    of another number of classes, which keeps its initialisation. Returns a line saying what was loaded."""
    path = Path(cfg.weights)
    if path.exists() and _is_run(path):
        source = run_file(path, "load")
        state = read_checkpoint(source)["model"]
    else:
        source, state = cfg.weights, _foreign_state(cfg, model)
    head = classifier_name(model)
    own = model.state_dict()
    kept = [k for k in own if head and k.startswith(f"{head}.") and k in state and state[k].shape != own[k].shape]
    differ = sorted(set(own) ^ set(state)) + [k for k in own if k in state and k not in kept
                                               and state[k].shape != own[k].shape]
    if differ:
        raise ConfigError(f"--weights {source} were trained as another network: differing keys or shapes "
                          f"{differ[:6]}{' ...' if len(differ) > 6 else ''}")
    model.load_state_dict({k: (own[k] if k in kept else v) for k, v in state.items()}, strict=True)
    note = f"; classifier {head} ({own[f'{head}.weight'].shape[0]} classes) starts fresh" if kept else ""
    return f"weights: {len(state) - len(kept)} tensors from {source}{note}"
