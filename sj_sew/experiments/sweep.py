"""What the reproduction studies share: grids of training runs through :func:`sj_sew.training.run`, seed
aggregation, where a study writes, and trained nets read back for analysis.

A sweep is resumable: a finished run is read back from ``<out>/summary.json`` instead of trained again, and a
run killed part-way continues from its last checkpoint.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Callable

#: Where a study writes unless told otherwise (untracked): ``runs/<study>``, ``runs/quick/<study>`` for a smoke
#: run. The committed results (``results/<study>``) are written only when ``out`` names them explicitly.
RUNS = Path("runs")


def output_dir(out: Path | None, name: str, quick: bool) -> Path:
    """``out`` as given, else ``runs/<name>`` or, for a ``--quick`` smoke run, ``runs/quick/<name>``: never the
    committed ``results/`` unless asked for."""
    if out is not None:
        return Path(out)
    return RUNS / "quick" / name if quick else RUNS / name


def run_flags(flags: dict, out: Path, seed: int, progress: bool = False) -> dict:
    """The :class:`~sj_sew.training.RunConfig` fields of one sweep run: the cell's ``flags`` with the sweeps'
    common settings (one intra-op thread, as the quickstart preset the sweeps started from; no TensorBoard;
    progress bars only if ``progress``: a sweep's runs print a line per epoch) and its own directory and seed."""
    return {"threads": 1, **flags, "out": str(out), "seed": seed, "progress": progress, "tensorboard": False}


def stop_text(meta: dict) -> str:
    """How long a study's runs trained, for a figure's title: its cap, and its plateau where it has one."""
    if meta.get("patience"):
        return f"to a {meta['patience']}-epoch validation plateau within {meta['epochs']} epochs"
    return f"{meta['epochs']} epochs"


def saved_record(path: Path, key: str, wanted: dict, unrecorded_ok: bool = False) -> dict | None:
    """The finished run's JSON record at ``path`` (None if there is none). Raises ValueError when the settings it
    records under ``key`` are not ``wanted`` (a sweep pointed at another sweep's runs), or when it records none
    and ``unrecorded_ok`` is False; with it True, a record written before settings were recorded is read as it
    is."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    saved, wanted = record.get(key), json.loads(json.dumps(wanted))
    if saved is None and not unrecorded_ok:
        raise ValueError(f"{path} records no {key!r}, so it cannot be told apart from another sweep's run: move it "
                         "away or write this sweep elsewhere")
    if saved is not None and saved != wanted:
        differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        raise ValueError(f"{path} was trained with other settings ({', '.join(differ)} differ): move it away or "
                         "write this sweep elsewhere")
    return record


def train_run(flags: dict, out: Path, seed: int, train: bool = True, progress: bool = False) -> dict | None:
    """One run of the RunConfig fields ``flags`` in ``out/seed<seed>`` (or its saved result); the summary carries
    the history and the device it trained on. With ``train=False`` only a finished run is read back (None if there
    is none). Raises ValueError when the saved run records other flags than ``flags`` (a sweep pointed at another
    sweep's directory)."""
    from sj_sew.training import read_metrics, resolve_run, run

    out = Path(out) / f"seed{seed}"
    done = out / "summary.json"
    summary = saved_record(done, "flags", flags, unrecorded_ok=True)
    if summary is not None:
        return summary
    if not train:
        return None
    resume = "" if (out / "checkpoint.pt").exists() else None
    cfg, state = resolve_run(run_flags(flags, out, seed, progress), None, resume)
    summary = run(cfg, state)
    summary["history"] = read_metrics(out / "metrics.jsonl")
    summary["flags"] = flags
    summary["device"] = device_label(cfg)
    done.write_text(json.dumps(summary, indent=1))
    return summary


def device_label(cfg) -> str:
    """The device a run trained on, as its summary records it: ``cpu``, or ``cuda`` with the GPU's name."""
    import torch

    from sj_sew.training.checks import run_device

    device = run_device(cfg)
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else device


def shard_of(text: str) -> tuple[int, int]:
    """``'K/N'`` -> (K, N): the K-th of N processes that share a sweep. Raises ValueError."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"expected K/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"need 0 <= K < N, got {text!r}")
    return k, n


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation and count (std is nan for one value)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else math.nan,
            "n": len(values), "values": values}


def fmt(s: dict, scale: float = 100.0, digits: int = 1) -> str:
    """'mean ± std (n=k)' for a :func:`spread`."""
    std = "" if math.isnan(s["std"]) else f" ± {s['std'] * scale:.{digits}f}"
    return f"{s['mean'] * scale:.{digits}f}{std} (n={s['n']})"


def load_trained(path: str | Path):
    """(model in eval mode, its run config as a dict, its test set) from a checkpoint written by a training run
    (scripts/train.py or a sweep)."""
    from sj_sew.training import load_checkpoint
    from sj_sew.training.run import split_dataset

    run = load_checkpoint(path)
    return run.model, run.config.to_dict(), split_dataset(run.config, "test")


def setting_name(checkpoint: str | Path) -> str:
    """The sweep cell a checkpoint belongs to: its path between ``runs/`` and ``seed<k>/``, e.g.
    ``SEW_ADD_RTD/lr0.01`` for ``results/ablation/runs/SEW_ADD_RTD/lr0.01/seed0/best.pt`` (outside a sweep:
    the run directory's name)."""
    parts = Path(checkpoint).parent.parts
    if "runs" not in parts:
        return parts[-1] if parts else ""
    last_runs = len(parts) - 1 - parts[::-1].index("runs")
    return "/".join(parts[last_runs + 1:-1]) or parts[-1]


def ablation_checkpoints(results: str | Path) -> list[Path]:
    """``best.pt`` of seed 0 of every setting of an ablation study's directory, at the chosen rate."""
    table = json.loads((Path(results) / "ablation.json").read_text())["table"]
    return [Path(row["checkpoints"][0]) for row in table.values()]


def write_json(path: Path, data: dict, **dump_kwargs) -> Path:
    """``data`` as JSON at ``path`` (its directory made first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, **dump_kwargs))
    return path


def write_study(out: Path, name: str, data: dict, plot, figure_data, meta: dict) -> Path:
    """A study's report: ``<out>/<name>.json`` holding ``data`` and ``<out>/<name>.png`` drawn by
    ``plot(figure_data, path, meta)``; the JSON's path."""
    path = write_json(Path(out) / f"{name}.json", data, indent=1)
    plot(figure_data, Path(out) / f"{name}.png", meta)
    return path


def timestamped_dir(name: str) -> Path:
    """``runs/<name>-<date>-<time>``: the default directory of a one-off study (never a committed file)."""
    from datetime import datetime

    return RUNS / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


#: The seed that chooses a sweep's learning rate and is never reported (the reported seeds are 0, 1, ...).
TUNING_SEED = 1000


def choose_lr(grid: dict[float, dict]) -> float:
    """The learning rate of a grid ``{lr: tuning run's summary}`` whose run reached the highest validation
    accuracy at its selected epoch (the smaller rate on a tie)."""
    return max(sorted(grid), key=lambda lr: (grid[lr]["selected_val_acc"], -lr))


#: the half-decade learning rates a grid is widened along while its choice sits at an edge
LR_LADDER = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def widen_step(tried, choice: float, ladder=LR_LADDER) -> float | None:
    """The rate to try next when ``choice`` is the largest (smallest) of the rates ``tried``: the ladder's rate
    above (below) it; None when the choice is inside, off the ladder, or at the ladder's end."""
    if choice not in ladder:
        return None
    i = ladder.index(choice)
    if choice == max(tried) and i + 1 < len(ladder):
        return ladder[i + 1]
    if choice == min(tried) and i > 0:
        return ladder[i - 1]
    return None


def tuned_grid(probe: Callable[[float], dict | None], lrs, ladder=LR_LADDER) -> tuple[float | None, dict]:
    """The rate chosen by probe runs (:func:`choose_lr`) over ``lrs``, widened by :func:`widen_step` while the
    choice sits at an edge, and the grid ``{lr: probe run}``; ``probe(lr)`` is a finished run's summary or None
    (not run yet, or another process's). The rate is None while a probe is missing."""
    grid, tried = {}, sorted(lrs)
    while True:
        for lr in tried:
            if lr not in grid and (r := probe(lr)) is not None:
                grid[lr] = r
        if len(grid) < len(tried):
            return None, grid
        nxt = widen_step(tried, choose_lr(grid), ladder)
        if nxt is None:
            return choose_lr(grid), grid
        tried = sorted([*tried, nxt])


def tuned_seeds(run: Callable[[float, int, bool], dict | None], lrs, seeds, widen: bool = True):
    """The tuning rule on one setting: ``run(lr, seed, tuning)`` is a finished run's summary or None; the tuning
    seed :data:`TUNING_SEED` over ``lrs`` (:func:`tuned_grid`, widened along :data:`LR_LADDER` when ``widen``),
    then ``seeds`` at the chosen rate. None while the grid is unfinished; else ``(lr, grid, {seed: run})`` with
    the seeds that have finished."""
    lr, grid = tuned_grid(lambda x: run(x, TUNING_SEED, True), lrs, LR_LADDER if widen else ())
    if lr is None:
        return None
    return lr, grid, {seed: r for seed in seeds if (r := run(lr, seed, False)) is not None}


def grid_val_acc(grid: dict[float, dict]) -> dict[str, float]:
    """``{'<lr>': validation accuracy at the selected epoch}`` of a grid ``{lr: probe run}``, as reports keep it."""
    return {f"{lr:g}": grid[lr]["selected_val_acc"] for lr in sorted(grid)}


def reported_seeds(seeds: int, tuning_seed: int | None = TUNING_SEED) -> list[int]:
    """The seeds a study reports: ``0 .. seeds - 1``; the tuning seed (which chose the learning rate) is kept out.
    ``tuning_seed=None`` is the older rule (seed 0 both tunes and is reported)."""
    out = list(range(seeds))
    if tuning_seed is not None and tuning_seed in out:
        raise ValueError(f"the tuning seed {tuning_seed} would also be reported (seeds 0..{seeds - 1})")
    return out


def plateau_stop(history: list[dict], patience: int, cap: int | None = None, key: str = "val_acc") -> dict:
    """The validation-plateau rule (:func:`sj_sew.training.loop.plateau_epoch`, as ``--patience`` applies it
    during training) on a run's per-epoch ``history``: stop after the first epoch at which ``key``
    has not improved on its best for ``patience`` epochs, or at the epoch cap (``cap`` epochs, default all
    recorded). Returns ``{"stop_epoch", "stopped_early", "selected_epoch", "selected_test_acc"}``: the epoch the
    rule stops after and the validation-selected epoch up to it (the earliest on a tie). Epochs before the stop
    are what an early-stopped run trains, so this reads a run trained to the cap exactly as the rule would."""
    from sj_sew.training.loop import plateau_epoch

    epochs = history[:cap] if cap is not None else history
    if not epochs:
        raise ValueError("no epochs recorded")
    stop = plateau_epoch([record[key] for record in epochs], patience)
    stop = len(epochs) - 1 if stop is None else stop
    selected = max(range(stop + 1), key=lambda i: (epochs[i][key], -i))
    return {"stop_epoch": epochs[stop]["epoch"], "stopped_early": stop < len(epochs) - 1,
            "selected_epoch": epochs[selected]["epoch"], "selected_test_acc": epochs[selected].get("test_acc")}
