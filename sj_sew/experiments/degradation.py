"""SEW paper, Table 2 / Fig. 3: the degradation problem. Does a deeper net train worse? SEW ADD, Spiking
ResNet and Plain nets of increasing depth (and Spiking ResNet without zero init), the same data, optimiser and
epochs. ``scripts/repro_degradation.py`` is its command line and describes the setting."""
from __future__ import annotations

import time
from pathlib import Path

from .claims import statistics_lines
from .sweep import fmt, spread, train_run, tuned_grid, write_study

#: name -> RunConfig fields of the network (all with zero init unless they say otherwise)
FAMILIES = {"SEW ADD": {"family": "sew", "connect": "ADD"}, "Spiking ResNet": {"family": "spiking"},
            "Plain": {"family": "plain"},
            "Spiking ResNet (no zero init)": {"family": "spiking", "zero_init": False}}
#: the stem of each data set's nets: fashion_events' 34x34 frames are brought down to 8x8 before the blocks
STEMS = {"fashion_events": "c{w}k3s2-BN-IF-MPk2s2", "digits": "c{w}k3s1-BN-IF"}
#: the deepest nets are run for the two families the paper's claim is about
DEEP_ONLY = ("SEW ADD", "Spiking ResNet")
#: a family whose rate another family's probes choose: zero init is then the one difference between the two
RATE_FAMILY = {"Spiking ResNet (no zero init)": "Spiking ResNet"}
TUNE_SEED = 100  # the probe runs' seed; never reported
#: each data set's study (the defaults of scripts/repro_degradation.py): fashion_events at one rate, three seeds
#: and a fixed 10 epochs (the first version); the digits at 6, 34 and 66 layers, five seeds, each family's rate
#: chosen on its 34-layer net, runs stopped on a validation plateau of 5 epochs within 20, 50+ images per class
#: validating (val_fraction 0.4 of the 1347 training images: 809 fit / 538 validate / 450 test)
SETTINGS = {
    "fashion_events": {"blocks": (2, 8, 16), "deep_blocks": (50,), "seeds": 3, "epochs": 10, "per_class": 300,
                       "families": tuple(FAMILIES), "lrs": (1e-3,), "patience": None, "rate_blocks": 8,
                       "val_fraction": None},
    "digits": {"blocks": (2, 16), "deep_blocks": (32,), "seeds": 5, "epochs": 20, "per_class": 0,
               "families": ("SEW ADD", "Spiking ResNet", "Spiking ResNet (no zero init)"),
               "lrs": (1e-3, 3e-3, 1e-2), "patience": 5, "rate_blocks": 16, "val_fraction": 0.4},
}


def study_name(dataset: str) -> str:
    """The study a data set's runs make: ``degradation`` on fashion_events, ``degradation_<dataset>`` otherwise
    (its report is ``<out>/<study>.json``)."""
    return "degradation" if dataset == "fashion_events" else f"degradation_{dataset}"


def notation(dataset: str, blocks: int, width: int) -> str:
    return f"{STEMS[dataset].format(w=width)}-{{Block(c{width})}}*{blocks}-FC10"


def run_dir(out: Path, name: str, blocks: int) -> Path:
    return Path(out) / "runs" / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-b{blocks}"


def probe_dir(out: Path, name: str, blocks: int) -> Path:
    """Where the rate probes of a family at ``blocks`` blocks live: ``<out>/probes/<family>-b<blocks>``."""
    return Path(out) / "probes" / run_dir(out, name, blocks).name


def cell_flags(name: str, blocks: int, dataset: str, width: int, epochs: int, per_class: int, lr: float = 1e-3,
               patience: int | None = None, val_fraction: float | None = None) -> dict:
    """The RunConfig fields of one network at one depth: IF neurons, T = 4, Adam at ``lr`` with a cosine schedule
    over ``epochs``, batch 32, zero init (unless the network says otherwise); with ``patience``, stopped on a
    validation plateau of that many epochs; ``val_fraction`` of each class validates (None: the default 10 %)."""
    flags = {"dataset": dataset, "notation": notation(dataset, blocks, width), "neuron": "if", "T": 4,
             "optimizer": "adam", "lr": lr, "scheduler": "cosine", "epochs": epochs, "batch_size": 32,
             "zero_init": True, **FAMILIES[name]}
    if dataset == "fashion_events":
        flags["data_options"] = {"per_class": per_class}
    if patience is not None:
        flags["patience"] = patience
    if val_fraction is not None:
        flags["val_fraction"] = val_fraction
    return flags


def jobs(families, blocks, deep_blocks, seeds) -> list[tuple[str, int, int]]:
    """(family, blocks, seed) of every run, family-major."""
    return [(name, n, seed) for name in families for n in list(blocks) + (list(deep_blocks) if name in DEEP_ONLY else [])
            for seed in range(seeds)]


def share(all_jobs, shard: int, shards: int):
    """The jobs of one of ``shards`` processes: greedy by cost (blocks + 2), so the shards end together."""
    load, mine = [0] * shards, []
    for job in sorted(all_jobs, key=lambda j: -(j[1] + 2)):
        k = load.index(min(load))
        load[k] += job[1] + 2
        if k == shard:
            mine.append(job)
    return set(mine)


def run_study(out: Path, blocks=(2, 8, 16), deep_blocks=(50,), seeds: int = 3, epochs: int = 10, width: int = 16,
              dataset: str = "fashion_events", per_class: int = 300, families=tuple(FAMILIES),
              shard: tuple[int, int] = (0, 1), report_only: bool = False, progress: bool = False,
              lrs=(1e-3,), patience: int | None = None, rate_blocks: int = 8,
              val_fraction: float | None = None) -> dict:
    """Train this process's share of the runs (none with ``report_only``), read back every finished run under
    ``out`` and aggregate them (``progress``: each run's progress bars). Returns ``{"meta", "table"}``.

    One rate in ``lrs`` is used as given. With several, each family's rate (:data:`RATE_FAMILY`) is chosen by
    probe runs of :data:`TUNE_SEED` (never reported) on its ``rate_blocks`` net, as long as the reported runs,
    widened at an edge (:func:`~sj_sew.experiments.sweep.tuned_grid`), and used at every depth; family ``j``'s
    probes are shard ``j % n``'s, and a run whose family's rate is not chosen yet is left for a later call."""
    all_jobs = jobs(families, blocks, deep_blocks, seeds)
    mine = set() if report_only else share(all_jobs, *shard)
    start, results, rates, grids = time.time(), {}, {}, {}

    def flags(name, n, lr):
        return cell_flags(name, n, dataset, width, epochs, per_class, lr, patience, val_fraction)

    for j, family in enumerate(dict.fromkeys(RATE_FAMILY.get(f, f) for f in families)):
        if len(lrs) == 1:
            rates[family] = lrs[0]
            continue
        tuning = not report_only and j % shard[1] == shard[0]

        def probe(lr, family=family, tuning=tuning):
            if tuning:
                print(f"== probe: {family}, {rate_blocks} blocks, lr {lr:g}, seed {TUNE_SEED}", flush=True)
            return train_run(flags(family, rate_blocks, lr), probe_dir(out, family, rate_blocks) / f"lr{lr:g}",
                             TUNE_SEED, train=tuning, progress=progress)
        rates[family], grids[family] = tuned_grid(probe, lrs)
    for name, n, seed in all_jobs:
        lr = rates[RATE_FAMILY.get(name, name)]
        if lr is None:
            if (name, n, seed) in mine:
                print(f"pending: {name}, {n} blocks, seed {seed} waits for its family's probe runs", flush=True)
            continue
        if (name, n, seed) in mine:
            print(f"== {name}, {n} blocks, seed {seed}", flush=True)
        r = train_run(flags(name, n, lr), run_dir(out, name, n), seed, train=(name, n, seed) in mine,
                      progress=progress)
        if r is not None:
            results.setdefault(name, {}).setdefault(n, []).append(r)
    table = {name: {n: {"layers": 2 * n + 2,
                        "final_train_loss": spread([r["history"][-1]["train_loss"] for r in runs]),
                        "selected_test_acc": spread([r["selected_test_acc"] for r in runs]),
                        "last_test_acc": spread([r["last_test_acc"] for r in runs]),
                        "seconds_per_run": spread([r["wall_time_s"] for r in runs]),
                        **({"lr": rates[RATE_FAMILY.get(name, name)],
                            "epochs_run": spread([len(r["history"]) for r in runs])} if len(lrs) > 1 else {})}
                    for n, runs in sorted(by_depth.items())}
             for name, by_depth in results.items()}
    meta = {"dataset": dataset, "per_class": per_class if dataset == "fashion_events" else None,
            "T": 4, "epochs": epochs, "seeds": seeds, "width": width,
            "notation": notation(dataset, 0, width).replace("*0", "*n"),
            "seeds_finished": {k: {n: r["last_test_acc"]["n"] for n, r in v.items()} for k, v in table.items()},
            "optimizer": "adam lr 1e-3 cosine, batch 32, zero init", "selection": "best validation accuracy",
            "seconds": round(time.time() - start),
            "train_seconds_all_runs": round(sum(sum(r["seconds_per_run"]["values"])
                                                for rows in table.values() for r in rows.values()))}
    if len(lrs) > 1:
        meta.update(optimizer="adam, cosine schedule, batch 32, zero init", lr_grid=sorted(lrs),
                    patience=patience, val_fraction=val_fraction, tune_seed=TUNE_SEED, rate_blocks=rate_blocks,
                    rates={f: {"lr": lr, "grid_val_acc": {f"{g:g}": r["selected_val_acc"]
                                                          for g, r in sorted(grids[f].items())}}
                           for f, lr in rates.items()},
                    probe_seconds=round(sum(r["wall_time_s"] for g in grids.values() for r in g.values())),
                    selection=(f"best validation accuracy; each family's rate by probe runs of seed {TUNE_SEED} "
                               f"(not reported) on its {2 * rate_blocks + 2}-layer net, as long as the reported "
                               "runs, widened at an edge, used at every depth"
                               + (f"; runs stop once validation accuracy has not improved for {patience} epochs, "
                                  f"within {epochs}" if patience else "")))
    return {"meta": meta, "table": table}


def write_report(out: Path, study: dict) -> Path:
    """``<out>/<study>.json`` and ``<out>/<study>.png`` (:func:`study_name` of its data set); the JSON's path."""
    return write_study(out, study_name(study["meta"]["dataset"]), study, plot, study["table"], study["meta"])


def format_table(table: dict, study: str = "degradation") -> str:
    lines = [f"{'network':<30} {'layers':>6} {'final train loss':>20} {'test acc % at val-selected':>28} "
             f"{'at last epoch':>18}"]
    for name, rows in table.items():
        for r in rows.values():
            lines.append(f"{name:<30} {r['layers']:>6} {fmt(r['final_train_loss'], 1, 3):>20} "
                         f"{fmt(r['selected_test_acc']):>28} {fmt(r['last_test_acc']):>18}")
    lines += ["", *statistics_lines(study, table)]
    return "\n".join(lines)


def plot(table, path: Path, meta: dict):
    """Final training loss and validation-selected test accuracy against depth, one line per network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in table.items():
        layers = [r["layers"] for r in rows.values()]
        for ax, key, scale in ((axes[0], "final_train_loss", 1), (axes[1], "selected_test_acc", 100)):
            mean = [r[key]["mean"] * scale for r in rows.values()]
            std = [0 if r[key]["n"] < 2 else r[key]["std"] * scale for r in rows.values()]
            ax.errorbar(layers, mean, yerr=std, marker="o", capsize=3, label=name)
    axes[0].set_ylabel("final training loss (log)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("test acc. (%), val.-selected epoch")
    for ax in axes:
        ax.set_xlabel("layers")
    axes[0].legend()
    epochs = (f"a {meta['patience']}-epoch plateau within {meta['epochs']} epochs" if meta.get("patience")
              else f"{meta['epochs']} epochs")
    fig.suptitle(f"Degradation on {meta['dataset']} (T=4, {epochs}, {meta['seeds']} seeds; "
                 "SEW and Spiking ResNet with zero init unless noted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
