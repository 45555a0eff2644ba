"""ANN-to-SNN conversion on real data: train a small ANN ResNet, convert it with S-ResNet
(:mod:`sj_sew.conversion`) and with SpikingJelly's ann2snn, and compare test accuracy against T beside the ANN's.
``scripts/convert.py`` is its command line."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..progress import show_progress

DATASETS = ("digits", "fashion_mnist")


def load_tensors(name: str, train_size: int | None = None, test_size: int | None = None, seed: int = 0):
    """(x_train, y_train, x_test, y_test) as float images [N, 1, H, W] in [0, 1], with the splits of
    :func:`sj_sew.data.build_dataset` (digits: fixed per-class 75/25; Fashion-MNIST: official 60000/10000);
    optional random subsets."""
    from ..data import build_dataset

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {list(DATASETS)}")

    def whole(train: bool):
        data = build_dataset(name, train)
        return next(iter(DataLoader(data, batch_size=len(data))))

    (x_tr, y_tr), (x_te, y_te) = whole(True), whole(False)
    g = torch.Generator().manual_seed(seed)
    if train_size is not None and train_size < len(y_tr):
        keep = torch.randperm(len(y_tr), generator=g)[:train_size]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if test_size is not None and test_size < len(y_te):
        keep = torch.randperm(len(y_te), generator=g)[:test_size]
        x_te, y_te = x_te[keep], y_te[keep]
    return x_tr, y_tr, x_te, y_te


def run_conversion(dataset="digits", train_size=None, test_size=None, depth=8, widths=(16, 32, 64), epochs=15,
                   lr=3e-3, batch_size=64, percentile=99.9, sj_mode="99.9%", time_steps=(8, 16, 32, 64, 128, 256),
                   seed=0, progress: bool | None = None) -> dict:
    """Train, convert with both converters, and return every setting and accuracy (progress bars as
    :func:`sj_sew.progress.show_progress` says)."""
    from .. import conversion as C
    from .._compat import SJ_VERSION

    progress = show_progress(progress)
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_tensors(dataset, train_size, test_size, seed)
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True, generator=g)
    calibration = DataLoader(TensorDataset(x_tr, y_tr), batch_size=256)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=500)
    ann = C.ann_resnet(depth, widths=tuple(widths), in_channels=x_tr.shape[1], num_classes=int(y_tr.max()) + 1)
    started = time.time()
    C.train_ann(ann, train, epochs, lr)
    train_seconds = time.time() - started
    ann_acc = C.ann_accuracy(ann, test)
    print(f"ANN test accuracy {ann_acc:.4f} ({train_seconds:.0f} s training)", flush=True)
    started = time.time()
    sresnet = C.accuracy_vs_time(C.convert(ann, calibration, percentile), test, time_steps, progress)
    sresnet_seconds = time.time() - started
    print("S-ResNet:", {t: round(a, 4) for t, a in sresnet.items()}, flush=True)
    started = time.time()
    sj_snn = C.AccumulatedOutput(C.spikingjelly_convert(ann, calibration, sj_mode))
    spikingjelly = C.accuracy_vs_time(sj_snn, test, time_steps, progress)
    sj_seconds = time.time() - started
    print(f"SpikingJelly {SJ_VERSION} ann2snn:", {t: round(a, 4) for t, a in spikingjelly.items()}, flush=True)
    return {
        "setting": {"dataset": dataset, "train_size": len(y_tr), "test_size": len(y_te), "ann": f"ann_resnet{depth}",
                    "widths": list(widths), "epochs": epochs, "optimizer": f"Adam lr {lr}, cosine", "batch_size": batch_size,
                    "seed": seed, "percentile": percentile, "spikingjelly_mode": sj_mode,
                    "spikingjelly_version": SJ_VERSION, "readout": "spike count + output membrane (S-ResNet); "
                    "summed analog output of the last layer (SpikingJelly)", "input": "analog image as constant current"},
        "ann_accuracy": ann_acc,
        "sresnet_accuracy": {str(t): a for t, a in sresnet.items()},
        "spikingjelly_accuracy": {str(t): a for t, a in spikingjelly.items()},
        "seconds": {"train": round(train_seconds, 1), "sresnet_eval": round(sresnet_seconds, 1),
                    "spikingjelly_convert_eval": round(sj_seconds, 1)},
    }


def plot(result: dict, path: Path) -> None:
    """Test accuracy against T of both converters, the ANN's as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label, marker in (("sresnet_accuracy", "S-ResNet (sj_sew)", "o"),
                               ("spikingjelly_accuracy", f"SpikingJelly {result['setting']['spikingjelly_version']} ann2snn", "s")):
        steps = [int(t) for t in result[key]]
        ax.plot(steps, [100 * result[key][str(t)] for t in steps], marker=marker, label=label)
    ax.axhline(100 * result["ann_accuracy"], color="k", ls="--", lw=1, label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    s = result["setting"]
    ax.set_title(f"{s['dataset']} ({s['train_size']}/{s['test_size']}), {s['ann']}, p = {s['percentile']}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
