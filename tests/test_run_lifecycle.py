"""A run's life after training: selection on the validation split, loading and evaluating a trained net,
and the resume rules (re-planned schedules, runs never overwritten, weights-only files refused)."""
import json
import sys
from pathlib import Path

import pytest
import torch

import sj_sew
from sj_sew import training
from sj_sew.data.split import dataset_labels, validation_split
from sj_sew.training import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "events", "--data-option", "per_class=16", "--notation",
        "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10", "--T", "4", "--optimizer", "sgd", "--lr", "0.05",
        "--batch-size", "24", "--seed", "1", "--no-progress", "--no-tensorboard", "--device", "cpu",
        "--threads", "1", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    summary = cli.main(TINY + ["--epochs", "3", "--out", str(out)])
    return out, summary


def test_selection_uses_the_validation_split_only(trained):
    out, summary = trained
    records = training.read_metrics(out / "metrics.jsonl")
    assert all({"val_acc", "val_loss", "test_acc"} <= r.keys() for r in records)
    selected = max(records, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert summary["selected_epoch"] == selected["epoch"]
    assert summary["selected_test_acc"] == selected["test_acc"]
    assert summary["last_test_acc"] == records[-1]["test_acc"]
    best = training.read_checkpoint(out / "best.pt")
    assert best["epoch"] == selected["epoch"] and best["best"]["val_acc"] == selected["val_acc"]


def test_validation_split_is_per_class_disjoint_and_fixed():
    data = sj_sew.data.build_dataset("events", True, T=2, per_class=16)
    train, val = validation_split(data, 0.25)
    assert not set(train.indices) & set(val.indices) and len(train) + len(val) == len(data)
    labels = dataset_labels(data)
    for c in set(labels.tolist()):
        n = int((labels == c).sum())
        assert int((labels[val.indices] == c).sum()) == max(1, round(0.25 * n))
    assert validation_split(data, 0.25)[1].indices == val.indices, "the same split every time"
    with pytest.raises(ValueError, match="validation fraction must be in"):
        validation_split(data, 1.0)


def test_load_checkpoint_rebuilds_the_trained_model(trained):
    out, _ = trained
    loaded = sj_sew.load_checkpoint(out)  # a run directory: its best.pt
    state = training.read_checkpoint(out / "best.pt")
    assert not loaded.model.training and loaded.epoch == state["epoch"]
    assert loaded.config == training.RunConfig.from_dict(state["config"])
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, state["model"][k])


def test_loading_into_another_network_is_refused_naming_what_differs(trained):
    out, _ = trained
    cfg = sj_sew.load_checkpoint(out).config
    other = training.model_from_config(training.RunConfig.from_dict({**cfg.to_dict(), "connect": "AND"}))
    with pytest.raises(training.CheckpointError, match="connect: checkpoint ADD, model AND"):
        sj_sew.load_checkpoint(out, model=other)
    lif = training.model_from_config(training.RunConfig.from_dict({**cfg.to_dict(), "neuron": "lif"}))
    with pytest.raises(training.CheckpointError, match="neurons: checkpoint ParametricLIFNode"):
        sj_sew.load_checkpoint(out, model=lif)
    same = training.model_from_config(cfg)
    assert sj_sew.load_checkpoint(out, model=same).model is same


def test_evaluate_script_reproduces_the_logged_numbers(trained, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import evaluate

    out, summary = trained
    test = evaluate.main([str(out), "--out", str(tmp_path / "t.json")])
    val = evaluate.main([str(out / "best.pt"), "--split", "val", "--firing-rates", "--out", str(tmp_path / "v.json")])
    selected = next(r for r in training.read_metrics(out / "metrics.jsonl") if r["epoch"] == summary["selected_epoch"])
    assert test["acc"] == selected["test_acc"] and test["loss"] == pytest.approx(selected["test_loss"], abs=1e-12)
    assert val["acc"] == selected["val_acc"]
    assert json.loads((tmp_path / "v.json").read_text())["layer_firing_rates"].keys() >= {"layers.2"}


def test_resume_with_more_epochs_replans_the_schedule(tmp_path):
    cli.main(TINY + ["--epochs", "2", "--scheduler", "cosine", "--out", str(tmp_path / "short")])
    cli.main(["--resume", "--out", str(tmp_path / "short"), "--epochs", "4", "--no-progress"])
    cli.main(TINY + ["--epochs", "4", "--scheduler", "cosine", "--out", str(tmp_path / "long")])
    lr = {name: [r["lr"] for r in training.read_metrics(tmp_path / name / "metrics.jsonl")] for name in ("short", "long")}
    assert lr["short"][2:] == lr["long"][2:], "from the resumed epoch on, the 4-epoch run's rates"
    assert lr["short"][3] > 0 and lr["short"][:2] != lr["long"][:2]


def test_resume_never_overwrites_and_refuses_weights_only_files(trained, tmp_path, capsys):
    out, _ = trained
    other = tmp_path / "other"
    cli.main(TINY + ["--epochs", "1", "--out", str(other)])
    for argv, message in [
        (["--resume", str(out / "checkpoint.pt"), "--out", str(other)], "already holds another run"),
        (["--resume", str(out / "best.pt")], "holds weights only"),
        (["--resume", str(tmp_path / "nothing.pt")], "no checkpoint or run directory at"),
    ]:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert training.read_checkpoint(other / "checkpoint.pt")["epoch"] == 0, "the other run is untouched"


def test_backend_flag_chooses_kernels_with_the_same_results(tmp_path, capsys):
    auto = cli.main(TINY + ["--epochs", "1", "--out", str(tmp_path / "auto")])
    torch_kernels = cli.main(TINY + ["--epochs", "1", "--backend", "torch", "--out", str(tmp_path / "torch")])
    assert auto["last_test_acc"] == torch_kernels["last_test_acc"]
    assert training.read_checkpoint(tmp_path / "torch" / "checkpoint.pt")["config"]["backend"] == "torch"
    for backend in ("cuda", "triton", "cupy"):
        with pytest.raises(SystemExit) as stop:
            cli.main(TINY + ["--epochs", "1", "--backend", backend, "--out", str(tmp_path / backend)])
        assert stop.value.code == 2 and f"--backend {backend} runs GPU kernels" in capsys.readouterr().err
    resumed = cli.main(["--resume", "--out", str(tmp_path / "auto"), "--epochs", "2", "--backend", "torch",
                        "--no-progress"])
    assert resumed["epochs"] == 2, "the kernel choice may change on resume"
