"""The tables of REPRODUCTION.md, rendered from the results files (nothing is typed in by hand): one renderer per
study, each a list of markdown lines (empty where the study's results do not exist). ``scripts/repro_tables.py``
is its command line."""
from __future__ import annotations

import json
from pathlib import Path

from .sweep import fmt, spread, stop_text


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def degradation(results: Path, study: str = "degradation") -> list[str]:
    """Table 2's study ``study`` (:data:`~sj_sew.experiments.claims.DEGRADATION_STUDIES`): a row per network and
    depth; where each family's rate was chosen by probes, the rate, the epochs run and the probes' grid."""
    data = _load(results / study / f"{study}.json")
    if data is None:
        return []
    m, tuned = data["meta"], "rates" in data["meta"]
    rows = []
    for name, by_depth in data["table"].items():
        for r in by_depth.values():
            rows.append([name, r["layers"], fmt(r["final_train_loss"], 1, 3), fmt(r["selected_test_acc"]),
                         fmt(r["last_test_acc"]), *([f"{r['lr']:g}", fmt(r["epochs_run"], 1, 1)] if tuned else []),
                         f"{r['seconds_per_run']['mean']:.0f}"])
    header = ["network", "layers", "final train loss", "test acc % (val-selected)", "test acc % (last)",
              *(["lr", "epochs run"] if tuned else []), "s per run"]
    if not tuned:
        return [f"Degradation ({m['dataset']}, {m.get('per_class')} images/class, {m['epochs']} epochs, "
                f"{m['train_seconds_all_runs']} s of training in all):", "", *_table(header, rows)]
    return [f"Degradation ({m['dataset']}, {m['notation']}, T = {m['T']}, seeds 0-{m['seeds'] - 1}, "
            f"{m['selection']}; {m['train_seconds_all_runs']} s of reported training and {m['probe_seconds']} s of "
            "probes):", "", *_table(header, rows), "", *_rate_grid(m["rates"], m["tune_seed"])]


def degradation_digits(results: Path) -> list[str]:
    return degradation(results, "degradation_digits")


def ablation(results: Path) -> list[str]:
    data = _load(results / "ablation" / "ablation.json")
    if data is None:
        return []
    table, m = data["table"], data["meta"]
    lrs = [f"{lr:g}" for lr in m["lr_grid"]]
    main = [[key, f"{r['lr']:g} ({r['table8_lr']:g})", fmt(r["selected_test_acc"]), fmt(r["last_test_acc"]),
             fmt(r["final_train_loss"], 1, 3)] for key, r in table.items()]
    grid = [[key, *(f"**{100 * r['grid_val_acc'][lr]:.1f}**" if float(lr) == r["lr"]
                    else f"{100 * r['grid_val_acc'][lr]:.1f}" for lr in lrs)] for key, r in table.items()]
    return [f"g ablation ({m['dataset']}, {m['per_class']} images/class, {m['net']}, {m['epochs']} epochs, "
            f"{m['train_seconds_all_runs']} s of training in all):", "",
            *_table(["setting", "chosen lr (Table 8's)", "test acc % (val-selected)", "test acc % (last)",
                     "final train loss"], main),
            "", f"Validation accuracy % of seed {m.get('tuning_seed', 0)} over the learning-rate grid (chosen in "
                f"bold):", "",
            *_table(["setting", *lrs], grid)]


def _tuned_heading(what: str, m: dict) -> str:
    """The opening line of a study under the tuning rule of :func:`sj_sew.experiments.surrogate.tuned_cell`."""
    stop = stop_text(m) + (f", {100 * m['val_fraction']:.0f}% of each class validating" if m.get("val_fraction") else "")
    return (f"{what} ({m['dataset']}, {m['net']}, T = {m['T']}, {stop}, seeds "
            f"{', '.join(map(str, m['reported_seeds']))} at each chosen rate; {m['train_seconds_all_runs']} s of "
            f"training in all, {m['train_seconds_reported']} reported + {m['train_seconds_tuning']} tuning, "
            f"{m['compute']}):")


def _rate_grid(table: dict, tuning_seed: int) -> list[str]:
    """Each row's validation accuracy over the rates its tuning seed tried (chosen in bold, '-' not tried)."""
    lrs = sorted({float(lr) for r in table.values() for lr in r["grid_val_acc"]})
    rows = [[key.replace(" | ", ", "), *("-" if f"{lr:g}" not in r["grid_val_acc"] else
                    f"**{100 * r['grid_val_acc'][f'{lr:g}']:.1f}**" if lr == r["lr"] else
                    f"{100 * r['grid_val_acc'][f'{lr:g}']:.1f}" for lr in lrs)] for key, r in table.items()]
    return [f"Validation accuracy % of the tuning seed {tuning_seed} (never reported) over the rate grid "
            f"(chosen in bold; - not tried):", "", *_table(["setting", *(f"{lr:g}" for lr in lrs)], rows)]


def surrogate(results: Path) -> list[str]:
    data = _load(results / "surrogate" / "surrogate.json")
    if data is None:
        return []
    table, m = data["table"], data["meta"]
    rows = [[*key.split(" | "), "yes" if r["zero_init"] else "no", f"{r['lr']:g}", fmt(r["selected_test_acc"]),
             fmt(r["last_test_acc"]), f"{100 * r['paper_cifar10']:.2f}"] for key, r in table.items()]
    return [_tuned_heading("Surrogates", m), "",
            *_table(["surrogate", "network", "zero init", "chosen lr", "test acc % (val-selected)",
                     "test acc % (last)", "paper (CIFAR-10)"], rows),
            "", *_rate_grid(table, m["tuning_seed"])]


def downsample(results: Path) -> list[str]:
    data = _load(results / "downsample" / "downsample.json")
    if data is None:
        return []
    table, m = data["table"], data["meta"]
    rows = [[key, r["family"], f"{r['lr']:g}", fmt(r["selected_test_acc"]), fmt(r["last_test_acc"])]
            for key, r in table.items()]
    out = [_tuned_heading("Downsample shortcut", m), "",
           *_table(["network", "family", "chosen lr", "test acc % (val-selected)", "test acc % (last)"], rows),
           "", *_rate_grid(table, m["tuning_seed"])]
    bound = _load(results / "downsample" / "bound.json")
    if bound is not None:
        cells = [[name, f"{when} (seed {r['seed']})" if when == "trained" else "init", b["block"], f"{b['max']:.3f}",
                  f"{100 * b['fraction_above_2']:.2f}"]
                 for name, r in bound["networks"].items() for when in ("init", "trained") for b in r[when]]
        out += ["", f"Largest output of each downsample block on the test set ({bound['seconds']:.0f} s to "
                    f"measure; the paper's bound: {bound['bound']}):", "",
                *_table(["network", "weights", "block", "max output", "% of outputs above 2"], cells)]
    return out


def systems(results: Path) -> list[str]:
    """The competing systems: a row per network at its chosen rate (where the report records the tuning rule) and
    the tuning seed's grid."""
    from .systems import label

    data = _load(results / "systems.json")
    if data is None:
        return []
    groups = {}
    for section in ("ms_resnet_depth", "ds_resnet_mlf"):
        for r in data.get(section, []):
            groups.setdefault(label(section, r["kwargs"]), []).append(r)
    tuning, s = data.get("tuning", {}), data["setting"]
    rows = []
    for name, runs in groups.items():
        rate = [f"{tuning[name]['lr']:g}", fmt(spread([len(r["val_accuracy_per_epoch"]) for r in runs]), 1, 1)] \
            if name in tuning else []
        rows.append([name, f"{runs[0]['params']:,}", *rate, fmt(spread([r["selected_test_accuracy"] for r in runs])),
                     fmt(spread([r["final_test_accuracy"] for r in runs])),
                     f"{sum(r['seconds'] for r in runs) / len(runs):.0f}"])
    header = ["network", "parameters", *(["chosen lr", "epochs run"] if tuning else []), "test acc % (val-selected)",
              "test acc % (last)", "s per run"]
    if not tuning:
        return ["Competing systems (" + s["dataset"] + "):", "", *_table(header, rows)]
    seeds = sorted({r["seed"] for runs in groups.values() for r in runs})
    return [f"Competing systems ({s['dataset']}, T = {s['T']}, {s['stop']}, seeds {', '.join(map(str, seeds))} "
            f"at each chosen rate; {data['train_seconds_reported'] + data['train_seconds_tuning']} s of training in "
            f"all, {data['train_seconds_reported']} reported + {data['train_seconds_tuning']} tuning, {s['compute']}):",
            "",
            *_table(header, rows), "", *_rate_grid(tuning, s["tuning_seed"])]


def energy(results: Path) -> list[str]:
    data = _load(results / "energy" / "energy.json")
    if data is None:
        return []
    rows = [[name, f"{r['sops'] / 1e3:.0f}", f"{r['snn_energy_pj'] / 1e6:.2f}", f"{r['ann_macs'] / 1e6:.2f}",
             f"{r['ann_energy_pj'] / 1e6:.2f}", f"{r['ann_energy_pj'] / r['snn_energy_pj']:.1f}",
             "n/a" if r["spikingjelly_synops"] is None else f"{r['spikingjelly_synops'] / 1e3:.0f}"]
            for name, r in data["results"].items()]
    return ["Synaptic operations and energy per sample:", "",
            *_table(["network (sweep cell)", "SOPs (k)", "SNN energy (µJ)", "ANN MACs (M)", "ANN energy (µJ)",
                     "ANN/SNN energy", "SJ SynOps (k)"], rows)]


def firing_trained(results: Path) -> list[str]:
    data = _load(results / "firing_rates" / "trained.json")
    if data is None:
        return []
    rows = [[name, *(f"{sum(c[k]) / len(c[k]):.3f}" for k in ("rate_a", "rate_o")), f"{max(c['rate_o']):.3f}"]
            for name, c in data["curves"].items()]
    return ["Firing rates of the trained nets (mean over blocks):", "",
            *_table(["network (sweep cell)", "mean rate of A^l", "mean of O^l", "max of O^l"], rows)]


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _ann_cell(ann: dict | None) -> str:
    if not ann:
        return "not run"
    return f"{_pct(ann['selected_test_acc'])} (lr {ann['lr']:g}, epoch {ann['selected_epoch'] + 1} of {ann['epochs']})"


def baselines_table(found: dict) -> list[str]:
    """The baselines of every study in ``found`` (study -> the JSON of scripts/repro_baselines.py): a row with the
    linear readouts (summed, side by side) and the ANN twin of its reference network, then a row per further ANN
    twin (e.g. deeper nets on the same data); test accuracy with the validation choice."""
    rows = []
    for study, e in found.items():
        lin = e.get("linear", {})
        cells = [f"{_pct(lin[k]['test_acc'])} (C {lin[k]['C']:g})" if k in lin else "not run"
                 for k in ("summed", "side by side")]
        d = e["data"]
        data = [study, f"{d['dataset']} {d['data_options'].get('per_class', '')}".strip(),
                "/".join(str(d["sizes"][k]) for k in ("train", "val", "test"))]
        ann = e.get("ann")
        rows.append([*data, *cells, _ann_cell(ann), (ann or {}).get("network", "")])
        rows += [[*data, "as above", "as above", _ann_cell(a), a["network"]] for a in e.get("ann_more", {}).values()]
    return _table(["study", "data (per class)", "train/val/test", "linear, summed: test % (chosen C)",
                   "linear, side by side: test % (chosen C)", "ANN twin: test % at val-selected epoch",
                   "ANN layout"], rows)


def baselines(results: Path, study: str) -> list[str]:
    """The baseline row of ``study`` (results/baselines/<study>.json), or nothing."""
    data = _load(Path(results) / "baselines" / f"{study}.json")
    if data is None:
        return []
    return [f"Baselines on the same data and split ({study}):", "", *baselines_table({study: data})]


def verdicts(results: Path, study: str) -> list[str]:
    """The computed verdict of each claim of ``study`` (:mod:`sj_sew.experiments.claims`), or nothing."""
    from .claims import evaluate_study

    return verdict_table(study, evaluate_study(Path(results), study))


def verdict_table(study: str, found) -> list[str]:
    """The verdict table of ``study``'s evaluated claims (:func:`sj_sew.experiments.claims.evaluate_rows`), or
    nothing: the one renderer of every verdict in REPRODUCTION.md."""
    if not found:
        return []
    gate = found[0].gate
    rows = [[c.claim.id, c.claim.text, c.claim.paper, f"{c.claim.versus}: {c.diff_text}",
             c.measured, c.verdict] for c in found]
    return [f"Verdicts of {study}, computed from results/ ({gate}):", "",
            *_table(["id", "claim", "paper", "here: A - B, 95% interval", "measured", "verdict"], rows)]


def gates(results: Path) -> list[str]:
    """One row per study with trained networks: its best network against its strongest linear readout, the
    interval of the difference and whether the study reaches a verdict (:func:`sj_sew.experiments.claims.gate`)."""
    from . import claims, stats

    rows = []
    for study in claims.GATED:
        found, linear = claims.load_study(Path(results), study), claims.study_readout(Path(results), study)
        if not found or linear is None:
            continue
        best, d = claims.best_against_readout(found, linear)
        reaches = "yes" if stats.verdict(d) == stats.A_BETTER else "no: every claim is untestable here"
        rows.append([study, f"{best.replace(' | ', ', ')} ({fmt(spread(claims.accuracies(found[best])))})",
                     f"{linear['layout']} ({100 * linear['test_acc']:.1f})", d.text(100, 1), reaches])
    if not rows:
        return []
    return ["Which studies reach a verdict: each study's best network (test % at the validation-selected epoch) "
            "against the stronger linear readout of its own data and split, computed from results/:", "",
            *_table(["study", "best network", "linear readout (test %)", "network - readout, 95% interval",
                     "reaches a verdict"], rows)]


def temporal_markdown(data: dict) -> list[str]:
    """REPRODUCTION.md's tables of the temporal benchmark (§8), rendered from ``temporal.json``'s ``data``."""
    from .temporal import DEPTH_NET, TUNE_SEED, rate_cell, verdicts

    lines = []
    r = data.get("linear_readout")
    if r:
        lines += ["| linear readout (T = 16) | C (chosen on validation) | validation % | test % |",
                  "| --- | --- | --- | --- |"]
        for name, key in (("frames summed over time", "summed"), ("frames side by side", "frames")):
            lines.append(f"| {name} | {r[key]['C']:g} | {100 * r[key]['val_acc_chosen']:.1f} | "
                         f"{100 * r[key]['test_acc']:.1f} |")
        lines.append("")
    lines += ["| cell | network | T (T_train) | test % (val-selected) | test % (last) | train % (last) | "
              "train - test gap (points) | final train loss | lr |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    depth = {cell: row for cell, row in data["table"].items() if row.get("layers")}
    for cell, row in data["table"].items():
        if cell in depth:
            continue
        frames = f"{row['T']} ({row['T_train']})" if row["T_train"] else f"{row['T']}"
        lines.append(f"| {cell} | {row.get('network', 'SEW ADD')} | {frames} | "
                     f"{fmt(row['selected_test_acc'])} | {fmt(row['last_test_acc'])} | {fmt(row['last_train_acc'])} | "
                     f"{fmt(row['gap_train_test'])} | {fmt(row['final_train_loss'], 1, 3)} | {row['lr']:g} |")
    if depth:
        lines += ["", f"Degradation (Table 2) on these frames: {DEPTH_NET.format(blocks='n')} (IF neurons), "
                      "T = 16 without RTD, SEW ADD and Spiking ResNet with zero init unless noted:", "",
                  "| network | layers | test % (val-selected) | test % (last) | train % (last) | final train loss "
                  "| lr |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in depth.values():
            lines.append(f"| {row['network']} | {row['layers']} | {fmt(row['selected_test_acc'])} | "
                         f"{fmt(row['last_test_acc'])} | {fmt(row['last_train_acc'])} | "
                         f"{fmt(row['final_train_loss'], 1, 3)} | {row['lr']:g} |")
    tuned = {cell: row for cell, row in data["table"].items() if row.get("grid_val_acc") and rate_cell(cell) == cell}
    if tuned:
        rates = sorted({float(lr) for row in tuned.values() for lr in row["grid_val_acc"]})
        lengths = stop_text({**data["meta"], "epochs": data["meta"].get("tune_epochs")})
        lines += ["", f"Validation accuracy % of the probe runs (seed {TUNE_SEED}, {lengths}; chosen in bold, - not "
                      "probed):", "",
                  "| cell | " + " | ".join(f"{lr:g}" for lr in rates) + " |", "| --- |" + " --- |" * len(rates)]
        for cell, row in tuned.items():
            accs = {float(lr): acc for lr, acc in row["grid_val_acc"].items()}
            marks = [("-" if lr not in accs else f"**{100 * accs[lr]:.1f}**" if lr == row["lr"]
                      else f"{100 * accs[lr]:.1f}") for lr in rates]
            lines.append(f"| {cell} | " + " | ".join(marks) + " |")
    found = verdicts(data["table"], data.get("linear_readout"))
    for study in dict.fromkeys(e.claim.study for e in found):
        lines += ["", *verdict_table(study, [e for e in found if e.claim.study == study])]
    return lines


def temporal(results: Path) -> list[str]:
    """The temporal benchmark (§8): its readout, its cells, the probes and the verdicts of its two studies, then
    the baselines of each."""
    from .claims import TEMPORAL_STUDIES

    data = _load(results / "temporal" / "temporal.json")
    lines = [] if data is None else temporal_markdown(data)
    for study in TEMPORAL_STUDIES:
        if more := baselines(results, study):
            lines += ["", *more]
    return lines


#: Every study's tables, in REPRODUCTION.md's order: (results renderer, study name for baselines and verdicts)
RENDERERS = ((degradation, "degradation"), (degradation_digits, "degradation_digits"), (ablation, "ablation"),
             (firing_trained, None), (None, "gradients"), (surrogate, "surrogate"), (downsample, "downsample"),
             (energy, None), (systems, "systems"), (temporal, None))


def render_all(results: Path) -> str:
    """Every table whose results exist under ``results``, as markdown; each study's baselines and verdicts
    follow its table."""
    out = gates(results) + [""]
    for render, study in RENDERERS:
        parts = [render(Path(results)) if render else []]
        if study:
            parts += [baselines(results, study), verdicts(results, study)]
        for lines in parts:
            if lines:
                out += lines + [""]
    return "\n".join(out)
