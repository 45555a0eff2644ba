"""A trained model back from its checkpoint: :func:`load_checkpoint` and the architecture check behind it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
from spikingjelly.activation_based import base

from ..analysis import FiringRateMonitor
from ..blocks import ResidualBlock
from .build import model_from_config
from .checkpoint import CheckpointError, read_checkpoint
from .checks import check_data_root, check_network
from .config import ConfigError, RunConfig
from .distributed import DistEnv, make_eval_loader
from .loop import evaluate
from .paths import run_file
from .run import split_dataset


class LoadedRun(NamedTuple):
    """A trained model (eval mode, weights loaded strictly), its run configuration and the epoch it holds."""

    model: nn.Module
    config: RunConfig
    epoch: int


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file ``path`` means to load from (see :func:`~sj_sew.training.paths.run_file`)."""
    return run_file(path, "load")


def architecture(model: nn.Module) -> dict[str, str]:
    """What defines a network beyond its parameter shapes: block families and connect functions, neuron
    classes and their settings, T, input channels and classes. Two models with equal state-dict shapes but
    different entries here compute different functions."""
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    neurons = [m for m in model.modules() if isinstance(m, base.MemoryModule)]
    settings = ("v_threshold", "v_reset", "tau", "decay", "decay_input", "detach_reset", "levels", "thresholds")

    def neuron_entry(m) -> str:
        values = ", ".join(f"{k}={getattr(m, k)!r}" for k in settings if isinstance(getattr(m, k, None), (int, float, bool, tuple)))
        sg = type(getattr(m, "surrogate_function", None)).__name__
        return f"{type(m).__name__}({values}, surrogate={sg})"

    return {
        "class": type(model).__name__,
        "families": ", ".join(sorted({b.family for b in blocks})),
        "connect": ", ".join(sorted({b.connect.name for b in blocks if b.has_connect})),
        "neurons": "; ".join(sorted({neuron_entry(m) for m in neurons})),
        "T": repr(getattr(model, "T", None)),
        "in_channels": repr(getattr(model, "in_channels", None)),
        "num_classes": repr(getattr(model, "num_classes", None)),
    }


def check_same_architecture(expected: nn.Module, model: nn.Module, path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming every field in which ``model`` differs from the network the
    checkpoint at ``path`` was trained as (``expected``)."""
    mine, theirs = architecture(model), architecture(expected)
    differ = [f"{k}: checkpoint {theirs[k]}, model {mine[k]}" for k in theirs if mine[k] != theirs[k]]
    if differ:
        raise CheckpointError(f"{path} was trained as another network; differing: " + " | ".join(differ))


def load_checkpoint(path: str | Path, model: nn.Module | None = None, map_location="cpu",
                    backend: str = "auto") -> LoadedRun:
    """The trained model a run checkpoint (or run directory) holds, rebuilt from its stored network with its
    weights loaded strictly, in eval mode, on any machine: only what the network is counts, never how the run
    ran (its device, kernels, precision, workers, data root or output folder). ``backend`` picks this
    machine's neuron kernels. Given ``model``, the weights go into it instead, after checking that it is the
    same network (another g, neuron, family, T ... is refused, naming what differs)."""
    path = checkpoint_path(path)
    state = read_checkpoint(path, map_location)
    try:
        cfg = RunConfig.from_dict(state["config"])
        check_network(cfg)
    except ConfigError as e:
        raise CheckpointError(f"{path} describes a network this sj_sew cannot build: {e}") from None
    built = model_from_config(cfg, backend=backend)
    if model is not None:
        check_same_architecture(built, model, path)
        built = model
    try:
        built.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: its weights do not fit the network: {str(e).splitlines()[0]}") from None
    return LoadedRun(built.eval(), cfg, int(state.get("epoch", -1)))


def evaluate_checkpoint(path: str | Path, split: str = "test", batch_size: int | None = None, device: str = "cpu",
                        firing_rates: bool = False, progress: bool = False, data_root: str | None = None) -> dict:
    """Loss and accuracy of a trained run's model on one split of its data (and, with ``firing_rates``, the
    firing rate of every neuron layer), with where it came from. ``data_root`` is where the data set's files
    are on this machine (default: where the run read them)."""
    loaded = load_checkpoint(path)
    cfg = loaded.config
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    try:
        check_data_root(dataclasses.replace(cfg, download=False))
    except ConfigError as e:
        raise ConfigError(f"{e}. The run was trained on data set {cfg.dataset!r} from {cfg.data_root!r}; give "
                          f"the directory that holds it on this machine (--data-root DIR)") from None
    dataset = split_dataset(cfg, split)
    if len(dataset) == 0:
        raise ValueError(f"the {split} split of {cfg.dataset!r} is empty")
    env = DistEnv(device=torch.device(device))
    model = loaded.model.to(env.device)
    loader = make_eval_loader(dataset, batch_size or cfg.batch_size, env)
    result = {"checkpoint": str(checkpoint_path(path)), "epoch": loaded.epoch, "split": split,
              "samples": len(dataset), "dataset": cfg.dataset, "model": cfg.model or cfg.notation}
    if firing_rates:
        with FiringRateMonitor(model) as monitor:
            stats = evaluate(model, loader, env, progress=progress)
        result["layer_firing_rates"] = monitor.rates()
    else:
        stats = evaluate(model, loader, env, progress=progress)
    return {**result, **stats}
