"""The one train/eval loop of sj_sew: every script trains and evaluates through :func:`train_one_epoch`,
:func:`evaluate` and :func:`fit`, spiking nets and plain ANNs alike (``functional.reset_net`` is a no-op
on a net without stateful modules, and a net without neurons reports a firing rate of nan)."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader

from ..analysis.firing import FiringRateMonitor, default_neuron_types
from ..data.transforms import random_temporal_delete
from ..progress import progress_bar
from .distributed import DistEnv, all_reduce_sum, broadcast_buffers, unwrap

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("step", "cosine")


def plateau_epoch(values, patience: int) -> int | None:
    """The validation-plateau rule, the one definition early stopping and the sweeps use: the index of the
    first epoch at which ``values`` (validation accuracy per epoch) has not improved on its best for
    ``patience`` epochs (a tie is no improvement), or None if that never happens."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    best, best_at = -float("inf"), 0
    for i, value in enumerate(values):
        if value > best:
            best, best_at = value, i
        elif i - best_at >= patience:
            return i
    return None


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (in epoch ``epoch``); training stops and the last good checkpoint is kept."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """``sgd`` (with momentum) or ``adam``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {list(OPTIMIZERS)}")


def make_scheduler(name: str, optimizer, epochs: int, step_size: int = 64, gamma: float = 0.1,
                   warmup_epochs: int = 0):
    """Per-epoch schedule: ``step`` (x gamma every step_size epochs) or ``cosine`` (T_max = epochs). With
    ``warmup_epochs`` w, the rate first rises linearly, epoch k of the warm-up getting (k + 1) / (w + 1) of it,
    and the schedule then runs over the remaining epochs."""
    lrs = torch.optim.lr_scheduler
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; valid: {list(SCHEDULERS)}")
    rest = epochs - warmup_epochs
    main = (lrs.StepLR(optimizer, step_size=step_size, gamma=gamma) if name == "step"
            else lrs.CosineAnnealingLR(optimizer, T_max=max(rest, 1)))
    if warmup_epochs <= 0:
        return main
    warmup = lrs.LinearLR(optimizer, start_factor=1 / (warmup_epochs + 1), total_iters=warmup_epochs)
    return lrs.SequentialLR(optimizer, [warmup, main], milestones=[warmup_epochs])


#: ``amp`` -> autocast dtype (True: fp16, as before ``--amp`` took a value).
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, True: torch.float16}


def autocast(device: torch.device, amp):
    """Autocast for ``amp``: ``'fp16'`` (or True) float16 on CUDA, ``'bf16'`` bfloat16 on CUDA or CPU; a no-op
    for False/None and for fp16 off CUDA."""
    if amp not in (False, None) and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be False, 'fp16' or 'bf16', got {amp!r}")
    dtype = AMP_DTYPES.get(amp, torch.float16)
    enabled = bool(amp) and (device.type == "cuda" or dtype is torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def _progress(iterable, enabled: bool, desc: str):
    return progress_bar(iterable, enabled, desc=desc, leave=False, dynamic_ncols=True) if enabled else iterable


def _backward_step(loss: torch.Tensor, optimizer, scaler, clip_grad: float | None = None) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaled = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaled else loss).backward()
    if clip_grad is not None:
        if scaled:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    if scaled:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _check_finite(loss: torch.Tensor, model: nn.Module, env: DistEnv, epoch: int, step: int) -> None:
    finite = bool(torch.isfinite(loss))
    if env.distributed:  # every process must stop together, or the others would wait forever
        finite = all_reduce_sum([float(not finite)], env)[0] == 0
    if not finite:
        functional.reset_net(model)
        raise NonFiniteLossError(f"the loss became {loss.item()} at epoch {epoch}, step {step}", epoch)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer, env: DistEnv | None = None, *, scaler=None,
                    amp: bool | str = False, T_train: int | None = None, epoch: int = 0,
                    progress: bool = True, label_smoothing: float = 0.0, clip_grad: float | None = None) -> dict:
    """One pass over ``loader``: cross-entropy (with ``label_smoothing``) on the model's output (the
    time-averaged logits of an SNN), random temporal delete to ``T_train`` steps for sequences, gradients
    clipped to a global L2 norm of ``clip_grad`` if given, ``reset_net`` after every batch. Returns the mean
    loss and accuracy over all processes. Raises :class:`NonFiniteLossError` (on every process) as soon as a
    loss is NaN or inf."""
    env = env or DistEnv()
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = _progress(loader, progress and env.is_main, f"epoch {epoch} train")
    for step, (x, y) in enumerate(bar):
        x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
        if T_train is not None and x.dim() == 5:
            x = random_temporal_delete(x, T_train, dim=0)
        with autocast(env.device, amp):
            out = model(x)
            loss = F.cross_entropy(out.float(), y, label_smoothing=label_smoothing)
        _check_finite(loss, model, env, epoch, step)
        _backward_step(loss, optimizer, scaler, clip_grad)
        functional.reset_net(model)
        loss_sum += loss.item() * len(y)
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
        if bar is not loader:
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], env)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1)}


def _firing_monitor(net: nn.Module) -> FiringRateMonitor | None:
    """A monitor of ``net``'s neuron layers, or None for a net without any (an ANN)."""
    types = default_neuron_types()
    return FiringRateMonitor(net, types) if any(isinstance(m, types) for m in net.modules()) else None


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, env: DistEnv | None = None, *, amp: bool | str = False,
             progress: bool = False) -> dict:
    """Loss, accuracy and mean firing rate (spikes per neuron-step over every neuron layer; nan for a net
    without neurons) on ``loader``, over all processes."""
    env = env or DistEnv()
    net = unwrap(model)  # no DDP forward: its buffer broadcast would hang when shards have unequal batch counts
    broadcast_buffers(net, env)  # every process judges the model its checkpoint saves (process 0's statistics)
    net.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    monitor = _firing_monitor(net)
    with monitor or contextlib.nullcontext():
        for x, y in _progress(loader, progress and env.is_main, "test"):
            x, y = x.to(env.device, non_blocking=True), y.to(env.device, non_blocking=True)
            with autocast(env.device, amp):
                out = net(x).float()
            functional.reset_net(net)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
    spikes, steps = monitor.totals() if monitor is not None else (0.0, 0)
    loss_sum, correct, seen, spikes, steps = all_reduce_sum([loss_sum, correct, seen, spikes, steps], env)
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1),
            "firing_rate": spikes / steps if steps else float("nan")}


def fit(model: nn.Module, train_loader: Iterable, optimizer, scheduler, env: DistEnv | None = None, *,
        epochs: int, start_epoch: int = 0, test_loader: Iterable | None = None, val_loader: Iterable | None = None,
        scaler=None, amp: bool | str = False, T_train: int | None = None, progress: bool = False,
        label_smoothing: float = 0.0, clip_grad: float | None = None,
        on_epoch: Callable[[dict], None] | None = None, patience: int | None = None,
        history: list[dict] = ()) -> list[dict]:
    """Epochs ``start_epoch .. epochs - 1`` of :func:`train_one_epoch`, :func:`evaluate` on ``val_loader`` and
    ``test_loader`` (each if given) and a scheduler step. Returns one record per epoch (``epoch``,
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``, ``firing_rate`` (on
    the test split), ``lr``, ``epoch_time``), each also passed to ``on_epoch`` as soon as the epoch ends. The
    loaders give ``(x, y)`` batches; a sampler with ``set_epoch`` (distributed) is told the epoch first.

    With ``patience`` (needs ``val_loader``) training stops early, before any epoch, once the validation
    accuracy of the records so far (``history``, the epochs before ``start_epoch`` of a resumed run, then this
    call's) has reached :func:`plateau_epoch`; a resumed run therefore makes the same decision."""
    env = env or DistEnv()
    if patience is not None and val_loader is None:
        raise ValueError("early stopping (patience) needs a validation split")
    records, val_accs = [], [r["val_acc"] for r in history] if patience is not None else []
    for epoch in range(start_epoch, epochs):
        if patience is not None and plateau_epoch(val_accs, patience) is not None:
            break
        tick = time.time()
        set_epoch = getattr(getattr(train_loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(model, train_loader, optimizer, env, scaler=scaler, amp=amp, T_train=T_train,
                                epoch=epoch, progress=progress, label_smoothing=label_smoothing,
                                clip_grad=clip_grad)
        record = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"]}
        if val_loader is not None:
            val = evaluate(model, val_loader, env, amp=amp, progress=progress)
            record.update(val_loss=val["loss"], val_acc=val["acc"])
        if test_loader is not None:
            test = evaluate(model, test_loader, env, amp=amp, progress=progress)
            record.update(test_loss=test["loss"], test_acc=test["acc"], firing_rate=test["firing_rate"])
        scheduler.step()
        record.update(lr=lr, epoch_time=time.time() - tick)
        records.append(record)
        if patience is not None:
            val_accs.append(record["val_acc"])
        if on_epoch is not None:
            on_epoch(record)
    return records
