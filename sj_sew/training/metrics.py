"""Per-epoch records of a run: a JSON-lines file (and TensorBoard), read back, plotted."""
from __future__ import annotations

import json
import math
from pathlib import Path


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
        """Append one epoch's record."""
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
    """The records of a ``metrics.jsonl`` file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(records: list[dict], path: str | Path, title: str = "", selected_epoch: int | None = None) -> None:
    """Loss, accuracy and firing rate against epoch (train, validation where present, test) to a PNG; a
    dashed line marks ``selected_epoch``."""
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
