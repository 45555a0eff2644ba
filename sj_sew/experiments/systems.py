"""The competing residual SNNs on real data, in bounded CPU time: MS-ResNet accuracy against depth, DS-ResNet
with MLF (K = 3) against single-level neurons (K = 1), and the ANN-to-SNN conversion curve
(:mod:`.conversion`). ``scripts/compare_systems.py`` is its command line.

Every network is trained under the reproduction's rule (issue 22): its Adam rate chosen from :data:`LR_GRID`
(widened along :data:`~.sweep.LR_LADDER` while the choice sits at an edge) by the validation accuracy of the
tuning seed :data:`~.sweep.TUNING_SEED`, never reported; the reported seeds then train at that rate. Every run
stops on a validation plateau of :data:`PATIENCE` epochs within :data:`EPOCHS`, and :data:`VAL_FRACTION` of each
class validates. Each run's record is kept as ``<runs>/<tuning|reported>/<network>/lr<lr>/seed<k>.json``, so an
interrupted comparison resumes where it stopped and processes can share the networks."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..progress import progress_bar
from .surrogate import COMPUTE
from .sweep import TUNING_SEED, grid_val_acc, saved_record, tuned_seeds, write_json

#: fraction of each class of the training split held out to select the epoch and the rate (the same for every
#: seed): 538 of the digits' 1347 training images, 50+ per class
VAL_FRACTION = 0.4
#: a run stops once its validation accuracy has not improved for this many epochs, within EPOCHS
PATIENCE, EPOCHS = 5, 20
#: the rates tried first: the earlier untuned 1e-3 inside, a decade either way
LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2)


def label(section: str, kwargs: dict) -> str:
    """A network's name in the report: 'MS-ResNet, 20 layers' or 'DS-ResNet-20, K = 3'."""
    if section == "ms_resnet_depth":
        return f"MS-ResNet, {kwargs['depth']} layers"
    return f"DS-ResNet-{kwargs['depth']}, K = {kwargs['levels']}"


def networks(ms_depths=(8, 20, 56), ds_depth: int = 20, ds_widths=(16, 32, 64), ds_levels=(3, 1)) -> dict:
    """Every network of the comparison: name (:func:`label`) -> ``{"section", "model", "kwargs"}``; the section
    is the report's list its runs go to."""
    nets = [("ms_resnet_depth", "ms_resnet", {"depth": d}) for d in ms_depths]
    nets += [("ds_resnet_mlf", "ds_resnet", {"depth": ds_depth, "levels": k, "widths": list(ds_widths)})
             for k in ds_levels]
    return {label(section, kwargs): {"section": section, "model": model, "kwargs": kwargs}
            for section, model, kwargs in nets}


def train_snn(model: str, model_kwargs: dict, data, T: int, epochs: int, lr: float, batch_size: int, seed: int,
              label: str, progress: bool | None = None, patience: int | None = PATIENCE) -> dict:
    """Adam + cosine schedule over ``epochs``, cross-entropy on the mean-over-T logits (sj_sew.training.fit);
    validation and test accuracy after every epoch, stopped on a validation plateau of ``patience`` epochs (None:
    all epochs); the epoch is selected by validation accuracy (the earliest on ties)."""
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
                      val_loader=val, on_epoch=lambda _: bar.update(), patience=patience)
    selected = max(records, key=lambda r: (r["val_acc"], -r["epoch"]))
    test_acc = [r["test_acc"] for r in records]
    result = {"model": model, "kwargs": model_kwargs, "depth": getattr(net, "depth", None),
              "params": sum(p.numel() for p in net.parameters()), "T": T, "epochs": epochs, "patience": patience,
              "epochs_run": len(records), "lr": lr, "seed": seed, "train_size": len(train_set),
              "val_size": len(val_set), "selected_epoch": selected["epoch"], "selected_val_acc": selected["val_acc"],
              "selected_test_accuracy": selected["test_acc"], "final_test_accuracy": test_acc[-1],
              "final_train_accuracy": records[-1]["train_acc"], "final_train_loss": records[-1]["train_loss"],
              "val_accuracy_per_epoch": [r["val_acc"] for r in records], "test_accuracy_per_epoch": test_acc,
              "seconds": round(time.time() - started, 1)}
    print(f"{label}: test {selected['test_acc']:.4f} at the validation-selected epoch {selected['epoch']}, "
          f"{test_acc[-1]:.4f} at the last of {len(records)} ({result['seconds']:.0f} s)", flush=True)
    return result


def run_path(runs: Path, name: str, lr: float, seed: int, tuning: bool) -> Path:
    """``<runs>/<tuning|reported>/<network>/lr<lr>/seed<seed>.json``."""
    cell = name.replace(", ", "-").replace(" = ", "").replace(" ", "_")
    return Path(runs) / ("tuning" if tuning else "reported") / cell / f"lr{lr:g}" / f"seed{seed}.json"


def cached_run(path: Path, setting: dict, train: bool, make) -> dict | None:
    """The run record at ``path`` (``make()`` trains it and it is written there, unless ``train`` is False:
    then None). Raises ValueError when the saved record was trained in another ``setting``."""
    record = saved_record(path, "setting", setting)
    if record is not None:
        return record
    if not train:
        return None
    record = {**make(), "setting": setting}
    write_json(path, record, indent=1)
    return record


def tuned_network(name: str, net: dict, data, runs: Path, seeds: list[int], common: dict, lrs=LR_GRID,
                  widen: bool = True, train: bool = True, progress: bool | None = None) -> dict | None:
    """One network under the tuning rule: the tuning seed over ``lrs`` (widened at an edge when ``widen``), then
    ``seeds`` at the chosen rate; ``common`` holds T, epochs, batch_size, patience and ``data_setting`` (what the
    data are, recorded with each run). None until the grid is finished; else ``{"lr", "grid_val_acc",
    "tuning_seconds", "runs"}`` (the reported seeds' records)."""
    common = dict(common)
    data_setting = common.pop("data_setting")

    def run(lr, seed, tuning):
        setting = {"model": net["model"], "kwargs": net["kwargs"], "lr": lr, "seed": seed,
                   "val_fraction": VAL_FRACTION, "data": data_setting, **common}
        tag = f"{name} lr {lr:g} {'tuning ' if tuning else ''}seed {seed}"
        return cached_run(run_path(runs, name, lr, seed, tuning), setting, train,
                          lambda: train_snn(net["model"], net["kwargs"], data, lr=lr, seed=seed, label=tag,
                                            progress=progress, **common))

    tuned = tuned_seeds(run, lrs, seeds, widen)
    if tuned is None:
        return None
    lr, grid, done = tuned
    return {"lr": lr, "grid_val_acc": grid_val_acc(grid),
            "tuning_seconds": sum(r["seconds"] for r in grid.values()), "runs": list(done.values())}


def setting(dataset: str, data, T: int, epochs: int, lrs, batch_size: int, threads: int) -> dict:
    """The setting every number of the report is measured in."""
    from .._compat import SJ_VERSION

    return {"dataset": dataset, "train_size": len(data[1]), "test_size": len(data[3]),
            "validation": f"{VAL_FRACTION} of each class of the training split, selects the epoch and the rate",
            "T": T, "epochs": epochs, "patience": PATIENCE,
            "stop": f"trained to a validation plateau of {PATIENCE} epochs within {epochs}",
            "optimizer": "Adam, cosine to 0", "lr_grid": list(lrs), "tuning_seed": TUNING_SEED,
            "rule": f"each network's rate by the best validation accuracy of the tuning seed {TUNING_SEED} (never "
                    "reported) over the grid, widened by a half-decade while the choice sits at its edge",
            "batch_size": batch_size, "input": "static image, stem run once and repeated over T",
            "loss": "cross-entropy on mean-over-T logits", "spikingjelly_version": SJ_VERSION,
            "torch_threads": threads, "compute": COMPUTE}
