"""Checkpoints that survive a kill and say when they are damaged, and the random state that makes a resumed
run equal an uninterrupted one.

Every checkpoint carries a SHA-256 of its content (:func:`state_digest`: tensors by dtype, shape and bytes,
everything else by value, independent of how ``torch.save`` lays it out); :func:`read_checkpoint` verifies it
and turns every way a file can be unusable into one :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
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


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: missing, damaged, or not an sj_sew run checkpoint."""


class RunWriteError(RuntimeError):
    """A run's output file (checkpoint, metrics, plot) could not be written: disk full, directory read-only..."""


class CheckpointWriteError(CheckpointError, RunWriteError):
    """A checkpoint could not be written; the file already at its path (the last good checkpoint) is unchanged."""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def write_failure(path: Path, error: OSError) -> str:
    """Why writing ``path`` failed, in words that say what to do: the free space for a full disk, the directory
    for a permission problem, else the system's message."""
    directory = path.parent
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = _size(shutil.disk_usage(directory).free)
        except OSError:
            free = "unknown"
        return f"{error.strerror or 'no space left'} ({free} free on the file system of {directory}); free some space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{directory} is not writable ({error.strerror or error}); make it writable"
    return f"{error.strerror or error} (errno {error.errno})" if error.errno else str(error)


class _RecordedWrites:
    """A file wrapper that keeps the first OSError of its writes: ``torch.save`` reports a failed write as a
    RuntimeError of its own ("unexpected pos"), which names neither the cause nor the file."""

    def __init__(self, f):
        self.f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"V{type(value).__name__}:{value!r};".encode())


def state_digest(state: dict) -> str:
    """SHA-256 of a checkpoint's content, its ``checksum`` entry left out."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def temp_name(path: Path) -> Path:
    """The temporary file :func:`save_checkpoint` writes before renaming it over ``path``."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``directory``; returns what was removed (a file
    that cannot be removed, in a read-only directory, stays: it is never read)."""
    removed = []
    for p in map(Path, glob.glob(str(Path(directory) / ".*.pt.tmp*"))):
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` (with its checksum added) so that ``path`` always holds a complete checkpoint: write a
    temporary file in the same directory, fsync it, then atomically rename it over ``path``. A kill at any
    moment leaves either the previous checkpoint or the new one (and maybe a temporary file, which
    :func:`remove_stale_temps` clears). A write that fails (disk full, directory read-only) raises
    :class:`CheckpointWriteError` saying why, and leaves the previous checkpoint in place."""
    path = Path(path)
    tmp = temp_name(path)
    state = {**state, "checksum": state_digest(state)}
    recorded = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            recorded = _RecordedWrites(f)
            torch.save(state, recorded)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # a read-only directory refuses the clean-up too
            tmp.unlink(missing_ok=True)
        cause = recorded.error if recorded is not None and recorded.error is not None else e
        if not isinstance(cause, OSError):
            raise
        kept = (f"the last good checkpoint {path} is kept unchanged" if path.is_file()
                else f"no earlier checkpoint exists at {path}")
        raise CheckpointWriteError(f"could not write the checkpoint {path}: {write_failure(path, cause)}; "
                                   f"{kept}") from cause
    _fsync_directory(path.parent)  # make the rename itself durable


def read_checkpoint(path: str | Path, map_location="cpu", require: tuple[str, ...] = ("config", "model")) -> dict:
    """A checkpoint's content, loaded with ``weights_only=True`` (tensors and plain types only, no code runs)
    and checked: readable, a dict holding ``require``, checksum equal where it has one (checkpoints from
    before checksums have none). Raises :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the write that made it did not finish")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for damaged files; all mean the same to the user
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or damaged?): "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not an sj_sew checkpoint")
    missing = [k for k in require if k not in state]
    if missing:
        hint = (" It looks like a bare state_dict (weights only): load it with model.load_state_dict."
                if all(isinstance(v, torch.Tensor) for v in state.values()) else "")
        raise CheckpointError(f"{path} is not an sj_sew run checkpoint: it lacks {missing}.{hint}")
    if "checksum" in state and state["checksum"] != state_digest(state):
        raise CheckpointError(f"{path} is damaged: its content does not match its checksum")
    return state
