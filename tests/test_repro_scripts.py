"""Smoke tests: the reproduction scripts run end to end in their --quick setting, their tables hold exactly
what their runs recorded (and --report-only rebuilds them), and their numbers carry the paper's qualitative
signature where the quick setting already shows it."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    if str(SCRIPTS) not in sys.path:  # the scripts import their shared helper (_sweep) as a sibling
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


def _assert_row_matches_its_runs(row: dict, run_dir: Path):
    """A table row's numbers are exactly what its runs' metrics.jsonl and checkpoints say, seed by seed."""
    from sj_sew.training import read_checkpoint, read_metrics

    seeds = sorted(run_dir.glob("seed*"))
    assert seeds and row["best_test_acc"]["n"] == len(seeds)
    metrics = [read_metrics(d / "metrics.jsonl") for d in seeds]
    assert row["best_test_acc"]["values"] == [max(r["test_acc"] for r in m) for m in metrics]
    assert row["last_test_acc"]["values"] == [m[-1]["test_acc"] for m in metrics]
    if "final_train_loss" in row:
        assert row["final_train_loss"]["values"] == [m[-1]["train_loss"] for m in metrics]
    for d, m in zip(seeds, metrics):
        assert json.loads((d / "summary.json").read_text())["history"] == m
        assert read_checkpoint(d / "checkpoint.pt")["epoch"] == m[-1]["epoch"]
        selected = max(m, key=lambda r: (r["val_acc"], -r["epoch"]))  # validation-selected, earliest on ties
        assert read_checkpoint(d / "best.pt")["epoch"] == selected["epoch"]


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
def test_repro_ablation_and_energy_quick(tmp_path):
    argv = ["--quick", "--networks", "SEW ADD", "Plain", "--out", str(tmp_path)]
    rows = load("repro_ablation").main(argv)
    assert set(rows) == {"SEW ADD RTD", "SEW ADD", "Plain RTD", "Plain"}
    assert (tmp_path / "ablation.png").stat().st_size > 10_000
    for key, row in rows.items():
        _assert_row_matches_its_runs(row, tmp_path / "runs" / key.replace(" ", "_"))
    rtd = read_config(tmp_path / "runs" / "SEW_ADD_RTD")
    assert (rtd["T"], rtd["T_train"], rtd["lr"]) == (4, 3, 0.001)
    assert read_config(tmp_path / "runs" / "Plain")["T_train"] is None
    _report_only_reproduces("repro_ablation", argv, tmp_path / "ablation.json")

    energy = load("repro_energy").main(["--from-ablation", str(tmp_path), "--batches", "1",
                                        "--out", str(tmp_path / "energy")])
    assert len(energy) == 4
    for r in energy.values():
        assert r["sops"] > 0 and r["ann_macs"] > 0 and (r["T"], r["dataset"]) == (4, "events")
        assert r["snn_energy_pj"] == pytest.approx(0.9 * r["sops"] + 4.6 * r["macs"])
        assert r["ann_energy_pj"] == pytest.approx(4.6 * r["ann_macs"])
    ann_macs = {}
    for name, r in energy.items():  # RTD changes the training, not the network: the same ANN cost
        ann_macs.setdefault(name.split()[0], set()).add(r["ann_macs"])
    assert set(ann_macs) == {"sew", "plain"} and all(len(macs) == 1 for macs in ann_macs.values())


@needs_default_line
def test_repro_degradation_quick(tmp_path):
    argv = ["--quick", "--out", str(tmp_path / "d")]  # 1 and 2 blocks
    table = load("repro_degradation").main(argv)
    assert set(table) == {"SEW ADD", "Spiking ResNet", "Plain", "Spiking ResNet (no zero init)"}
    for name, rows in table.items():
        assert list(rows) == [1, 2]
        for n, row in rows.items():
            run_dir = tmp_path / "d" / "runs" / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-b{n}"
            _assert_row_matches_its_runs(row, run_dir)
            assert row["layers"] == 2 * n + 2 and row["best_test_acc"]["mean"] > 0.5  # 1 epoch on digits: >> 10 %
            assert read_config(run_dir)["zero_init"] == (name != "Spiking ResNet (no zero init)")
    _report_only_reproduces("repro_degradation", argv, tmp_path / "d" / "degradation.json")


@needs_default_line
def test_repro_surrogate_quick(tmp_path):
    argv = ["--quick", "--out", str(tmp_path / "s")]
    script = load("repro_surrogate")
    rows = script.main(argv)
    assert len(rows) == 6
    for key, row in rows.items():
        surrogate, net = key.split(" | ")
        sg = script.SURROGATES[surrogate]
        run_dir = tmp_path / "s" / "runs" / f"{sg}-{net.replace(' ', '_')}"
        _assert_row_matches_its_runs(row, run_dir)
        assert read_config(run_dir)["surrogate"] == sg and row["paper_cifar10"] == script.PAPER[(surrogate, net)]
    _report_only_reproduces("repro_surrogate", argv, tmp_path / "s" / "surrogate.json")


def test_smoke_runs_never_write_into_results():
    sweep = load("_sweep")
    assert sweep.output_dir(None, "ablation", quick=True) == Path("runs/quick/ablation")
    assert sweep.output_dir(None, "ablation", quick=False) == Path("results/ablation")
    assert sweep.output_dir(Path("elsewhere"), "ablation", quick=True) == Path("elsewhere")
