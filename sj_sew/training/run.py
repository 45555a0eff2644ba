"""One training run from a :class:`~sj_sew.training.config.RunConfig`: build the data and the model,
restore a checkpoint, train epoch by epoch (metrics, atomic checkpoints, best weights), and finish with the
curves and a summary. :mod:`sj_sew.training.cli` (``scripts/train.py``) is its command line."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from .._compat import SJ_VERSION
from .._version import __version__
from ..data import DataError, DatasetFilesError, build_dataset, dataset_info
from ..data.split import validation_split
from ..memory import memory_saving
from ..progress import show_progress
from . import loop
from .build import load_initial_weights, model_from_config
from .checkpoint import (RunWriteError, remove_stale_temps, rng_state, save_checkpoint, seed_everything,
                         set_rng_state, write_failure)
from .checks import DOWNLOAD_OPTION, check_config
from .config import ConfigError, RunConfig
from .distributed import DistEnv, convert_sync_batchnorm, init_distributed, make_eval_loader, make_loaders, unwrap
from .metrics import MetricsLog, plot_curves
from .paths import CONFIG, SUMMARY, default_out
from .resolve import complete


class RunData(NamedTuple):
    """A run's data sets, their loaders, and the number of classes and input side the data holds; the
    validation split (None where ``val_fraction`` is 0) is carved from the training split."""

    train_set: Dataset
    val_set: Dataset | None
    test_set: Dataset
    train_loader: DataLoader
    val_loader: DataLoader | None
    test_loader: DataLoader
    num_classes: int
    input_size: int


@dataclass
class _Session:
    """What the epoch loop works on; ``history`` and ``best`` grow as it goes."""

    cfg: RunConfig
    env: DistEnv
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: bool | str
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "epoch": -1})
    start_epoch: int = 0
    log: MetricsLog | None = None

    @property
    def net(self) -> nn.Module:
        return unwrap(self.model)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def dataset_kwargs(cfg: RunConfig, download: bool = False) -> dict:
    """The keyword arguments that build ``cfg``'s data sets (with the download option only if ``download``)."""
    kwargs = dict(root=cfg.data_root, T=cfg.T, **cfg.data_options)
    if download and cfg.download:
        kwargs[DOWNLOAD_OPTION[cfg.dataset]] = True
    return kwargs


def _dataset(cfg: RunConfig, train: bool, **kwargs) -> Dataset:
    """One split of ``cfg``'s data set; a data-set option the builder refuses (a value out of range, an unknown
    source) is a :class:`ConfigError` naming the flags."""
    try:
        return build_dataset(cfg.dataset, train, **kwargs)
    except (DataError, DatasetFilesError):
        raise
    except (ValueError, TypeError) as e:
        options = " ".join(f"--data-option {k}={v}" for k, v in cfg.data_options.items())
        raise ConfigError(f"--dataset {cfg.dataset} {options}".rstrip() + f": {e}") from None


def carve_validation(cfg: RunConfig, full_train: Dataset) -> tuple[Dataset, Dataset | None]:
    """(training part, validation split or None) of a run's training set, as ``cfg.val_fraction`` says."""
    if cfg.val_fraction <= 0:
        return full_train, None
    try:
        return validation_split(full_train, cfg.val_fraction)
    except ValueError as e:
        raise ConfigError(f"{cfg.dataset}: {e}") from None


SPLITS = ("test", "val", "train")


def split_dataset(cfg: RunConfig, split: str) -> Dataset:
    """One split of a run's data exactly as the run used it (``val``: carved from the training split with the
    run's ``val_fraction``; ``train``: what is left). Never downloads."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if split == "test":
        return _dataset(cfg, False, **dataset_kwargs(cfg))
    train, val = carve_validation(cfg, _dataset(cfg, True, **dataset_kwargs(cfg)))
    if split == "val" and val is None:
        raise ValueError("this run has no validation split (val_fraction 0)")
    return val if split == "val" else train


def build_data(cfg: RunConfig, env: DistEnv) -> RunData:
    """The train, validation and test sets of ``cfg.dataset`` and their (distributed) loaders."""
    info = dataset_info(cfg.dataset)
    kwargs = dataset_kwargs(cfg, download=True)
    full_train = _dataset(cfg, True, **kwargs)
    test_set = _dataset(cfg, False, **kwargs)
    classes = getattr(full_train, "classes", None)
    train_set, val_set = carve_validation(cfg, full_train)
    train_loader, test_loader = make_loaders(train_set, test_set, cfg.batch_size, env, cfg.seed, cfg.workers)
    val_loader = None if val_set is None else make_eval_loader(val_set, cfg.batch_size, env, cfg.workers)
    return RunData(train_set, val_set, test_set, train_loader, val_loader, test_loader,
                   len(classes) if classes else info.num_classes, int(full_train[0][0].shape[-1]))


def build_model(cfg: RunConfig, env: DistEnv, initial_weights: bool = True) -> nn.Module:
    """The model on ``env.device``: ``cfg.weights`` loaded (with ``initial_weights``; a resumed run takes its
    checkpoint's), memory saving, SyncBatchNorm and DDP as ``cfg`` and ``env`` ask."""
    model = model_from_config(cfg)
    if cfg.weights is not None and initial_weights:
        note = load_initial_weights(model, cfg)
        if env.is_main:
            print(note, flush=True)
    model = model.to(env.device)
    if cfg.memory_saving:
        model = memory_saving(model)
    if cfg.sync_bn and env.distributed:
        model = convert_sync_batchnorm(model)
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return model


def _session(cfg: RunConfig, env: DistEnv, resuming: bool = False) -> _Session:
    model = build_model(cfg, env, initial_weights=not resuming)
    optimizer = loop.make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    scheduler = loop.make_scheduler(cfg.scheduler, optimizer, cfg.epochs, cfg.step_size, cfg.gamma,
                                    cfg.warmup_epochs)
    amp = cfg.amp if (cfg.amp == "bf16" or env.device.type == "cuda") else False  # fp16 autocast: CUDA only
    if cfg.amp and not amp and env.is_main:
        print(f"note: --amp {cfg.amp} needs CUDA (--amp bf16 also runs on CPU); training in float32 on",
              env.device, flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")  # bf16 has float32's range: no loss scaling
    return _Session(cfg, env, model, optimizer, scheduler, scaler, amp)


def _replan_schedule(s: _Session, planned_epochs: int) -> None:
    """The schedule of a run resumed with another ``epochs``: the learning rate of every epoch from here on
    is the one a fresh run of the new length would have (cosine annealing then ends at the new last epoch)."""
    for group in s.optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    s.scheduler = loop.make_scheduler(s.cfg.scheduler, s.optimizer, s.cfg.epochs, s.cfg.step_size, s.cfg.gamma,
                                      s.cfg.warmup_epochs)
    for _ in range(s.start_epoch):
        s.scheduler.step()
    if s.env.is_main:
        print(f"note: --epochs {s.cfg.epochs} instead of the planned {planned_epochs}: the {s.cfg.scheduler} "
              f"schedule is re-planned for {s.cfg.epochs} epochs (lr now {s.optimizer.param_groups[0]['lr']:.3g})",
              flush=True)


def _restore(s: _Session, state: dict) -> None:
    s.net.load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    s.scaler.load_state_dict(state["scaler"])
    s.history, s.best, s.start_epoch = state["history"], state["best"], state["epoch"] + 1
    set_rng_state(state["rng"])
    planned = state["config"]["epochs"]
    if planned != s.cfg.epochs:
        _replan_schedule(s, planned)
    if s.env.is_main:
        print(f"resumed from {s.out / 'checkpoint.pt'} at epoch {s.start_epoch}", flush=True)


def _save(s: _Session, epoch: int, improved: bool) -> None:
    config, weights = s.cfg.to_dict(), s.net.state_dict()
    state = {"config": config, "epoch": epoch, "model": weights, "optimizer": s.optimizer.state_dict(),
             "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(), "rng": rng_state(),
             "history": s.history, "best": s.best, "sj_sew_version": __version__, "spikingjelly_version": SJ_VERSION}
    if improved:  # best.pt first: a kill between the two writes leaves best.pt ahead, never behind, of the
        # best epoch that checkpoint.pt records, and the resumed run rewrites it identically
        save_checkpoint({"config": config, "epoch": epoch, "model": weights, "best": s.best},
                        s.out / "best.pt")
    save_checkpoint(state, s.out / "checkpoint.pt")


def _select(s: _Session, record: dict) -> bool:
    """Whether this epoch becomes the selected one: a higher validation accuracy (the earlier epoch wins
    ties); without a validation split, every epoch (the last is reported). Never the test split."""
    if "val_acc" not in record:
        improved = True
    else:
        improved = record["val_acc"] > s.best.get("val_acc", -1.0)
    if improved:
        s.best = {"val_acc": record.get("val_acc"), "test_acc": record["test_acc"], "epoch": record["epoch"]}
    return improved


def _epoch_line(record: dict) -> str:
    val = f"val acc {record['val_acc']:.4f} | " if "val_acc" in record else ""
    return (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f} | {val}"
            f"test loss {record['test_loss']:.4f} acc {record['test_acc']:.4f} | firing {record['firing_rate']:.4f}"
            f" | lr {record['lr']:.3g} | {record['epoch_time']:.1f}s")


def _end_epoch(s: _Session, record: dict) -> None:
    s.history.append(record)
    improved = _select(s, record)
    if not s.env.is_main:
        return
    s.log.log(record)
    _save(s, record["epoch"], improved)
    print(_epoch_line(record), flush=True)


def _train(s: _Session, data: RunData) -> None:
    cfg = s.cfg
    try:
        loop.fit(s.model, data.train_loader, s.optimizer, s.scheduler, s.env, epochs=cfg.epochs,
                 start_epoch=s.start_epoch, test_loader=data.test_loader, val_loader=data.val_loader,
                 scaler=s.scaler, amp=s.amp, T_train=cfg.T_train, progress=show_progress(cfg.progress),
                 label_smoothing=cfg.label_smoothing, clip_grad=cfg.clip_grad,
                 on_epoch=lambda record: _end_epoch(s, record), patience=cfg.patience, history=list(s.history))
    except loop.NonFiniteLossError as e:
        kept = (f"the last good checkpoint is {s.out / 'checkpoint.pt'} (epoch {e.epoch - 1})" if e.epoch > 0
                else "no checkpoint was written")
        raise loop.NonFiniteLossError(f"stopping: {e}; {kept}. Lower --lr or use --zero-init, then start again "
                                      f"(or --resume from that checkpoint).", e.epoch) from None
    except RunWriteError as e:  # raised by _end_epoch, before checkpoint.pt took this epoch
        epoch, saved = s.history[-1]["epoch"], s.history[-2]["epoch"] if len(s.history) > 1 else None
        then = (f"Then continue from {s.out / 'checkpoint.pt'} (epoch {saved}) with: python scripts/train.py "
                f"--resume --out {s.out}" if saved is not None else "Then start the run again")
        raise type(e)(f"stopping at epoch {epoch}: {e}. {then}") from e.__cause__


def summarize(history: list[dict], best: dict, cap: int | None = None, patience: int | None = None) -> dict:
    """A run's reported numbers: test accuracy at the last epoch and at the validation-selected epoch (the
    last epoch where there is no validation split). ``best_test_acc``, the maximum test accuracy over epochs,
    is a selection on the test split, kept only to compare with results made before the validation split.
    With ``patience``, also the early-stopping record: ``stop_epoch`` (the last epoch trained) and
    ``stopped_early`` (whether the plateau rule ended the run before the cap of ``cap`` epochs)."""
    stopping = {} if patience is None else {"patience": patience, "stop_epoch": None, "stopped_early": False}
    if not history:
        return {"last_test_acc": None, "selected_epoch": None, "selected_test_acc": None, "selected_val_acc": None,
                "best_test_acc": None, "epochs": 0, **stopping}
    if patience is not None:
        plateau = loop.plateau_epoch([r["val_acc"] for r in history], patience)
        stopping.update(stop_epoch=history[-1]["epoch"],
                        stopped_early=plateau is not None and (cap is None or len(history) < cap))
    selected = next(r for r in history if r["epoch"] == best["epoch"])
    return {"last_test_acc": history[-1]["test_acc"], "selected_epoch": best["epoch"],
            "selected_test_acc": selected["test_acc"], "selected_val_acc": selected.get("val_acc"),
            "best_test_acc": max(r["test_acc"] for r in history), "epochs": len(history), **stopping}


def run_record(cfg: RunConfig) -> dict:
    """What ``config.json`` holds: the resolved configuration (every default, T, input size and classes), the
    network alone, and the versions that ran it. ``--config <run>/config.json`` starts the run again."""
    return {"config": cfg.to_dict(), "network": cfg.network(), "sj_sew_version": __version__,
            "spikingjelly_version": SJ_VERSION, "torch_version": torch.__version__}


def _write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` by write-then-rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        raise RunWriteError(f"could not write {path}: {write_failure(path, e)}") from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _note_if_unwritten(write) -> None:
    """Run ``write``; at the end of a run, whose checkpoints are all saved, a file that cannot be written is a
    note, not a failure."""
    try:
        write()
    except RunWriteError as e:
        print(f"note: {e}; the run's checkpoints are complete", file=sys.stderr, flush=True)


def _hparam(value):
    return value if isinstance(value, (int, float, str, bool)) else json.dumps(value, default=str)


def _log_hparams(s: _Session, summary: dict) -> None:
    """The run's settings and reported accuracies in TensorBoard's hparams view (beside its scalars)."""
    if not s.history:
        return
    metrics = {f"hparam/{k}": summary[k] for k in ("selected_test_acc", "last_test_acc", "selected_val_acc")
               if isinstance(summary.get(k), (int, float))}
    s.log.log_hparams({k: _hparam(v) for k, v in s.cfg.to_dict().items()}, metrics)


def _finish(s: _Session, started: float) -> dict:
    out, history = s.out, s.history
    summary = {**summarize(history, s.best, s.cfg.epochs, s.cfg.patience), "out": str(out),
               "metrics": str(out / "metrics.jsonl"),
               "plot": str(out / "curves.png"), "checkpoint": str(out / "checkpoint.pt"),
               "best_checkpoint": str(out / "best.pt"), "wall_time_s": time.time() - started}
    if s.env.is_main:
        _note_if_unwritten(lambda: _write_json(out / SUMMARY, {**summary, "config": s.cfg.to_dict()}))
        _log_hparams(s, summary)
        s.log.close()
        if history:
            _note_if_unwritten(lambda: plot_curves(
                history, out / "curves.png", title=f"{s.cfg.preset}: {s.cfg.model or s.cfg.notation}",
                selected_epoch=summary["selected_epoch"] if s.cfg.val_fraction > 0 else None))
            chosen = "validation-selected" if s.cfg.val_fraction > 0 else "last (no validation split)"
            if summary.get("stopped_early"):
                print(f"stopped early after epoch {summary['stop_epoch']}: no better validation accuracy for "
                      f"{s.cfg.patience} epochs (cap {s.cfg.epochs})", flush=True)
            print(f"test accuracy: last epoch {summary['last_test_acc']:.4f}; {chosen} epoch "
                  f"{summary['selected_epoch']}: {summary['selected_test_acc']:.4f}", flush=True)
        print(f"metrics: {summary['metrics']}\nplot: {summary['plot']}\ncheckpoint: {summary['checkpoint']} "
              f"(selected weights: {summary['best_checkpoint']})\nwall time: {summary['wall_time_s']:.0f}s", flush=True)
    if s.env.distributed:
        torch.distributed.destroy_process_group()
    return summary


def run(cfg: RunConfig, state: dict | None = None) -> dict:
    """Train as ``cfg`` says (build it with :func:`~sj_sew.training.config.resolve_config`, which applies the
    presets), continuing from checkpoint ``state`` (as :func:`~sj_sew.training.load_checkpoint` returns it)
    if given. Writes ``<out>/metrics.jsonl``, ``checkpoint.pt`` and ``best.pt`` every epoch and ``curves.png``
    at the end; returns the summary (last and best test accuracy, paths, wall time). Raises
    :class:`~sj_sew.training.NonFiniteLossError` when the loss stops being finite."""
    started = time.time()
    cfg = complete(dataclasses.replace(cfg))
    check_config(cfg)
    if cfg.out is None:
        cfg = dataclasses.replace(cfg, out=default_out(cfg.preset))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    env = init_distributed(cfg.device)
    if env.is_main:
        print(f"config: {cfg.to_dict()}", flush=True)
    seed_everything(cfg.seed)
    data = build_data(cfg, env)
    s = _session(dataclasses.replace(cfg, num_classes=data.num_classes, input_size=data.input_size), env,
                 resuming=state is not None)
    if state is not None:
        _restore(s, state)
    if env.is_main:
        remove_stale_temps(s.out)
        _write_json(s.out / CONFIG, run_record(s.cfg))
        s.log = MetricsLog(s.out, s.history, cfg.tensorboard)
        val = f"{len(data.val_set)} validation / " if data.val_set is not None else ""
        print(f"{cfg.dataset}: {len(data.train_set)} train / {val}{len(data.test_set)} test; model "
              f"{cfg.model or cfg.notation} ({sum(p.numel() for p in s.net.parameters())} parameters) on "
              f"{env.device} x {env.world_size}", flush=True)
        if env.world_size > 1:  # --batch-size is per process and the learning rate is not scaled
            print(f"batch: {cfg.batch_size} per process x {env.world_size} processes = {cfg.batch_size * env.world_size}"
                  f" per optimizer step (lr {cfg.lr}, not scaled)", flush=True)
    _train(s, data)
    return _finish(s, started)
