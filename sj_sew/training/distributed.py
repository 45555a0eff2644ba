"""Distributed data parallel: process setup from torchrun, reductions, samplers, loaders, SyncBatchNorm."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data.transforms import time_first_collate


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


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < (1 if name == "WORLD_SIZE" else 0):
        raise ValueError(f"the environment variable {name}={text!r} is not a valid {name.lower().replace('_', ' ')}; "
                         "start distributed runs with torchrun, which sets it")
    return value


def init_distributed(device: str | None = None) -> DistEnv:
    """Set up this process from torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``): NCCL on
    CUDA, gloo on CPU. Without torchrun, a single process on ``device`` (default: CUDA if present)."""
    world_size = _env_int("WORLD_SIZE", 1)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if world_size == 1:
        return DistEnv(0, 1, dev)
    local_rank = _env_int("LOCAL_RANK", 0)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"this is process {local_rank} on its machine (LOCAL_RANK) but the machine has "
                             f"{torch.cuda.device_count()} GPU(s); start at most that many with torchrun "
                             "--nproc_per_node")
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


def broadcast_buffers(model: nn.Module, env: DistEnv) -> None:
    """Give every process process 0's buffers (BatchNorm running statistics), the ones its checkpoint saves.
    Without SyncBatchNorm each process updates them from its own shard at its last training step, so an
    evaluation on every process's shard would otherwise judge a slightly different model on each."""
    if not env.distributed:
        return
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer.data, src=0)


def _loader_options(batch_size: int, env: DistEnv, workers: int) -> dict:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (per process), got {batch_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    return dict(batch_size=batch_size, num_workers=workers, collate_fn=time_first_collate,
                pin_memory=env.device.type == "cuda")


def _check_not_empty(dataset: Dataset, role: str) -> None:
    if len(dataset) == 0:
        raise ValueError(f"the {role} data set ({type(dataset).__name__}) is empty: nothing to load")


def make_eval_loader(dataset: Dataset, batch_size: int, env: DistEnv, workers: int = 0) -> DataLoader:
    """A loader giving this process's shard of ``dataset`` in order, time-first, each sample exactly once."""
    options = _loader_options(batch_size, env, workers)
    _check_not_empty(dataset, "evaluation")
    return DataLoader(dataset, sampler=ShardSampler(dataset, env.rank, env.world_size), **options)


def make_loaders(train_set: Dataset, test_set: Dataset, batch_size: int, env: DistEnv, seed: int,
                 workers: int = 0) -> tuple[DataLoader, DataLoader]:
    """Loaders giving time-first batches. The training order is a function of (seed, epoch) only
    (``loader.sampler.set_epoch``), the same in one process and across ``world_size`` processes."""
    options = _loader_options(batch_size, env, workers)
    _check_not_empty(train_set, "training")
    train_sampler = DistributedSampler(train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                       seed=seed)
    train = DataLoader(train_set, sampler=train_sampler, **options)
    return train, make_eval_loader(test_set, batch_size, env, workers)


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


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
