"""Early stopping (``--patience``): the run stops on a validation plateau by the same rule the sweeps read
(sj_sew.experiments.sweep.plateau_stop), records it, makes the same decision when resumed, and refuses bad
values. The validation accuracies are scripted (the real evaluation runs, its accuracy is replaced) so the
plateau falls where each test needs it."""
import json
import random

import pytest
import torch

from sj_sew import training
from sj_sew.experiments.sweep import plateau_stop
from sj_sew.training import cli
from sj_sew.training.loop import plateau_epoch

from test_training import TINY, _records

#: scripted validation accuracy per epoch: best at epoch 1, no better at 2 and 3, better again at 4
VAL = [0.3, 0.5, 0.5, 0.4, 0.6, 0.6]
REAL_EVALUATE = training.loop.evaluate


@pytest.fixture(autouse=True)
def _keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _script_val(monkeypatch, first_epoch=0):
    """Replace the validation accuracy of epoch e by VAL[e] (fit evaluates validation, then test, each epoch)."""
    real, calls = REAL_EVALUATE, {"n": 0}

    def scripted(*args, **kwargs):
        result = real(*args, **kwargs)
        epoch, is_test = divmod(calls["n"], 2)
        calls["n"] += 1
        return result if is_test else {**result, "acc": VAL[first_epoch + epoch]}

    monkeypatch.setattr(training.loop, "evaluate", scripted)


def test_rule_is_plateau_stop_on_random_histories():
    rng = random.Random(0)
    for _ in range(500):
        n, patience = rng.randint(1, 12), rng.randint(1, 4)
        history = [{"epoch": e, "val_acc": rng.choice([0.1, 0.2, 0.3, 0.4]), "test_acc": e / 10} for e in range(n)]
        stop = plateau_epoch([r["val_acc"] for r in history], patience)
        read = plateau_stop(history, patience)
        assert read["stop_epoch"] == (n - 1 if stop is None else stop)
        assert read["stopped_early"] == (stop is not None and stop < n - 1)
    assert plateau_epoch(VAL, 2) == 3 and plateau_epoch(VAL, 3) is None
    assert plateau_epoch([0.5, 0.5], 1) == 1  # a tie is no improvement


def test_stops_at_the_plateau_like_plateau_stop_on_the_full_run(tmp_path, monkeypatch):
    _script_val(monkeypatch)
    full = cli.main(TINY + ["--epochs", "6", "--out", str(tmp_path / "full")])
    _script_val(monkeypatch)
    early = cli.main(TINY + ["--epochs", "6", "--patience", "2", "--out", str(tmp_path / "early")])
    assert "stop_epoch" not in full and full["epochs"] == 6
    assert (early["epochs"], early["stop_epoch"], early["stopped_early"], early["patience"]) == (4, 3, True, 2)
    # the epochs it trained are the full run's first four, and the rule read on the full run says the same
    assert _records(tmp_path / "early") == _records(tmp_path / "full")[:4]
    rule = plateau_stop(training.read_metrics(tmp_path / "full" / "metrics.jsonl"), 2, cap=6)
    assert (rule["stop_epoch"], rule["stopped_early"]) == (early["stop_epoch"], early["stopped_early"])
    assert (rule["selected_epoch"], rule["selected_test_acc"]) == (early["selected_epoch"], early["selected_test_acc"])
    saved = json.loads((tmp_path / "early" / "summary.json").read_text())
    assert saved["stop_epoch"] == 3 and saved["stopped_early"] and saved["config"]["patience"] == 2
    config = json.loads((tmp_path / "early" / "config.json").read_text())["config"]
    assert config["patience"] == 2 and config["epochs"] == 6


def test_no_stop_before_the_plateau(tmp_path, monkeypatch):
    _script_val(monkeypatch)
    summary = cli.main(TINY + ["--epochs", "6", "--patience", "3", "--out", str(tmp_path / "r")])
    assert (summary["epochs"], summary["stop_epoch"], summary["stopped_early"]) == (6, 5, False)


def test_resumed_run_makes_the_same_decision(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cut"
    _script_val(monkeypatch)
    scripted, calls = training.loop.evaluate, {"n": 0}

    def killed_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the third epoch's validation
            raise KeyboardInterrupt
        return scripted(*args, **kwargs)

    monkeypatch.setattr(training.loop, "evaluate", killed_in_third_epoch)
    with pytest.raises(SystemExit):
        cli.main(TINY + ["--epochs", "6", "--patience", "2", "--out", str(out)])
    capsys.readouterr()
    _script_val(monkeypatch, first_epoch=2)
    resumed = cli.main(["--resume", "--out", str(out), "--no-progress"])
    assert (resumed["epochs"], resumed["stop_epoch"], resumed["stopped_early"]) == (4, 3, True)
    # resuming the stopped run (as after a kill between its last checkpoint and its summary) trains nothing more
    again = cli.main(["--resume", "--out", str(out), "--no-progress"])
    assert (again["epochs"], again["stop_epoch"], again["stopped_early"]) == (4, 3, True)
    assert len(_records(out)) == 4


@pytest.mark.parametrize("flags, expected", [
    (["--patience", "0"], "--patience must be an integer >= 1"),
    (["--patience", "-2"], "--patience must be an integer >= 1"),
    (["--patience", "2", "--val-fraction", "0"], "needs a validation split: --val-fraction > 0"),
    (["--patience", "1.5"], "--patience: invalid int value"),
])
def test_bad_values_refused_in_one_line(flags, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(TINY + ["--epochs", "3", "--out", str(tmp_path / "r")] + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and expected in err[-1]
    assert not (tmp_path / "r").exists()


def test_fit_refuses_patience_without_validation():
    with pytest.raises(ValueError, match="validation split"):
        training.loop.fit(torch.nn.Linear(1, 1), [], None, None, epochs=1, patience=2)


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sj_sew").SJ2, reason="smoke-tested on the default line")
def test_ablation_tunes_on_an_unreported_seed_and_stops_on_plateaus(tmp_path):
    from test_repro_scripts import FASHION_MNIST_DIR

    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    from sj_sew.experiments import ablation

    study = ablation.run_study(tmp_path, seeds=1, epochs=3, per_class=12, lrs=[0.01, 0.1], networks=("Plain",),
                               tuning_seed=1000, patience=1)
    assert study["meta"]["tuning_seed"] == 1000 and study["meta"]["reported_seeds"] == [0]
    assert study["meta"]["patience"] == 1
    for key, row in study["rows"].items():
        tuned = {lr: json.loads((ablation.run_dir(tmp_path, key, lr) / "seed1000" / "summary.json").read_text())
                 for lr in (0.01, 0.1)}
        assert row["grid_val_acc"] == {f"{lr:g}": s["selected_val_acc"] for lr, s in tuned.items()}
        assert row["lr"] == ablation.choose_lr(tuned)
        # the reported run is seed 0 at the chosen rate, trained by the plateau rule within the cap
        reported = ablation.run_dir(tmp_path, key, row["lr"]) / "seed0"
        assert row["checkpoints"] == [str(reported / "best.pt")]
        summary = json.loads((reported / "summary.json").read_text())
        assert summary["stop_epoch"] == plateau_stop(summary["history"], 1, cap=3)["stop_epoch"]
        assert summary["stopped_early"] == (summary["epochs"] < 3)
        assert row["epochs_run"]["values"] == [summary["epochs"]] and summary["flags"]["patience"] == 1
