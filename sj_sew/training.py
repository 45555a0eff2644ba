"""Reusable training machinery: epochs, evaluation, checkpoints that survive a kill, exact resume,
distributed data parallel, metrics and curves. ``scripts/train.py`` is the program built on it."""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .analysis.firing import FiringRateMonitor
from .data.transforms import random_temporal_delete, time_first_collate

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("step", "cosine")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


# --- reproducibility ---------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The states of Python's, NumPy's and torch's global generators, as types ``torch.load(weights_only=True)``
    accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- checkpoints -------------------------------------------------------------------------------------
def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` so that ``path`` always holds a complete checkpoint: write a temporary file in the
    same directory, fsync it, then atomically rename it over ``path``. A kill at any moment leaves either
    the previous checkpoint or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain types only, no code runs."""
    return torch.load(path, map_location=map_location, weights_only=True)


# --- distributed -------------------------------------------------------------------------------------
@dataclass
class DistEnv:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistEnv:
    """Set up this process from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): NCCL on
    CUDA, gloo on CPU. Without torchrun, a single process on ``device`` (default: CUDA if present)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if world_size == 1:
        return DistEnv(0, 1, dev)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), dev)


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=env.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


class ShardSampler(Sampler):
    """Every ``world_size``-th index from ``rank``, in order, no padding: each sample evaluated exactly once."""

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, len(dataset), world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def make_loaders(train_set: Dataset, test_set: Dataset, batch_size: int, env: DistEnv, seed: int,
                 workers: int = 0) -> tuple[DataLoader, DataLoader]:
    """Loaders giving time-first batches. The training order is a function of (seed, epoch) only
    (``loader.sampler.set_epoch``), the same in one process and across ``world_size`` processes."""
    pin = env.device.type == "cuda"
    train_sampler = DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                       seed=seed)
    common = dict(batch_size=batch_size, num_workers=workers, collate_fn=time_first_collate, pin_memory=pin)
    train = DataLoader(train_set, sampler=train_sampler, **common)
    test = DataLoader(test_set, sampler=ShardSampler(test_set, env.rank, env.world_size), **common)
    return train, test


class MultiStepSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm for SpikingJelly's multi-step ``[T, N, C, ...]`` tensors (folds T into the batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return super().forward(x)


def convert_sync_batchnorm(model: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm2d (multi-step SpikingJelly or plain) by :class:`MultiStepSyncBatchNorm`,
    keeping parameters and running statistics (same state-dict keys). PyTorch's SyncBatchNorm runs on GPU only."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            sync = MultiStepSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats, process_group)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(model, name, sync.to(next(child.parameters(), child.running_mean).device))
        else:
            convert_sync_batchnorm(child, process_group)
    return model


# --- models ------------------------------------------------------------------------------------------
def model_from_config(cfg: dict) -> nn.Module:
    """The model a run configuration (``scripts/train.py``'s, as saved in every checkpoint) describes:
    ``cfg['notation']`` builds a :class:`~sj_sew.models.NotationNet`, else ``cfg['model']`` a registered model.
    Input channels, size and classes come from the data set's info, or from ``cfg['input_size']`` and
    ``cfg['num_classes']`` where the run read them off its data; sequence sets get ``T=None`` (any length),
    static sets the run's T."""
    from .data import dataset_info
    from .models import PAPER_NETS, NotationNet, create_model

    info = dataset_info(cfg["dataset"])
    kwargs = dict(in_channels=info.in_channels, num_classes=cfg.get("num_classes") or info.num_classes,
                  neuron=cfg.get("neuron"), connect=cfg.get("connect"),
                  zero_init_residual=True if cfg.get("zero_init") else None,
                  T=None if info.sequence else cfg["T"], surrogate_function=cfg.get("surrogate"))
    notation = cfg.get("notation")
    if notation is not None or cfg.get("model") in PAPER_NETS:
        kwargs.update(family=cfg.get("family"), input_size=cfg.get("input_size") or info.input_size)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if notation is not None:
        return NotationNet(notation, **kwargs)
    return create_model(cfg["model"], **kwargs)


# --- optimisation ------------------------------------------------------------------------------------
def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")


def make_scheduler(name: str, optimizer, epochs: int, step_size: int = 64, gamma: float = 0.1):
    """Per-epoch schedule: ``step`` (x gamma every step_size epochs) or ``cosine`` (T_max = epochs)."""
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"unknown scheduler {name!r}; valid: {list(SCHEDULERS)}")


def autocast(device: torch.device, enabled: bool):
    """float16 autocast on CUDA when enabled; a no-op otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda")


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer, env: DistEnv, *, scaler=None,
                    amp: bool = False, T_train: int | None = None, epoch: int = 0,
                    progress: bool = True) -> dict:
    """One pass over ``loader``: cross-entropy on the time-averaged logits, random temporal delete to
    ``T_train`` steps for sequences, ``reset_net`` after every batch. Returns the mean loss and accuracy over
    all processes. Raises :class:`NonFiniteLossError` (on every process) as soon as a loss is NaN or inf."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = _progress(loader, progress and env.is_main, f"epoch {epoch} train")
    for step, (x, y) in enumerate(bar):
        x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
        if T_train is not None and x.dim() == 5:
            x = random_temporal_delete(x, T_train, dim=0)
        with autocast(env.device, amp):
            out = model(x)
            loss = F.cross_entropy(out.float(), y)
        finite = bool(torch.isfinite(loss))
        if env.distributed:  # every process must stop together, or the others would wait forever
            finite = all_reduce_sum([float(not finite)], env)[0] == 0
        if not finite:
            functional.reset_net(model)
            raise NonFiniteLossError(f"the loss became {loss.item()} at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        functional.reset_net(model)
        loss_sum += loss.item() * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
        if bar is not loader:
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], env)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, env: DistEnv, *, amp: bool = False,
             progress: bool = False) -> dict:
    """Loss, accuracy and mean firing rate (spikes per neuron-step over every neuron layer) on ``loader``,
    over all processes."""
    net = unwrap(model)  # no DDP forward: its buffer broadcast would hang when shards have unequal batch counts
    net.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with FiringRateMonitor(net) as monitor:
        for x, y in _progress(loader, progress and env.is_main, "test"):
            x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
            with autocast(env.device, amp):
                out = net(x).float()
            functional.reset_net(net)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
    spikes, steps = monitor.totals()
    loss_sum, correct, seen, spikes, steps = all_reduce_sum([loss_sum, correct, seen, spikes, steps], env)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1),
            "firing_rate": spikes / steps if steps else float("nan")}


# --- logging -----------------------------------------------------------------------------------------
class MetricsLog:
    """Per-epoch records to a JSON-lines file and (if importable) TensorBoard. Rewrites the file from
    ``history`` on start, so a resumed run's file holds exactly the epochs of its checkpoint."""

    def __init__(self, out_dir: str | Path, history: list[dict] = (), tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in history))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.writer = None

    def log(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(records: list[dict], path: str | Path, title: str = "") -> None:
    """Loss, accuracy and firing rate against epoch, train and test, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes[:2], ("loss", "acc")):
        for split in ("train", "test"):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in records], marker=".", label=split)
        ax.set(xlabel="epoch", ylabel="accuracy" if key == "acc" else "cross-entropy loss")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[2].plot(epochs, [r["firing_rate"] for r in records], marker=".", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="mean firing rate (test)")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


__all__ = ["NonFiniteLossError", "seed_everything", "rng_state", "set_rng_state", "save_checkpoint",
           "load_checkpoint", "DistEnv", "init_distributed", "all_reduce_sum", "ShardSampler", "make_loaders",
           "MultiStepSyncBatchNorm", "convert_sync_batchnorm", "model_from_config", "make_optimizer", "make_scheduler",
           "train_one_epoch", "evaluate", "MetricsLog", "read_metrics", "plot_curves", "unwrap",
           "OPTIMIZERS", "SCHEDULERS"]
