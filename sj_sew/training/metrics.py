"""Per-epoch records of a run: a JSON-lines file (and TensorBoard), read back, plotted."""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from .checkpoint import RunWriteError, write_failure


class MetricsLog:
    """Per-epoch records to a JSON-lines file and (if importable) TensorBoard. Rewrites the file from
    ``history`` on start, so a resumed run's file holds exactly the epochs of its checkpoint. A record that
    cannot be written (disk full, directory read-only) raises :class:`RunWriteError` and leaves the file as it
    was; TensorBoard is optional: when it cannot write, it stops with a note and the JSON-lines file goes on."""

    def __init__(self, out_dir: str | Path, history: list[dict] = (), tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.jsonl"
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:  # write-then-rename: a failure leaves the records of the run being resumed as they were
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise RunWriteError(f"could not write the metrics file {self.path}: {write_failure(self.path, e)}") \
                from e
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.writer = None
            except Exception as e:
                self._stop_tensorboard(e)

    def _stop_tensorboard(self, error: Exception) -> None:
        print(f"note: TensorBoard logging stopped ({type(error).__name__}: {error}); {self.path} keeps every "
              "record", file=sys.stderr, flush=True)
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()

    def log(self, record: dict) -> None:
        """Append one epoch's record."""
        data = memoryview((json.dumps(record) + "\n").encode())
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    while data:
                        data = data[os.write(fd, data):]
                except OSError:
                    with contextlib.suppress(OSError):  # no torn line left behind
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as e:
            raise RunWriteError(f"could not append epoch {record.get('epoch')} to {self.path}: "
                                f"{write_failure(self.path, e)}") from e
        if self.writer is not None:
            try:
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                        self.writer.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
                self.writer.flush()
            except Exception as e:  # its writes fail in a thread of its own, reported here in many types
                self._stop_tensorboard(e)

    def log_hparams(self, hparams: dict, metrics: dict) -> None:
        """A run's settings and results in TensorBoard's hparams view (nothing without TensorBoard)."""
        if self.writer is not None:
            try:
                self.writer.add_hparams(hparams, metrics, run_name="hparams")
            except Exception as e:
                self._stop_tensorboard(e)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as e:
                self._stop_tensorboard(e)


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order. A last line cut short by a kill is left out; any other
    line that is not a record raises ValueError naming the file and line."""
    text = Path(path).read_text()
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a write that did not finish
                break
            raise ValueError(f"{path}, line {number}, is not a metrics record ({e})") from None
    return records


def plot_curves(records: list[dict], path: str | Path, title: str = "", selected_epoch: int | None = None) -> None:
    """Loss, accuracy and firing rate against epoch (train, validation where present, test) to a PNG; a
    dashed line marks ``selected_epoch``. Raises :class:`RunWriteError` if the file cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes[:2], ("loss", "acc")):
        for split in ("train", "val", "test"):
            if f"{split}_{key}" in records[0]:
                ax.plot(epochs, [r[f"{split}_{key}"] for r in records], marker=".", label=split)
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="grey", linestyle="--", linewidth=1, label="selected")
        ax.set(xlabel="epoch", ylabel="accuracy" if key == "acc" else "cross-entropy loss")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[2].plot(epochs, [r["firing_rate"] for r in records], marker=".", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="mean firing rate (test)")
    axes[2].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise RunWriteError(f"could not write the plot {path}: {write_failure(Path(path), e)}") from e
    finally:
        plt.close(fig)
