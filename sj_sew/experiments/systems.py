"""The competing residual SNNs on real data, in bounded CPU time: MS-ResNet accuracy against depth, DS-ResNet
with MLF (K = 3) against single-level neurons (K = 1), and the ANN-to-SNN conversion curve
(:mod:`.conversion`). ``scripts/compare_systems.py`` is its command line."""
from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..progress import progress_bar

#: fraction of each class of the training split held out to select the epoch (the same for every seed)
VAL_FRACTION = 0.1


def train_snn(model: str, model_kwargs: dict, data, T: int, epochs: int, lr: float, batch_size: int, seed: int,
              label: str, progress: bool | None = None) -> dict:
    """Adam + cosine schedule, cross-entropy on the mean-over-T logits (sj_sew.training.fit); validation and
    test accuracy after every epoch; the epoch is selected by validation accuracy (the earliest on ties)."""
    from ..data.split import validation_split
    from ..models import create_model
    from ..training import fit, make_optimizer, make_scheduler

    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    net = create_model(model, num_classes=int(y_tr.max()) + 1, in_channels=x_tr.shape[1], T=T, **model_kwargs)
    g = torch.Generator().manual_seed(seed)
    train_set, val_set = validation_split(TensorDataset(x_tr, y_tr), VAL_FRACTION)
    train = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g)
    val = DataLoader(val_set, batch_size=500)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=500)
    opt = make_optimizer("adam", net.parameters(), lr)
    started = time.time()
    with progress_bar(total=epochs, enabled=progress, desc=label, leave=False) as bar:
        records = fit(net, train, opt, make_scheduler("cosine", opt, epochs), epochs=epochs, test_loader=test,
                      val_loader=val, on_epoch=lambda _: bar.update())
    selected = max(records, key=lambda r: (r["val_acc"], -r["epoch"]))
    test_acc = [r["test_acc"] for r in records]
    result = {"model": model, "kwargs": model_kwargs, "depth": getattr(net, "depth", None),
              "params": sum(p.numel() for p in net.parameters()), "T": T, "epochs": epochs, "seed": seed,
              "train_size": len(train_set), "val_size": len(val_set),
              "selected_epoch": selected["epoch"], "selected_test_accuracy": selected["test_acc"],
              "final_test_accuracy": test_acc[-1], "final_train_accuracy": records[-1]["train_acc"],
              "val_accuracy_per_epoch": [r["val_acc"] for r in records], "test_accuracy_per_epoch": test_acc,
              "seconds": round(time.time() - started, 1)}
    print(f"{label}: test {selected['test_acc']:.4f} at the validation-selected epoch {selected['epoch']}, "
          f"{test_acc[-1]:.4f} at the last ({result['seconds']:.0f} s)", flush=True)
    return result


def setting(dataset: str, data, T: int, epochs: int, lr: float, batch_size: int, threads: int) -> dict:
    """The setting every number of the report is measured in."""
    from .._compat import SJ_VERSION

    return {"dataset": dataset, "train_size": len(data[1]), "test_size": len(data[3]),
            "validation": f"{VAL_FRACTION} of each class of the training split, selects the epoch", "T": T,
            "epochs": epochs, "optimizer": f"Adam lr {lr}, cosine to 0", "batch_size": batch_size,
            "input": "static image, stem run once and repeated over T", "loss": "cross-entropy on mean-over-T logits",
            "spikingjelly_version": SJ_VERSION, "torch_threads": threads}


def ms_resnet_depth(data, depths, seeds, T, epochs, lr, batch_size, progress=None) -> list[dict]:
    """MS-ResNet at each depth and seed."""
    return [train_snn("ms_resnet", {"depth": d}, data, T, epochs, lr, batch_size, seed,
                      f"ms_resnet depth {d} seed {seed}", progress)
            for d in depths for seed in seeds]


def ds_resnet_mlf(data, depth, widths, seeds, T, epochs, lr, batch_size, progress=None) -> list[dict]:
    """DS-ResNet with MLF neurons (K = 3 levels) and with single-level neurons (K = 1), at each seed."""
    return [train_snn("ds_resnet", {"depth": depth, "levels": k, "widths": list(widths)}, data, T, epochs, lr,
                      batch_size, seed, f"ds_resnet{depth} K={k} seed {seed}", progress)
            for k in (3, 1) for seed in seeds]
