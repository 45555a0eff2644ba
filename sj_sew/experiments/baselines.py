"""Baselines beside every study, on the study's own data and validation split: a linear softmax readout of the
input frames and an ANN with the study's layout (ReLU in place of every spiking neuron). Each is tuned on the
validation split only; the test split chooses nothing. ``scripts/repro_baselines.py`` is its command line.

- **linear**: multinomial logistic regression (scikit-learn, L-BFGS) on standardised features, either the
  frames summed over time (``[C*H*W]``) or the frames side by side (``[T*C*H*W]``); its L2 strength ``C`` is
  chosen from :data:`LINEAR_C` by validation accuracy (the stronger regularisation on a tie).
- **ann**: the study's reference network built from its run configuration, every spiking neuron replaced by
  ``nn.ReLU``, fed the frames summed over time as one step; the study's optimiser, schedule, batch and epochs;
  the learning rate chosen on validation; reported is the test accuracy at the validation-selected epoch.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import ablation, degradation, surrogate, systems, temporal

#: inverse L2 strengths of the linear readout (scikit-learn's C), weakest regularisation last
LINEAR_C = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: the linear readout's input layouts
LAYOUTS = ("summed", "side by side")


@dataclass(frozen=True)
class Setting:
    """A study's data and reference network: ``flags()`` gives RunConfig fields of its network (data set, data
    options, T, split, optimiser); ``ann_lrs`` the ANN's learning-rate grid; ``more`` further networks of the study
    (label -> their flags) whose ANN twins are trained on the same data (e.g. deeper ones)."""

    flags: Callable[[], dict]
    ann_lrs: tuple[float, ...]
    network: str
    data: Callable[[dict], dict] | None = field(default=None)  # None: the run's own splits (split_dataset)
    more: dict[str, Callable[[], dict]] = field(default_factory=dict)


def run_splits(flags: dict) -> dict:
    """{'train', 'val', 'test'}: (x, y) tensors exactly as a training run with ``flags`` splits its data."""
    from ..training.config import RunConfig
    from ..training.run import split_dataset

    cfg = RunConfig(**flags)
    out = {}
    for split in ("train", "val", "test"):
        ds = split_dataset(cfg, split)
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        out[split] = (torch.stack([torch.as_tensor(x) for x in xs]).float(), torch.as_tensor(ys, dtype=torch.long))
    return out


def _systems_splits(flags: dict) -> dict:
    """The data of scripts/compare_systems.py (digits via ``load_tensors``, ``systems.VAL_FRACTION`` of each class
    validates)."""
    from ..data.split import validation_split
    from .conversion import load_tensors

    x_tr, y_tr, x_te, y_te = load_tensors("digits", None, None, seed=0)
    train, val = validation_split(torch.utils.data.TensorDataset(x_tr, y_tr), systems.VAL_FRACTION)
    return {"train": (x_tr[train.indices], y_tr[train.indices]), "val": (x_tr[val.indices], y_tr[val.indices]),
            "test": (x_te, y_te)}


def _defaults(run_study) -> dict:
    """A study's default setting: the defaults of its ``run_study`` (one place for epochs, images per class...)."""
    return {k: p.default for k, p in inspect.signature(run_study).parameters.items() if p.default is not p.empty}


def _degradation(blocks: int, dataset: str = "fashion_events") -> Callable[[], dict]:
    def flags():
        d = {**_defaults(degradation.run_study), **degradation.SETTINGS[dataset]}
        return degradation.cell_flags("SEW ADD", blocks, dataset, d["width"], d["epochs"], d["per_class"],
                                      d["lrs"][0], d["patience"], d["val_fraction"])
    return flags


def _ablation() -> dict:
    d = _defaults(ablation.run_study)  # the learning rate is the twin's own; the study's is a placeholder here
    return ablation.cell_flags("SEW ADD", d["lrs"][0], d["T"], d["epochs"], d["per_class"])


def _temporal(cell: str) -> Callable[[], dict]:
    """A cell of the temporal benchmark on its runs' data (motion_events, 32x32, 200 per class, T = 16)."""
    return lambda: temporal.cell_flags(cell, 3e-3, temporal.EPOCHS,  # (the twin's rate is its own)
                                       {"per_class": temporal.PER_CLASS, "sensor_size": temporal.SENSOR_SIZE})


#: study -> its setting (the network whose layout the ANN copies: the study's SEW ADD net, in its default setting)
STUDIES = {
    "degradation": Setting(_degradation(2), (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "SEW ADD, 6 layers (the shallowest)",
                           more={f"SEW ADD, {2 * n + 2} layers": _degradation(n) for n in (8, 16)}),
    "degradation_digits": Setting(_degradation(2, "digits"), (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                                  "SEW ADD, 6 layers (the shallowest)",
                                  more={f"SEW ADD, {2 * n + 2} layers": _degradation(n, "digits") for n in (16, 32)}),
    "ablation": Setting(_ablation, ablation.LR_GRID, "SEW ADD (7B-Net layout, 16 channels)"),
    "surrogate": Setting(lambda: surrogate.cell_flags("ArcTan", "SEW ADD", 1e-3,  # (the twin's rate is its own)
                                                      _defaults(surrogate.run_study)["epochs"]),
                         (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "SEW ADD (Table 9's net, 3 stages)"),
    "systems": Setting(lambda: {**surrogate.cell_flags("ArcTan", "SEW ADD", 1e-3, systems.EPOCHS), "batch_size": 64},
                       (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "SEW ADD (Table 9's net; the systems' own nets are not copied)",
                       data=_systems_splits),
    "temporal": Setting(_temporal("T16"), (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                        "SEW ADD (7B-Net layout, 16 channels; the T study's net)"),
    "temporal_depth": Setting(_temporal(temporal.depth_cell("SEW ADD", 2)), (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                              "SEW ADD, 6 layers (IF stack; the shallowest)",
                              more={f"SEW ADD, {2 * n + 2} layers": _temporal(temporal.depth_cell("SEW ADD", n))
                                    for n in (8, 16)}),
}


def study_splits(study: str) -> dict:
    """{'train', 'val', 'test'}: (x, y) of ``study``'s data, x ``[N, T, C, H, W]`` or static ``[N, C, H, W]``."""
    s = STUDIES[study]
    return (s.data or run_splits)(s.flags())


def features(x: torch.Tensor, layout: str) -> np.ndarray:
    """Flattened linear-readout features: ``summed`` sums a sequence over time (a static image is kept);
    ``side by side`` keeps every frame."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {LAYOUTS}")
    if x.dim() == 5 and layout == "summed":
        x = x.sum(1)
    return x.reshape(len(x), -1).double().numpy()


def linear_readout(splits: dict, layout: str, cs=LINEAR_C) -> dict:
    """Softmax readout on ``layout`` features, C chosen by validation accuracy; its test accuracy."""
    from sklearn.linear_model import LogisticRegression

    (xtr, ytr), (xva, yva), (xte, yte) = ((features(splits[k][0], layout), splits[k][1].numpy())
                                          for k in ("train", "val", "test"))
    mean, std = xtr.mean(0), xtr.std(0)
    std[std == 0] = 1.0
    xtr, xva, xte = ((v - mean) / std for v in (xtr, xva, xte))
    fits, start = {}, time.time()
    for c in cs:
        m = LogisticRegression(C=c, max_iter=3000).fit(xtr, ytr)
        fits[c] = (float((m.predict(xva) == yva).mean()), float((m.predict(xte) == yte).mean()))
    chosen = max(cs, key=lambda c: (fits[c][0], -c))
    return {"layout": layout, "features": int(xtr.shape[1]), "C_grid": list(cs),
            "val_acc": {f"{c:g}": fits[c][0] for c in cs}, "C": chosen, "val_acc_chosen": fits[chosen][0],
            "test_acc": fits[chosen][1], "at_grid_edge": chosen in (cs[0], cs[-1]),
            "seconds": round(time.time() - start, 1)}


def ann_twin(flags: dict) -> nn.Module:
    """The study network of ``flags`` with ``nn.ReLU`` in place of every spiking neuron; it takes one step
    ``[1, N, C, H, W]`` (or a static ``[N, C, H, W]``) and returns ``[N, classes]``."""
    from spikingjelly.activation_based import neuron

    from ..training.build import model_from_config

    net = model_from_config(flags)
    for name, m in list(net.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, neuron.BaseNode):
                setattr(m, child_name, nn.ReLU())
    if any(isinstance(m, neuron.BaseNode) for m in net.modules()):
        raise TypeError("a spiking neuron survived the ReLU swap")
    net.T = None  # one step: the summed frames
    return net


def _one_step(x: torch.Tensor) -> torch.Tensor:
    """A batch as the ANN's input: a sequence ``[N, T, C, H, W]`` summed over time, as one step ``[1, N, ...]``."""
    return (x.sum(1) if x.dim() == 5 else x).unsqueeze(0)


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    with torch.no_grad():
        hits = sum(int((net(_one_step(x[i:i + batch])).argmax(1) == y[i:i + batch]).sum())
                   for i in range(0, len(x), batch))
    return hits / len(x)


def train_ann(flags: dict, splits: dict, lr: float, seed: int = 0) -> dict:
    """One ANN run at ``lr`` with the study's recipe; validation and test accuracy after every epoch."""
    from ..training.loop import make_optimizer, make_scheduler

    torch.manual_seed(seed)
    net = ann_twin(flags)
    opt = make_optimizer(flags["optimizer"], net.parameters(), lr, flags.get("momentum", 0.9))
    sched = make_scheduler(flags["scheduler"], opt, flags["epochs"], flags.get("step_size", 64),
                           flags.get("gamma", 0.1))
    (x, y), g, start, curve = splits["train"], torch.Generator().manual_seed(seed), time.time(), []
    for epoch in range(flags["epochs"]):
        net.train()
        for idx in torch.randperm(len(x), generator=g).split(flags["batch_size"]):
            loss = nn.functional.cross_entropy(net(_one_step(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        curve.append({"epoch": epoch, "val_acc": _accuracy(net, *splits["val"]),
                      "test_acc": _accuracy(net, *splits["test"])})
    selected = max(curve, key=lambda r: (r["val_acc"], -r["epoch"]))
    return {"lr": lr, "selected_epoch": selected["epoch"], "val_acc": selected["val_acc"],
            "selected_test_acc": selected["test_acc"], "last_test_acc": curve[-1]["test_acc"], "curve": curve,
            "seconds": round(time.time() - start, 1)}


def ann_baseline(study: str, splits: dict, lrs=None, epochs: int | None = None, network: str | None = None) -> dict:
    """The ANN twin of the study's reference network (or of ``network``, a key of its ``more``) at every rate of
    the study's grid (``lrs``), the rate chosen by validation accuracy."""
    s = STUDIES[study]
    flags = s.flags() if network is None else s.more[network]()
    if epochs is not None:
        flags = {**flags, "epochs": epochs, "step_size": max(1, epochs // 3)}
    runs = [train_ann(flags, splits, lr) for lr in (lrs or s.ann_lrs)]
    chosen = max(runs, key=lambda r: (r["val_acc"], -r["lr"]))
    grid = [r["lr"] for r in runs]
    return {"network": network or s.network, "input": "frames summed over time, one step", "epochs": flags["epochs"],
            "optimizer": flags["optimizer"], "scheduler": flags["scheduler"], "batch_size": flags["batch_size"],
            "lr_grid": grid, "lr": chosen["lr"], "at_grid_edge": chosen["lr"] in (grid[0], grid[-1]),
            "val_acc": chosen["val_acc"], "selected_epoch": chosen["selected_epoch"],
            "selected_test_acc": chosen["selected_test_acc"], "last_test_acc": chosen["last_test_acc"],
            "runs": runs, "seconds": round(sum(r["seconds"] for r in runs), 1)}


def data_meta(splits: dict, flags: dict) -> dict:
    """What the baselines of a study saw: data set, options, T and the split sizes."""
    return {"dataset": flags["dataset"], "data_options": flags.get("data_options", {}), "T": flags.get("T"),
            "sizes": {k: len(v[1]) for k, v in splits.items()}, "input_shape": list(splits["train"][0].shape[1:])}
