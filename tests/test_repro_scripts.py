"""Smoke tests: the reproduction scripts run end to end in their --quick setting, their tables hold exactly
what their runs recorded (and --report-only rebuilds them), and their numbers carry the paper's qualitative
signature where the quick setting already shows it."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sj_sew.data.idx import FASHION_MNIST_DIR

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    if str(SCRIPTS) not in sys.path:  # the scripts import their shared argparse helper (_sweep) as a sibling
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repro_gradients_quick(tmp_path):
    load("repro_gradients").main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "gradients.json").read_text())
    assert (tmp_path / "gradients.png").stat().st_size > 10_000
    curves = data["curves"]
    # zero init makes every SEW g an identity network: identical gradients whatever g is
    for setting in ("1.0-2.0", "0.5-2.0", "1.0-3.0"):
        add = curves[f"{setting}-True-SEW ADD"]["grad_norm"]
        assert curves[f"{setting}-True-SEW IAND"]["grad_norm"] == pytest.approx(add)
        assert curves[f"{setting}-True-SEW AND"]["grad_norm"] == pytest.approx(add)
    # Vth = 0.5 with zero init: sigma'(0.5) < 1 compounds over Spiking ResNet blocks (paper eq. 8)
    spk = curves["0.5-2.0-True-Spiking ResNet"]["grad_norm"]
    assert spk[0] < spk[-1] / 5


def test_repro_firing_rates_quick(tmp_path):
    load("repro_firing_rates").main(["--quick", "--out", str(tmp_path)])
    curves = json.loads((tmp_path / "init.json").read_text())["curves"]
    assert curves["SEW ADD (zero init)"]["rate_a"] == pytest.approx([0.0] * len(curves["SEW ADD"]["rate_a"]))
    assert curves["SEW AND (zero init)"]["rate_a"] == pytest.approx([1.0] * len(curves["SEW ADD"]["rate_a"]))
    # with IF neurons a zero-init Spiking ResNet is an identity too: same block outputs as SEW
    assert curves["Spiking ResNet (zero init)"]["rate_o"] == pytest.approx(curves["SEW IAND (zero init)"]["rate_o"])


# The training-based reproductions run through sj_sew.training (scripts/_sweep.py); one line is enough to
# smoke-test them.
needs_default_line = pytest.mark.skipif(not __import__("sj_sew").SJ2, reason="smoke-tested on the default line")
# the ablation and degradation studies run on Fashion-MNIST events (Debian's files, installed by setup_env.sh)
needs_fashion_mnist = pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                                         reason="Debian's dataset-fashion-mnist is not installed")


def _assert_row_matches_its_runs(row: dict, run_dir: Path):
    """A table row's numbers are exactly what its runs' metrics.jsonl and checkpoints say, seed by seed: the
    test accuracy at the epoch of best validation accuracy (best.pt's epoch) and at the last epoch."""
    from sj_sew.training import read_checkpoint, read_metrics

    seeds = sorted(run_dir.glob("seed*"))
    assert seeds and row["selected_test_acc"]["n"] == len(seeds)
    metrics = [read_metrics(d / "metrics.jsonl") for d in seeds]
    selected = [max(m, key=lambda r: (r["val_acc"], -r["epoch"])) for m in metrics]  # the earliest on ties
    assert row["selected_test_acc"]["values"] == [r["test_acc"] for r in selected]
    assert row["last_test_acc"]["values"] == [m[-1]["test_acc"] for m in metrics]
    if "final_train_loss" in row:
        assert row["final_train_loss"]["values"] == [m[-1]["train_loss"] for m in metrics]
    for d, m, sel in zip(seeds, metrics, selected):
        assert json.loads((d / "summary.json").read_text())["history"] == m
        assert read_checkpoint(d / "checkpoint.pt")["epoch"] == m[-1]["epoch"]
        assert read_checkpoint(d / "best.pt")["epoch"] == sel["epoch"]


def read_config(run_dir: Path) -> dict:
    """The run configuration of seed 0 of a sweep cell."""
    from sj_sew.training import read_checkpoint

    return read_checkpoint(run_dir / "seed0" / "checkpoint.pt")["config"]


def _report_only_reproduces(script: str, argv: list[str], table_file: Path):
    """Re-aggregating the finished runs (--report-only) trains nothing and gives the same table."""
    table = json.loads(table_file.read_text())["table"]
    runs = {p: p.stat().st_mtime_ns for p in (table_file.parent / "runs").rglob("*") if p.is_file()}
    load(script).main(argv + ["--report-only"])
    assert json.loads(table_file.read_text())["table"] == table
    assert {p: p.stat().st_mtime_ns for p in (table_file.parent / "runs").rglob("*") if p.is_file()} == runs


@needs_default_line
@needs_fashion_mnist
def test_repro_ablation_and_energy_quick(tmp_path):
    argv = ["--quick", "--networks", "SEW ADD", "Plain", "--out", str(tmp_path)]
    script = load("repro_ablation")
    rows = script.main(argv)
    assert set(rows) == {"SEW ADD RTD", "SEW ADD", "Plain RTD", "Plain"}
    assert (tmp_path / "ablation.png").stat().st_size > 10_000
    for key, row in rows.items():
        setting = tmp_path / "runs" / key.replace(" ", "_")
        grid = {float(d.name.removeprefix("lr")): d for d in setting.glob("lr*")}
        assert sorted(grid) == [0.01, 0.1] and row["grid_val_acc"].keys() == {"0.01", "0.1"}
        val = {lr: json.loads((d / "seed0" / "summary.json").read_text())["selected_val_acc"] for lr, d in grid.items()}
        assert row["grid_val_acc"] == {f"{lr:g}": v for lr, v in val.items()}
        # the chosen rate is the grid's best on validation; its runs are the row
        assert row["lr"] == max(sorted(val), key=lambda lr: (val[lr], -lr))
        _assert_row_matches_its_runs(row, grid[row["lr"]])
        cfg = read_config(grid[row["lr"]])
        assert cfg["lr"] == row["lr"] and cfg["dataset"] == "fashion_events" and cfg["val_fraction"] == 0.1
        assert (cfg["T"], cfg["T_train"]) == ((4, 3) if key.endswith("RTD") else (4, None))
    # shards split the settings between processes and write no report of their own
    shard_out = tmp_path / "sharded"
    for k in (1, 0):
        script.main(["--quick", "--networks", "Plain", "--shard", f"{k}/2", "--out", str(shard_out)])
        assert not (shard_out / "ablation.json").exists()
    assert sorted(p.name for p in (shard_out / "runs").iterdir()) == ["Plain", "Plain_RTD"]
    _report_only_reproduces("repro_ablation", argv, tmp_path / "ablation.json")

    energy = load("repro_energy").main(["--from-ablation", str(tmp_path), "--batches", "1",
                                        "--out", str(tmp_path / "energy")])
    assert len(energy) == 4
    for r in energy.values():
        assert r["sops"] > 0 and r["ann_macs"] > 0 and (r["T"], r["dataset"]) == (4, "fashion_events")
        assert r["snn_energy_pj"] == pytest.approx(0.9 * r["sops"] + 4.6 * r["macs"])
        assert r["ann_energy_pj"] == pytest.approx(4.6 * r["ann_macs"])
    ann_macs = {}
    for name, r in energy.items():  # RTD changes the training, not the network: the same ANN cost
        ann_macs.setdefault(name.split()[0], set()).add(r["ann_macs"])
    assert set(ann_macs) == {"sew", "plain"} and all(len(macs) == 1 for macs in ann_macs.values())

    load("repro_firing_rates").main(["--from-ablation", str(tmp_path), "--batches", "1", "--out", str(tmp_path / "f")])
    report = json.loads((tmp_path / "f" / "trained.json").read_text())
    trained = report["curves"]
    assert (report["meta"]["batches"], report["meta"]["batch_size"], "depth" in report["meta"]) == (1, 16, False)
    assert len(report["meta"]["checkpoints"]) == len(trained)  # what was probed, not the init probe's defaults
    assert sorted(trained) == sorted(f"{key.replace(' ', '_')}/lr{row['lr']:g} ({'plain' if 'Plain' in key else 'sew'})"
                                     for key, row in rows.items())


def test_compare_systems_tunes_on_a_seed_it_does_not_report_and_selects_on_validation(tmp_path):
    from sj_sew.experiments.sweep import TUNING_SEED

    out = tmp_path / "systems.json"
    argv = ["--quick", "--ms-depths", "8", "--skip", "mlf", "conversion", "--train-size", "300", "--test-size", "100",
            "--out", str(out)]
    load("compare_systems").main(argv)
    report = json.loads(out.read_text())
    (run,) = report["ms_resnet_depth"]
    assert run["train_size"] + run["val_size"] == 300 and 115 <= run["val_size"] <= 125  # 40 % of each class
    epoch = max(range(run["epochs_run"]), key=lambda e: (run["val_accuracy_per_epoch"][e], -e))
    assert run["selected_epoch"] == epoch
    assert run["selected_test_accuracy"] == run["test_accuracy_per_epoch"][epoch]
    tuning = report["tuning"]["MS-ResNet, 8 layers"]
    assert run["seed"] == 0 != TUNING_SEED and set(tuning["grid_val_acc"]) == {"0.001", "0.003"}
    assert run["lr"] == tuning["lr"] == max((0.001, 0.003), key=lambda lr: (tuning["grid_val_acc"][f"{lr:g}"], -lr))
    runs = tmp_path / "systems_runs"
    assert len(list((runs / "tuning").rglob("seed1000.json"))) == 2 and len(list(runs.rglob("seed0.json"))) == 1

    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    out.write_text(json.dumps({**report, "conversion": {"kept": True}}))
    load("compare_systems").main([*argv, "--report-only"])  # reads every run back, trains nothing
    again = json.loads(out.read_text())
    assert again["ms_resnet_depth"] == [run] and again["conversion"] == {"kept": True}
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")} == before


def test_compare_systems_refuses_a_run_of_another_setting(tmp_path):
    from sj_sew.experiments import systems

    path = systems.run_path(tmp_path, "MS-ResNet, 8 layers", 1e-3, 0, tuning=False)
    systems.cached_run(path, {"lr": 1e-3}, True, lambda: {"seconds": 1.0})
    assert systems.cached_run(path, {"lr": 1e-3}, False, None)["seconds"] == 1.0
    with pytest.raises(ValueError, match=r"other settings \(lr differ\)"):
        systems.cached_run(path, {"lr": 3e-3}, True, lambda: {"seconds": 2.0})
    assert systems.cached_run(tmp_path / "none.json", {}, False, None) is None
    path.write_text(json.dumps({"seconds": 1.0}))  # a record that says nothing of how it was trained
    with pytest.raises(ValueError, match="records no 'setting'"):
        systems.cached_run(path, {"lr": 1e-3}, False, None)


@needs_default_line
@needs_fashion_mnist
def test_repro_degradation_quick(tmp_path):
    argv = ["--quick", "--out", str(tmp_path / "degradation")]  # 1 and 2 blocks
    table = load("repro_degradation").main(argv)
    assert set(table) == {"SEW ADD", "Spiking ResNet", "Plain", "Spiking ResNet (no zero init)"}
    for name, rows in table.items():
        assert list(rows) == [1, 2]
        for n, row in rows.items():
            run_dir = tmp_path / "degradation" / "runs" / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-b{n}"
            _assert_row_matches_its_runs(row, run_dir)
            cfg = read_config(run_dir)
            assert row["layers"] == 2 * n + 2 and cfg["dataset"] == "fashion_events"
            assert cfg["notation"] == f"c16k3s2-BN-IF-MPk2s2-{{Block(c16)}}*{n}-FC10"
            assert cfg["zero_init"] == (name != "Spiking ResNet (no zero init)")
    _report_only_reproduces("repro_degradation", argv, tmp_path / "degradation" / "degradation.json")
    # REPRODUCTION.md's table is rendered from the results file, one row per network and depth
    lines = load("repro_tables").degradation(tmp_path)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| network") and "---" not in line]
    assert len(rows) == 8 and rows[0].startswith("| SEW ADD | 4 | ")
    assert f"{table['Plain'][2]['last_test_acc']['mean'] * 100:.1f}" in rows[5]


@needs_default_line
def test_repro_surrogate_quick(tmp_path):
    """Every setting tunes its rate on seed 1000 alone (kept under runs/tuning, never reported) and reports seed 0
    at the rate whose tuning run validated best; Spiking ResNet with zero init, SEW ADD without."""
    from sj_sew.training import read_metrics

    argv = ["--quick", "--out", str(tmp_path / "s")]
    script = load("repro_surrogate")
    rows = script.main(argv)
    assert len(rows) == 6
    for key, row in rows.items():
        surrogate, net = key.split(" | ")
        sg = script.SURROGATES[surrogate]
        cell = f"{surrogate.replace(' ', '_')}-{net.replace(' ', '_')}"
        tuning = {float(d.name.removeprefix("lr")): d for d in (tmp_path / "s" / "runs" / "tuning" / cell).iterdir()}
        assert sorted(tuning) == [1e-3, 1e-2]
        assert all([p.name for p in d.iterdir()] == ["seed1000"] for d in tuning.values())
        best = {lr: max(r["val_acc"] for r in read_metrics(d / "seed1000" / "metrics.jsonl"))
                for lr, d in tuning.items()}
        assert row["lr"] == max(sorted(best), key=lambda lr: best[lr])  # the smaller rate on a tie
        run_dir = tmp_path / "s" / "runs" / "reported" / cell / f"lr{row['lr']:g}"
        assert [p.name for p in (run_dir.parent).iterdir()] == [run_dir.name] and row["seeds"] == [0]
        _assert_row_matches_its_runs(row, run_dir)
        config = read_config(run_dir)
        assert config["surrogate"] == sg and row["paper_cifar10"] == script.PAPER[(surrogate, net)]
        assert config["lr"] == row["lr"] and config["zero_init"] == (net == "Spiking ResNet")
    _report_only_reproduces("repro_surrogate", argv, tmp_path / "s" / "surrogate.json")


def test_degradation_shards_cover_every_run_once():
    script = load("repro_degradation")
    jobs = script.jobs(list(script.FAMILIES), [2, 8, 16], [50], 3)
    assert len(jobs) == 4 * 3 * 3 + 2 * 3  # the deep nets only for SEW ADD and Spiking ResNet
    shares = [script.share(jobs, k, 2) for k in range(2)]
    assert shares[0] | shares[1] == set(jobs) and not shares[0] & shares[1]
    cost = [sum(n + 2 for _, n, _ in s) for s in shares]
    assert abs(cost[0] - cost[1]) <= 52  # balanced to within one of the deepest runs


def test_studies_never_write_into_results_unless_told():
    from sj_sew.experiments.sweep import output_dir

    assert output_dir(None, "ablation", quick=True) == Path("runs/quick/ablation")
    assert output_dir(None, "ablation", quick=False) == Path("runs/ablation")
    assert output_dir(Path("results/ablation"), "ablation", quick=False) == Path("results/ablation")
    assert output_dir(Path("elsewhere"), "ablation", quick=True) == Path("elsewhere")


RESULTS = SCRIPTS.parent / "results"


@pytest.mark.parametrize("study", ["ablation", "degradation", "surrogate", "downsample"])
def test_report_only_rebuilds_the_committed_results_byte_for_byte(study, tmp_path):
    """--report-only on a copy of results/<study> (never on results/ itself) writes the committed JSON again,
    byte for byte, from the committed runs' summaries."""
    import shutil

    copy = tmp_path / study
    shutil.copytree(RESULTS / study, copy)
    load(f"repro_{study}").main(["--report-only", "--out", str(copy)])
    assert (copy / f"{study}.json").read_bytes() == (RESULTS / study / f"{study}.json").read_bytes()


def _committed_cells(study: str, top: str = "runs"):
    """(run directory, seed, summary) of every committed run of a study (under ``top``: its runs or probes)."""
    for summary in sorted((RESULTS / study / top).rglob("summary.json")):
        yield summary.parent.parent, int(summary.parent.name.removeprefix("seed")), json.loads(summary.read_text())


def _old_config(argv: list[str], seed: int, out: Path):
    """The configuration the committed run was trained with: its train.py flags as the sweeps passed them."""
    from sj_sew.training.cli import config_from_argv

    return config_from_argv(["--threads", "1", *argv, "--out", str(out), "--seed", str(seed), "--no-progress",
                             "--no-tensorboard"])[0]


def _new_config(flags: dict, seed: int, out: Path):
    from sj_sew.experiments.sweep import run_flags
    from sj_sew.training import resolve_config

    return resolve_config(run_flags(flags, out, seed))


@pytest.mark.parametrize("study", ["ablation", "degradation", "degradation_digits", "surrogate", "downsample"])
def test_studies_configure_the_committed_runs_exactly(study, tmp_path):
    """Every committed run's RunConfig, built from the study's RunConfig fields, equals the one its recorded
    train.py flags (or RunConfig fields) give."""
    from sj_sew.experiments import ablation, degradation, downsample, surrogate

    meta = json.loads((RESULTS / study / f"{study}.json").read_text())["meta"]
    cells = {}
    if study == "ablation":
        for key in ablation.settings(ablation.NETWORKS):
            for lr in meta["lr_grid"]:
                cells[ablation.run_dir(RESULTS / study, key, lr)] = ablation.cell_flags(
                    key, lr, meta["T"], meta["epochs"], meta["per_class"])
    elif study == "degradation":
        for name, n, _ in degradation.jobs(degradation.FAMILIES, [2, 8, 16], [50], 1):
            cells[degradation.run_dir(RESULTS / study, name, n)] = degradation.cell_flags(
                name, n, meta["dataset"], meta["width"], meta["epochs"], meta["per_class"])
    elif study == "degradation_digits":  # reported runs at their family's chosen rate, and every probe run
        setting = degradation.SETTINGS["digits"]
        for name, n, _ in degradation.jobs(setting["families"], setting["blocks"], setting["deep_blocks"], 1):
            rate = meta["rates"][degradation.RATE_FAMILY.get(name, name)]["lr"]
            cells[degradation.run_dir(RESULTS / study, name, n)] = degradation.cell_flags(
                name, n, "digits", meta["width"], meta["epochs"], 0, rate, meta["patience"], meta["val_fraction"])
        for family, r in meta["rates"].items():
            for lr in r["grid_val_acc"]:
                cells[degradation.probe_dir(RESULTS / study, family, meta["rate_blocks"]) / f"lr{lr}"] = \
                    degradation.cell_flags(family, meta["rate_blocks"], "digits", meta["width"], meta["epochs"], 0,
                                           float(lr), meta["patience"], meta["val_fraction"])
    elif study == "downsample":  # reported and tuning runs alike, as the surrogate study's
        for net in downsample.NETWORKS:
            for tuning in (False, True):
                for lr in surrogate.LR_LADDER:
                    cells[surrogate.cell_dir(RESULTS / study, net, lr, tuning)] = downsample.cell_flags(
                        net, lr, meta["epochs"])
    else:  # reported and tuning runs alike (runs/<reported|tuning>/<cell>/lr<lr>/seed<k>)
        for sg in surrogate.SURROGATES:
            for net in surrogate.NETWORKS:
                for tuning in (False, True):
                    for lr in surrogate.LR_LADDER:
                        cells[surrogate.cell_dir(RESULTS / study, surrogate.key_of(sg, net), lr, tuning)] = \
                            surrogate.cell_flags(sg, net, lr, meta["epochs"])
    checked = 0
    for run_dir, seed, summary in [*_committed_cells(study), *_committed_cells(study, "probes")]:
        out = tmp_path / f"seed{seed}"
        recorded = (_old_config(summary["argv"], seed, out) if "argv" in summary  # runs of train.py's flags
                    else _new_config(summary["flags"], seed, out))  # runs of RunConfig fields (sweep.train_run)
        assert _new_config(cells[run_dir], seed, out) == recorded, run_dir
        checked += 1
    if study in ("surrogate", "downsample"):  # each setting: its reported seeds and one tuning run per rate tried
        table = json.loads((RESULTS / study / f"{study}.json").read_text())["table"]
        settings = 6 if study == "surrogate" else 2
        assert checked == sum(len(r["seeds"]) + len(r["grid_val_acc"]) for r in table.values()) >= settings * (5 + 4)
    elif study == "degradation_digits":  # 8 cells x 5 seeds, and one probe per rate each family tried
        assert checked == 8 * 5 + sum(len(r["grid_val_acc"]) for r in meta["rates"].values())
    else:
        assert checked == {"ablation": 70, "degradation": 42}[study]


def test_reproduction_md_holds_the_tables_rendered_from_results():
    """Every table row repro_tables.py renders from the committed results/ is in REPRODUCTION.md as it is."""
    root = SCRIPTS.parent
    text = (root / "REPRODUCTION.md").read_text()
    tables = load("repro_tables")
    for render in (tables.degradation, tables.ablation, tables.firing_trained, tables.surrogate, tables.energy,
                   tables.systems):
        rows = [line for line in render(root / "results") if line.startswith("| ")]
        assert len(rows) > 4, render.__name__
        missing = [row for row in rows if row not in text]
        assert not missing, f"{render.__name__}: rows not in REPRODUCTION.md: {missing[:3]}"
