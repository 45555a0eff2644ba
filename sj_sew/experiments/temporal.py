"""The temporal event benchmark (``motion_events``, :mod:`sj_sew.data.temporal`): how much of the class a linear
readout finds in the frames summed over time and side by side, and the SEW paper's claims on sequences:

- random temporal delete (Fig. 10, Appendix A.2; Table 4's DVS Gesture runs use it): SEW ADD trained with RTD
  (T_train = 12 of 16) or without, tested on all 16 frames; RTD should raise test accuracy and shrink the
  train/test gap;
- accuracy against T (Table 6: 64.8 / 70.2 / 74.4 % at T = 4 / 8 / 16 on CIFAR10-DVS), SEW ADD without RTD;
- the element-wise function ablation (Table 4 on DVS Gesture): SEW ADD / IAND / AND, Spiking ResNet and the plain
  net at T = 16 with RTD, the paper's setting;
- the degradation problem (Table 2, Fig. 3): SEW ADD and Spiking ResNet (zero init) at 6, 18 and 34 layers, and
  Spiking ResNet without zero init at 34, the stack of :mod:`.degradation` on these frames (:data:`DEPTH_NET`)
  with its IF neurons (the paper's Table 2 setting), T = 16 without RTD.

Every run stops on a validation plateau of :data:`PATIENCE` epochs within a cap of :data:`EPOCHS`.

A cell is one of :data:`CELLS` (a network at a T, and a depth). Each rate is chosen by probe runs: the T study's
(one rate for every T) on :data:`T_RATE_CELL`, each ablation cell's on itself, each depth family's on its cell at
:data:`DEPTH_RATE_BLOCKS` (then used at every depth, as the paper uses one recipe at every depth); probe runs of
:data:`TUNE_SEED` (never reported), as long as the reported ones, over the grid :data:`LRS`, widened along
:data:`~sj_sew.experiments.sweep.LR_LADDER` while the choice sits at an edge; the reported seeds are 0..seeds-1.
``scripts/repro_temporal.py`` is the command line and states the setting.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ablation import NETWORKS
from .degradation import FAMILIES as DEPTH_FAMILIES, RATE_FAMILY as DEPTH_RATE_FAMILY
from .sweep import LR_LADDER, fmt, grid_val_acc, spread, stop_text, train_run, tuned_grid, write_study

DATASET = "motion_events"
#: the 7B-Net's layout with 16 channels and as many block+pool stages as the input allows (5 at 32x32)
NET = "c16k3s1-BN-PLIF-{{SEW Block(c16)-MPk2s2}}*{stages}-FC8"


def network(sensor_size: int) -> str:
    """:data:`NET` for a ``sensor_size`` x ``sensor_size`` input."""
    return NET.format(stages=min(7, int(math.log2(sensor_size))))


#: the degradation study's stack (:mod:`.degradation`) on these frames: a strided stem and a pool bring 32x32 to
#: 8x8, then n residual blocks (2n + 2 layers). IF neurons, as in the paper's Table 2 and in :mod:`.degradation`:
#: zero init makes a Spiking ResNet block an identity only for IF neurons (Sec. 3.2); with PLIF a zero-init
#: Spiking ResNet of 18 layers stayed at chance
DEPTH_NET = "c16k3s2-BN-IF-MPk2s2-{{Block(c16)}}*{blocks}-FC8"


def depth_layers(blocks: int) -> int:
    """The layers of :data:`DEPTH_NET` with ``blocks`` blocks: the stem, two per block and the classifier."""
    return 2 * blocks + 2


def depth_cell(network: str, blocks: int) -> str:
    """A depth cell's name: '<network> <layers>', the row label the degradation claims read."""
    return f"{network} {depth_layers(blocks)}"


@dataclass(frozen=True)
class Cell:
    """One setting of the study: a network at T frames, trained on ``T_train`` of them (random temporal delete) or
    on all (None): one of :data:`~sj_sew.experiments.ablation.NETWORKS` in the 7B-Net layout, or with ``blocks`` one
    of :data:`.degradation.FAMILIES` in :data:`DEPTH_NET`."""

    network: str
    T: int
    T_train: int | None = None
    blocks: int | None = None  # None: the 7B-Net layout (:data:`NET`); n: :data:`DEPTH_NET` with n blocks

    @property
    def layers(self) -> int | None:
        return None if self.blocks is None else depth_layers(self.blocks)


#: The T study: SEW ADD at T = 16 with RTD and without, at T = 8 and 4 without RTD, all at the rate chosen on
#: :data:`T_RATE_CELL`, the middle T.
T_CELLS = {"T16 RTD": Cell("SEW ADD", 16, 12), "T16": Cell("SEW ADD", 16), "T8": Cell("SEW ADD", 8),
           "T4": Cell("SEW ADD", 4)}
#: Table 4's ablation: each network at T = 16 with RTD, at a rate its own probe runs choose.
ABLATION_CELLS = {f"{net} RTD": Cell(net, 16, 12) for net in NETWORKS}
#: Table 2's degradation: SEW ADD and Spiking ResNet (zero init) at 6, 18 and 34 layers and Spiking ResNet without
#: zero init at 34 (the rows its claims compare), T = 16 without RTD. IF nets learn these frames more slowly than
#: PLIF ones (10-epoch probes of SEW ADD at 18 layers reached 90 % validation accuracy, still rising), so they
#: train to a validation plateau, as every cell does
DEPTH_BLOCKS = (2, 8, 16)
DEPTH_CELLS = {depth_cell(net, n): Cell(net, 16, None, n)
               for net in ("SEW ADD", "Spiking ResNet") for n in DEPTH_BLOCKS}
DEPTH_CELLS[depth_cell("Spiking ResNet (no zero init)", 16)] = Cell("Spiking ResNet (no zero init)", 16, None, 16)
#: the depth at which each family's probe runs choose its rate; Spiking ResNet without zero init takes Spiking
#: ResNet's, so that zero init is the one difference between the two
DEPTH_RATE_BLOCKS = 8
CELLS = {**T_CELLS, **ABLATION_CELLS, **DEPTH_CELLS}
#: every run stops once validation accuracy has not improved for PATIENCE epochs, within a cap of EPOCHS (at 10
#: fixed epochs T = 8 and 4, SEW IAND and Spiking ResNet were still rising at the last epoch on most seeds)
EPOCHS, PATIENCE = 30, 5
READOUT_CELLS = {16: "T16", 8: "T8", 4: "T4"}
TUNE_SEED = 100  # chooses the rate; never reported
#: the rate grid every probed cell starts from (Adam); its probe runs are as long as the reported ones by default,
#: since 4-epoch probes chose rates that learn fast and then diverge (results/temporal/probe_4ep)
LRS = (1e-3, 3e-3, 1e-2)
#: the T study's one rate is chosen on its middle T
T_RATE_CELL = "T8"
VAL_FRACTION = 1 / 3  # with the default 200 per class: 100 fit, 50 validate, 50 test per class
BATCH = 16
PER_CLASS = 200
SENSOR_SIZE = 32  # the sensor's side in pixels
PAPER = {"table6_cifar10_dvs": {4: 0.648, 8: 0.702, 16: 0.744}}


def rate_cell(name: str) -> str:
    """The cell whose probe runs choose ``name``'s rate: :data:`T_RATE_CELL` for a cell of the T study; itself for
    an ablation cell; its family's cell at :data:`DEPTH_RATE_BLOCKS` for a depth cell."""
    if name in T_CELLS:
        return T_RATE_CELL
    if name in ABLATION_CELLS:
        return name
    family = DEPTH_CELLS[name].network
    return depth_cell(DEPTH_RATE_FAMILY.get(family, family), DEPTH_RATE_BLOCKS)


def cell_flags(cell: str, lr: float, epochs: int, data_options: dict) -> dict:
    """RunConfig fields of one cell: its network with PLIF neurons, Adam, cosine schedule over ``epochs``, batch
    16, no zero init, stopped on a validation plateau of :data:`PATIENCE` epochs; a depth cell with IF neurons and
    zero init for SEW and Spiking ResNet (:data:`.degradation.FAMILIES`, the paper's Table 2 setting)."""
    c = CELLS[cell]
    if c.blocks is None:
        notation, neuron = network(data_options.get("sensor_size", SENSOR_SIZE)), "plif"
        family = {**NETWORKS[c.network][0], "zero_init": False}
    else:
        notation, neuron = DEPTH_NET.format(blocks=c.blocks), "if"
        family = {"zero_init": True, **DEPTH_FAMILIES[c.network]}
    flags = {"dataset": DATASET, "data_options": dict(data_options), "notation": notation, **family,
             "neuron": neuron, "T": c.T, "optimizer": "adam", "scheduler": "cosine",
             "epochs": epochs, "patience": PATIENCE, "batch_size": BATCH, "val_fraction": VAL_FRACTION, "lr": lr}
    if c.T_train is not None:
        flags["T_train"] = c.T_train
    return flags


def setting_of(cell: str) -> str:
    """The first cell of :data:`CELLS` in ``cell``'s setting: cells that are one setting (T16 RTD and the ablation's
    SEW ADD RTD) keep their runs in one place, so a run at a rate both choose is trained once."""
    return next(name for name, c in CELLS.items() if c == CELLS[cell])


def run_dir(out: Path, cell: str, lr: float, probe_epochs: int | None = None) -> Path:
    """Where a cell's runs at rate ``lr`` live: ``<out>/runs/<setting>/lr<lr>`` (:func:`setting_of`); probe runs
    of ``probe_epochs`` epochs under ``<out>/probe_<E>ep``, so probes of another length never read back as these."""
    top = "runs" if probe_epochs is None else f"probe_{probe_epochs}ep"
    return Path(out) / top / setting_of(cell).replace(" ", "_").replace("(", "").replace(")", "") / f"lr{lr:g}"


def units(cells, lrs, seeds) -> list[tuple[str, str, float | None, int]]:
    """Every run of the study in order: ('tune', rate cell, lr, TUNE_SEED) for each rate of each network's
    :func:`rate_cell` (none with one rate), then ('report', cell, None, seed): its rate is its network's choice,
    known once that network's probe runs finished."""
    tuned = list(dict.fromkeys(rate_cell(c) for c in cells))
    tune = [("tune", c, lr, TUNE_SEED) for c in tuned for lr in lrs] if len(lrs) > 1 else []
    return tune + [("report", c, None, s) for s in range(seeds) for c in cells]  # seed-major: all cells early


def run_study(out: Path, seeds: int = 5, epochs: int = EPOCHS, lrs=LRS, cells=tuple(CELLS),
              data_options: dict | None = None, shard: tuple[int, int] = (0, 1), report_only: bool = False,
              progress: bool = False, tune_epochs: int | None = None) -> dict:
    """Train the runs of shard ``k`` of ``n`` (every n-th of :func:`units`; a report run whose network's rate is
    not chosen yet is left for a later call) or, with ``report_only``, only read back; aggregate what is finished.
    With one rate in ``lrs`` it is used as given; with several, each network's probe runs (``tune_epochs``
    epochs, by default ``epochs``, of :data:`TUNE_SEED` on its :func:`rate_cell`) choose it. Every run, probes
    too, stops on its validation plateau within its epochs."""
    data_options = {"per_class": PER_CLASS, **(data_options or {})}
    tune_epochs = epochs if tune_epochs is None else tune_epochs
    lrs, (k, n), start = sorted(lrs), shard, time.time()
    finished: dict[str, tuple[bool, dict]] = {}  # run directory -> (probe run?, summary), each run counted once

    def get(cell, lr, seed, mine, probe=False):
        length = tune_epochs if probe else epochs
        where = run_dir(out, cell, lr, length if probe else None)
        r = train_run(cell_flags(cell, lr, length, data_options), where, seed, train=mine and not report_only,
                      progress=progress)
        if r is not None:
            finished[r["out"]] = (probe, r)
        return r

    grids: dict[str, dict] = {}  # rate cell -> {lr: probe run}
    chosen: dict[str, float] = {}  # rate cell -> the rate its probes chose
    tuned = list(dict.fromkeys(rate_cell(c) for c in cells))

    def rate_of(cell: str) -> float | None:
        """The one rate given, or the choice of the cell's probe runs (None until made)."""
        return lrs[0] if len(lrs) == 1 else chosen.get(rate_cell(cell))

    def settle(cell: str, mine: bool) -> float | None:
        """The cell's rate once its listed probes are finished, widened by
        :func:`~sj_sew.experiments.sweep.tuned_grid` while the choice sits at an edge (an extension probe belongs to
        shard ``tuned.index(cell) % n``); None while a probe is missing."""
        grid = grids.get(cell, {})
        if not set(lrs) <= set(grid):
            return None
        lr, grids[cell] = tuned_grid(lambda x: grid.get(x) or get(cell, x, TUNE_SEED, mine, probe=True), lrs)
        return lr

    runs: dict[str, list] = {c: [] for c in cells}
    settled = False
    for i, (kind, cell, lr, seed) in enumerate(units(cells, lrs, seeds)):
        mine = i % n == k
        if kind == "tune":
            r = get(cell, lr, seed, mine, probe=True)
            if r is not None:
                grids.setdefault(cell, {})[lr] = r
            continue
        if len(lrs) > 1 and not settled:  # after the listed probes, once: every network's rate, edges widened
            chosen.update({c: lr for j, c in enumerate(tuned) if (lr := settle(c, j % n == k)) is not None})
            settled = True
        lr = rate_of(cell)
        if lr is None:  # its network's rate is not chosen yet: a later call runs it (gpu_sweep.sh reads the mark)
            if mine and not report_only:
                print(f"pending: {cell}, seed {seed} waits for its network's probe runs", flush=True)
            continue
        if mine and not report_only:
            print(f"== {cell}, lr {lr:g}, seed {seed}", flush=True)
        r = get(cell, lr, seed, mine)
        if r is not None:
            runs[cell].append((seed, r))
    table = {cell: _row(cell, rate_of(cell), grids.get(rate_cell(cell), {}), rs)
             for cell, rs in runs.items() if rs}
    selection = (f"the best validation accuracy of probe runs of seed {TUNE_SEED} (not reported), each to "
                 f"its plateau within {tune_epochs} epochs: "
                 f"the T study's on {T_RATE_CELL}, used at every T; each ablation network's on its cell; each "
                 f"degradation family's on its {depth_layers(DEPTH_RATE_BLOCKS)}-layer cell, used at every depth; the "
                 f"smaller rate on a tie, a choice at an edge of the rates tried adding the next rate of "
                 f"{list(LR_LADDER)} beyond it"
                 if len(lrs) > 1 else "rate fixed as given (no grid)")
    meta = {"dataset": f"{DATASET} (emulated event sensor, a digit sweeping 3 axes; 8 classes of direction)",
            "data_options": data_options, "net": network(data_options.get("sensor_size", SENSOR_SIZE)),
            "epochs": epochs,
            "depth_net": DEPTH_NET.format(blocks="n"), "patience": PATIENCE,
            "stop": f"validation plateau of {PATIENCE} epochs within {epochs}",
            "seeds": seeds, "batch": BATCH, "optimizer": "adam, cosine schedule", "val_fraction": VAL_FRACTION,
            "lr_grid": lrs, "tune_epochs": tune_epochs if len(lrs) > 1 else None, "selection": selection,
            "epoch": "validation-selected",
            "devices": sorted({r.get("device", "cpu (not recorded)") for _, r in finished.values()}),
            "complete": all(len(runs[c]) == seeds for c in cells), "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(r["wall_time_s"] for probe, r in finished.values() if not probe)),
            "probe_seconds": round(sum(r["wall_time_s"] for probe, r in finished.values() if probe)),
            "paper": PAPER}
    return {"meta": meta, "table": table}


def _row(cell: str, lr: float, grid: dict, seeded: list[tuple[int, dict]]) -> dict:
    runs = [r for _, r in seeded]
    last = [r["history"][-1] for r in runs]
    c = CELLS[cell]
    return {"network": c.network, "T": c.T, "T_train": c.T_train, "layers": c.layers, "lr": lr,
            "grid_val_acc": grid_val_acc(grid),
            "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
            "last_test_acc": spread([r["last_test_acc"] for r in runs]),
            "last_train_acc": spread([h["train_acc"] for h in last]),
            "gap_train_test": spread([h["train_acc"] - h["test_acc"] for h in last]),
            "final_train_loss": spread([h["train_loss"] for h in last]),
            "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
            "devices": sorted({r.get("device", "cpu (not recorded)") for r in runs}),
            "seeds": [seed for seed, _ in seeded],
            "history": [r["history"] for r in runs]}


def verdicts(table: dict, readout: dict | None) -> list:
    """The claims of :mod:`.claims`' two temporal studies (:data:`~.claims.TEMPORAL_STUDIES`: the T, RTD and ablation
    cells; the depth cells) evaluated on the study's ``table`` (paired by seed, Student-t 95% intervals), each
    behind the one gate every study has: its best cell must beat the stronger linear readout."""
    from . import claims

    linear = claims.readout_of_temporal(readout)
    return [e for study in claims.TEMPORAL_STUDIES if (rows := claims.rows_from(study, table))
            for e in claims.evaluate_rows(study, rows, linear)]


def linear_readout(T: int = 16, data_options: dict | None = None) -> dict:
    """The linear baseline (:func:`sj_sew.experiments.baselines.linear_readout`: softmax regression, C chosen on
    validation) on exactly the splits of a run of the T-frame cell: the frames summed over time and side by side.
    Chance is 1/8."""
    from .baselines import linear_readout as readout, run_splits

    options = {"per_class": PER_CLASS, **(data_options or {})}
    splits = run_splits(cell_flags(READOUT_CELLS[T], 1e-3, 1, options))
    return {"T": T, "data_options": options, "chance": 1 / 8,
            "sizes": {k: len(y) for k, (_, y) in splits.items()},
            "summed": readout(splits, "summed"), "frames": readout(splits, "side by side")}


def cached_readout(out: Path, data_options: dict, T: int = 16) -> dict:
    """:func:`linear_readout`, kept in ``<out>/linear_readout.json`` and read back while its setting is the same."""
    import json

    from .sweep import write_json

    path = Path(out) / "linear_readout.json"
    options = {"per_class": PER_CLASS, **data_options}
    if path.exists():
        kept = json.loads(path.read_text())
        if kept["T"] == T and kept["data_options"] == options:
            return kept
    readout = linear_readout(T, options)
    write_json(path, readout, indent=1)
    return readout


def write_report(out: Path, study: dict, readout: dict | None) -> Path:
    """``<out>/temporal.json`` (meta, rows without histories, the RTD difference, the linear readout) and
    ``<out>/temporal.png``; the JSON's path."""
    rows = {c: {k: v for k, v in r.items() if k != "history"} for c, r in study["table"].items()}
    found = [{"id": e.claim.id, "claim": e.claim.text, "a": e.claim.a, "b": e.claim.b, "difference": e.diff_text,
              "measured": e.measured, "verdict": e.verdict, "gate": e.gate} for e in verdicts(study["table"], readout)]
    data = {"meta": study["meta"], "table": rows, "linear_readout": readout, "verdicts": found}
    return write_study(out, "temporal", data, plot, {"table": study["table"], "readout": readout}, study["meta"])


def format_rows(study: dict, readout: dict | None) -> str:
    lines = []
    if readout:
        lines.append(f"linear readout (T={readout['T']}, chance {100 * readout['chance']:.1f} %): summed over time "
                     f"{100 * readout['summed']['test_acc']:.1f} % test (C={readout['summed']['C']:g}), frames side "
                     f"by side {100 * readout['frames']['test_acc']:.1f} % (C={readout['frames']['C']:g})")
    lines.append(f"{'cell':<18} {'lr':>7} {'test % (val-selected)':>22} {'test % (last)':>16} {'train % (last)':>16} "
                 f"{'train-test gap':>16} {'train loss':>16}")
    for cell, r in study["table"].items():
        lines.append(f"{cell:<18} {r['lr']:>7g} {fmt(r['selected_test_acc']):>22} {fmt(r['last_test_acc']):>16} "
                     f"{fmt(r['last_train_acc']):>16} {fmt(r['gap_train_test']):>16} "
                     f"{fmt(r['final_train_loss'], 1, 3):>16}")
    for e in verdicts(study["table"], readout):
        lines.append(f"{e.claim.id} {e.claim.text}: {e.claim.versus}: {e.diff_text}; statistics: "
                     f"{e.measured}; against the paper: {e.verdict}")
    return "\n".join(lines)


def plot(figure: dict, path: Path, meta: dict):
    """Left: train (dashed) and test (solid) accuracy per epoch at T = 16 with and without RTD (Fig. 10). Middle:
    test accuracy at the validation-selected epoch against T, each seed and the mean (Table 6). Third: the same
    for each network at T = 16 with RTD (Table 4). Right: the same against depth, one line per network (Table 2).
    The linear readouts at T = 16 are the grey lines (``figure``: the study's table with histories and the
    readout)."""
    table, readout = figure["table"], figure["readout"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c, d) = plt.subplots(1, 4, figsize=(20, 3.8))
    for cell, color in (("T16 RTD", "C0"), ("T16", "C1")):
        if cell not in table:
            continue
        hs = table[cell]["history"]
        epochs = min(len(h) for h in hs)
        for field, style in (("train_acc", "--"), ("test_acc", "-")):
            ys = [100 * np.mean([h[e][field] for h in hs]) for e in range(epochs)]
            a.plot(range(1, epochs + 1), ys, style, color=color, label=f"{cell} {field.split('_')[0]}")
    a.set_xlabel("epoch")
    a.set_ylabel("accuracy (%), seed mean")
    a.legend(fontsize=7)
    t_rows = {r["T"]: r for r in table.values() if r["T_train"] is None and not r.get("layers")}
    Ts = sorted(t_rows)
    for T in Ts:
        r = t_rows[T]
        vals = [100 * v for v in r["selected_test_acc"]["values"]]
        b.plot([T] * len(vals), vals, "o", color="C1", alpha=0.5)
    if Ts:
        means = [100 * t_rows[T]["selected_test_acc"]["mean"] for T in Ts]
        b.plot(Ts, means, "-", color="C1", label="SEW ADD, no RTD")
    nets = [(r["network"], r) for cell, r in table.items() if cell in ABLATION_CELLS]
    for i, (name, r) in enumerate(nets):
        vals = [100 * v for v in r["selected_test_acc"]["values"]]
        c.bar(i, np.mean(vals), color="C0", alpha=0.4)
        c.plot([i] * len(vals), vals, "o", color="C0", alpha=0.7)
    c.set_xticks(range(len(nets)), [f"{name}\nlr {r['lr']:g}" for name, r in nets], fontsize=7)
    c.set_title("T = 16 with RTD (Table 4)", fontsize=8)
    by_network: dict[str, list] = {}
    for r in table.values():
        if r.get("layers"):
            by_network.setdefault(r["network"], []).append(r)
    for name, rows in by_network.items():
        rows = sorted(rows, key=lambda r: r["layers"])
        d.errorbar([r["layers"] for r in rows], [100 * r["selected_test_acc"]["mean"] for r in rows],
                   yerr=[100 * r["selected_test_acc"]["std"] if r["selected_test_acc"]["n"] > 1 else 0 for r in rows],
                   marker="o", capsize=3, label=name)
    d.set_xlabel("layers")
    d.set_title("T = 16, no RTD (Table 2)", fontsize=8)
    for axis in (b, c, d):
        for key, style in (("frames", ":"), ("summed", "-.")):
            if readout:
                axis.axhline(100 * readout[key]["test_acc"], color="gray", linestyle=style,
                             label=f"linear readout, {readout[key]['layout']} (T = 16)")
        axis.set_ylabel("test accuracy (%), val-selected epoch")
        axis.legend(fontsize=7)
    b.set_xscale("log", base=2)
    b.set_xlabel("T")
    fig.suptitle(f"{meta['dataset']}, {stop_text(meta)}, devices {', '.join(meta['devices'])}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
