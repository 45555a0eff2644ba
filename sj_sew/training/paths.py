"""Which file a run directory means, where a new run writes, and whether it may: the one resolver of run paths."""
from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from .checkpoint import CheckpointError

#: A run directory's files: the last epoch's full state (resumable) and the validation-selected weights.
LAST, SELECTED = "checkpoint.pt", "best.pt"
CONFIG, SUMMARY = "config.json", "summary.json"


def run_file(path: str | Path, purpose: str = "load") -> Path:
    """The checkpoint ``path`` means. A file is itself. A run directory means, to ``'load'`` (evaluate,
    export, fine-tune from), its ``best.pt`` (the validation-selected weights) if it has one, else its
    ``checkpoint.pt``; to ``'resume'``, its ``checkpoint.pt`` (the only file with the optimizer state).
    Raises :class:`CheckpointError` saying what the directory holds instead, and for a run stopped before its
    first checkpoint was complete, how to start it again."""
    if purpose not in ("load", "resume"):
        raise ValueError(f"purpose must be 'load' or 'resume', got {purpose!r}")
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise CheckpointError(f"no checkpoint or run directory at {path}")
        return path
    names = (LAST,) if purpose == "resume" else (SELECTED, LAST)
    for name in names:
        if (path / name).is_file():
            return path / name
    if (path / CONFIG).is_file() or (path / "metrics.jsonl").is_file():
        raise CheckpointError(
            f"{path} holds a run that stopped before its first checkpoint was complete: there is nothing to "
            f"{'resume' if purpose == 'resume' else 'load'}. Start it again from its recorded configuration with\n"
            f"  {restart_command(path)}")
    raise CheckpointError(f"{path} holds no checkpoint ({' or '.join(names)}) and is not a run directory")


def restart_command(out: str | Path) -> str:
    """The command that starts the run in ``out`` again from its recorded ``config.json``."""
    return f"python scripts/train.py --config {Path(out) / CONFIG} --out {out}"


def holds_run(directory: str | Path) -> bool:
    """Whether ``directory`` holds a run's resumable checkpoint."""
    return (Path(directory) / LAST).exists()


def default_out(preset: str) -> str:
    """``runs/<preset>-<date>-<time>``: where a run without ``out`` writes."""
    return str(Path("runs") / f"{preset}-{datetime.now():%Y%m%d-%H%M%S}")


def out_problem(out: str | Path) -> str | None:
    """Why ``out`` cannot be a run directory (not a directory, not writable), or None; creates nothing that
    stays (a probe directory is made and removed in the nearest existing parent)."""
    if not str(out).strip():
        return "must name a directory, got ''"
    path = Path(out)
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a directory"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".sj_sew-probe-").cleanup()
    except OSError as e:
        return f"{path} is not writable (cannot create a directory in {existing}: {e.strerror or e})"
    return None
