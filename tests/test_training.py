"""sj_sew.training and its command line (scripts/train.py): exact resume, atomic checkpoints, NaN stop,
argument checks, the run configuration as library data, the ImageNet path, one loop for SNNs and ANNs."""
import ast
import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from sj_sew import training
from sj_sew.training import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Runs below use --threads 1 (fast on a shared CPU); give the other tests their thread count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# a tiny run on a small slice of the embedded event set, with random temporal delete (uses the RNG)
TINY = ["--dataset", "events", "--data-option", "per_class=16", "--notation",
        "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10", "--T", "4", "--T-train", "3", "--optimizer", "sgd",
        "--lr", "0.05", "--batch-size", "24", "--seed", "3", "--no-progress", "--no-tensorboard", "--device", "cpu",
        "--threads", "1"]


def _records(out):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in training.read_metrics(Path(out) / "metrics.jsonl")]


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    full = cli.main(TINY + ["--epochs", "3", "--out", str(tmp_path / "full")])
    assert full["epochs"] == 3

    calls = {"n": 0}
    real_evaluate = training.loop.evaluate

    def killed_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # validation, then test, each epoch: the third epoch's validation
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training.loop, "evaluate", killed_in_third_epoch)
    with pytest.raises(SystemExit) as stop:
        cli.main(TINY + ["--epochs", "3", "--out", str(tmp_path / "cut")])
    assert stop.value.code == 130 and "--resume --out" in capsys.readouterr().err
    monkeypatch.setattr(training.loop, "evaluate", real_evaluate)
    assert training.read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    resumed = cli.main(["--resume", "--out", str(tmp_path / "cut"), "--no-progress"])
    assert resumed["epochs"] == 3

    a = training.read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = training.read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    _assert_same_weights(a["model"], b["model"])
    assert _records(tmp_path / "full") == _records(tmp_path / "cut")
    assert [r["train_loss"] for r in _records(tmp_path / "full")] != [None] * 3
    assert isinstance(a["config"], dict) and a["config"] == {**b["config"], "out": a["config"]["out"]}
    assert a["config"] == training.RunConfig.from_dict(a["config"]).to_dict()
    assert (a["config"]["num_classes"], a["config"]["input_size"]) == (10, 16)  # read off the data
    assert (tmp_path / "full" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "full" / "best.pt").exists()


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    """A real SIGKILL while the new checkpoint is half written: the previous one still loads."""
    path = tmp_path / "checkpoint.pt"
    child = textwrap.dedent(f"""
        import io, sys, time, torch
        from sj_sew import training
        training.save_checkpoint({{"epoch": 1, "w": torch.ones(1000)}}, {str(path)!r})
        real_save = torch.save
        def half_then_hang(obj, f):
            buf = io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            print("mid-write", flush=True)
            time.sleep(60)
        torch.save = half_then_hang
        training.save_checkpoint({{"epoch": 2, "w": torch.zeros(1000)}}, {str(path)!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "mid-write"
        partial = [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
        assert partial and partial[0].stat().st_size > 0  # the new checkpoint was really being written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    state = training.read_checkpoint(path, require=("epoch", "w"))
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(1000))
    with pytest.raises(training.CheckpointError, match="not a readable checkpoint"):
        training.read_checkpoint(partial[0], require=())
    assert training.remove_stale_temps(tmp_path) == partial and list(tmp_path.iterdir()) == [path]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_ce = torch.nn.functional.cross_entropy
    steps = {"n": 0}

    def nan_from_second_epoch(out, y, *args, **kwargs):
        loss = real_ce(out, y, *args, **kwargs)
        if torch.is_grad_enabled():
            steps["n"] += 1
            if steps["n"] > 5:  # 120 train samples / batch 24 = 5 steps per epoch
                return loss * float("nan")
        return loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_from_second_epoch)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        cli.main(TINY + ["--epochs", "3", "--out", str(out)])
    message = str(stop.value)
    assert "the loss became nan at epoch 1, step 0" in message
    assert f"last good checkpoint is {out / 'checkpoint.pt'} (epoch 0)" in message
    state = training.read_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(training.read_metrics(out / "metrics.jsonl")) == 1


@pytest.mark.parametrize("argv,expected", [
    (["--model", "resnet_nope"], "--model: unknown model 'resnet_nope'; see --list-models"),
    (["--model", "sew_resnet_18"], "did you mean sew_resnet18 (for sew_resnet_18)?"),
    (["--optimizer", "rmsprop"], "--optimizer: unknown 'rmsprop'; valid: ['sgd', 'adam']"),
    (["--scheduler", "linear"], "--scheduler: unknown 'linear'; valid: ['step', 'cosine']"),
    (["--dataset", "mnist"], "--dataset: unknown 'mnist'; valid: ["),
    (["--connect", "OR"], "--connect: unknown 'OR'; valid: ['ADD', 'AND', 'IAND']"),
    (["--surrogate", "sigmoidish"], "did you mean sigmoid (for sigmoidish)?"),
    (["--preset", "quikstart"], "did you mean quickstart (for quikstart)?"),
    (["--amp", "fp8"], "--amp 'fp8' is not a precision"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--warmup-epochs", "10", "--epochs", "10"], "--warmup-epochs must be in [0, epochs=10)"),
    (["--clip-grad", "0"], "--clip-grad (the largest global gradient L2 norm) must be > 0"),
    (["--dataset", "fashion_events", "--model", "net7b"], "(34x34 input)"),
    (["--weights", "missing.pt"], "--weights missing.pt: no such file or run directory, and no weights-table name"),
    (["--config", "missing.toml"], "--config missing.toml: no such file"),
    (["--data-option", "per_class=0"], "--dataset events --data-option per_class=0: per_class must be a positive"),
    (["--data-option", "source=cifar"], "--data-option source=cifar: unknown source 'cifar'"),
    (["--T", "8", "--T-train", "9"], "--T-train must be in [1, T=8], got 9"),
    (["--dataset", "digits", "--T", "4", "--T-train", "2"], "applies to sequence data sets"),
    (["--preset", "imagenet"], "give --data-root DIR"),
    (["--model", "sew_resnet18", "--family", "plain"], "--family applies to notation nets"),
    (["--model", "sew_resnet18", "--notation", "c4k3s1-FC10"], "give either --model or --notation, not both"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--preset", "dvs128_gesture", "--data-root", "x", "--family", "ms"], "no DVS128 Gesture learning rate for 'ms'"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--sync-bn", "--device", "cpu"], "--sync-bn needs CUDA"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--data-option", "per_class"], "--data-option takes KEY=VALUE, got ['per_class']"),
    (["--dataset", "digits", "--T", "4", "--download"], "--download applies to ['cifar10', 'cifar10_dvs', 'dvs128_gesture']"),
])
def test_bad_arguments_fail_fast_naming_valid_choices(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv + ["--out", str(tmp_path / "never")])
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_resume_errors_and_an_occupied_out(tmp_path, capsys):
    missing = tmp_path / "none"
    for argv, expected in [(["--resume"], "--resume needs a checkpoint or run directory"),
                           (["--resume", str(missing)], f"no checkpoint or run directory at {missing}")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2 and expected in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        cli.main(["--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert f"{tmp_path / 'run'} already holds a run; continue it with --resume" in capsys.readouterr().err


def test_presets_follow_the_paper_and_flags_override():
    def cfg(*argv):
        return cli.config_from_argv(list(argv) + ["--out", "never"])[0].to_dict()

    for connect, lr in [("ADD", 0.001), ("AND", 0.03), ("IAND", 0.063)]:
        c = cfg("--preset", "dvs128_gesture", "--data-root", ".", "--connect", connect)
        assert (c["model"], c["T"], c["T_train"], c["lr"], c["epochs"], c["scheduler"]) == ("net7b", 16, 12, lr, 192, "step")
    assert cfg("--preset", "dvs128_gesture", "--data-root", ".", "--family", "spiking")["lr"] == 0.1
    assert cfg("--preset", "dvs128_gesture", "--data-root", ".", "--family", "plain")["lr"] == 0.005
    assert cfg("--preset", "dvs128_gesture", "--data-root", ".", "--lr", "0.5")["lr"] == 0.5
    c = cfg("--preset", "imagenet", "--data-root", ".", "--model", "sew_resnet50")
    assert (c["model"], c["neuron"], c["T"], c["lr"], c["epochs"], c["batch_size"], c["amp"]) == ("sew_resnet50", "if", 4, 0.1, 320, 32, "fp16")
    c = cfg("--preset", "cifar10_dvs", "--data-root", ".")
    assert (c["model"], c["lr"], c["epochs"], c["T_train"]) == ("wide_net7b", 0.01, 64, None)
    c = cfg("--model", "sew_resnet18")
    assert c["model"] == "sew_resnet18" and c["notation"] is None and c["dataset"] == "events"
    c = cfg("--data-option", "per_class=16", "--data-option", "source=fashion_mnist", "--data-option", "split_seed=none")
    assert c["data_options"] == {"per_class": 16, "source": "fashion_mnist", "split_seed": None}


def test_run_config_is_library_data():
    """Schema, presets and checks live in sj_sew.training; a bad config is a ConfigError naming the flag."""
    cfg = training.resolve_config({"epochs": 2})
    assert cfg.preset == "quickstart" and cfg.notation == training.QUICKSTART_NET and cfg.epochs == 2
    assert list(cfg.to_dict())[-3:] == ["preset", "num_classes", "input_size"]
    assert training.RunConfig.from_dict(cfg.to_dict()) == cfg
    oldest = {k: v for k, v in cfg.to_dict().items() if k not in ("threads", "num_classes", "input_size")}
    assert training.RunConfig.from_dict(oldest).threads is None  # checkpoints written before these keys existed
    with pytest.raises(training.ConfigError, match=r"unknown run configuration keys \['colour'\]"):
        training.RunConfig.from_dict({**oldest, "colour": 1})
    for flags, message in [({"T": 8, "T_train": 9}, r"--T-train must be in \[1, T=8\], got 9"),
                           ({"optimizer": "rmsprop"}, "--optimizer: unknown 'rmsprop'"),
                           ({"model": "resnet_nope"}, "unknown model 'resnet_nope'"),
                           ({"dataset": "mnist"}, "--dataset: unknown 'mnist'")]:
        with pytest.raises(training.ConfigError, match=message):
            training.resolve_config(flags)
    with pytest.raises(training.ConfigError, match=r"cannot change \['lr'\] when resuming"):
        training.resolve_config({"lr": 0.5, "epochs": 20}, saved=cfg.to_dict())
    assert training.resolve_config({"epochs": 20}, saved=cfg.to_dict()).epochs == 20
    assert issubclass(training.ConfigError, ValueError)


def test_train_script_is_a_thin_cli_without_private_imports():
    tree = ast.parse((ROOT / "scripts" / "train.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
            assert not any(alias.name.startswith("_") for alias in node.names), ast.dump(node)
    assert sum(isinstance(n, ast.FunctionDef) for n in ast.walk(tree)) == 0  # everything lives in sj_sew.training
    shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--help"], capture_output=True,
                           text=True, check=True).stdout
    assert "Train any sj_sew model on any registered data set." in shown
    for flag in ("--preset", "--surrogate", "--memory-saving", "--resume", "--T-train", "--sync-bn", "--progress"):
        assert flag in shown


def test_memory_saving_trains_the_same_weights(tmp_path):
    """--memory-saving (sj_sew.memory.memory_saving) changes what is stored for backward, not the training."""
    argv = TINY + ["--epochs", "1", "--data-option", "per_class=4"]
    cli.main(argv + ["--out", str(tmp_path / "plain")])
    cli.main(argv + ["--out", str(tmp_path / "saving"), "--memory-saving"])
    a = training.read_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    b = training.read_checkpoint(tmp_path / "saving" / "checkpoint.pt")
    assert b["config"]["memory_saving"] and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)


def test_imagenet_path_runs_one_step_on_a_tiny_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for k, cls in enumerate(("n01", "n02")):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (40, 30), (200 * k, 60, 120)).save(tmp_path / split / cls / "a.png")
    out = tmp_path / "run"
    summary = cli.main(["--preset", "imagenet", "--data-root", str(tmp_path), "--T", "1", "--epochs", "1",
                        "--val-fraction", "0",
                        "--batch-size", "2", "--workers", "0", "--out", str(out), "--no-progress",
                        "--no-tensorboard", "--device", "cpu", "--threads", "1"])
    (record,) = training.read_metrics(out / "metrics.jsonl")
    assert record["epoch"] == 0 and 0.0 <= record["test_acc"] <= 1.0 and record["train_loss"] > 0
    state = training.read_checkpoint(out / "checkpoint.pt")
    assert state["model"]["fc.weight"].shape == (2, 512)  # two classes found in the folder
    assert state["config"]["preset"] == "imagenet" and summary["epochs"] == 1
    json.dumps(state["config"])  # plain types only


@pytest.mark.slow
def test_quickstart_main_job_reaches_90_percent(tmp_path):
    """The main job exactly as `python scripts/train.py` runs it (about 1.5 minutes on 2 CPU cores)."""
    summary = cli.main(["--out", str(tmp_path / "quick"), "--no-progress", "--no-tensorboard"])
    assert summary["epochs"] == 10 and summary["last_test_acc"] >= 0.90 and summary["selected_test_acc"] >= 0.90


def _reference_adam_cosine(model, loader, epochs, lr):
    """The plain loop the conversion and comparison scripts had before they used sj_sew.training.fit."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        sched.step()


def _shuffled(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))


def test_one_loop_trains_and_evaluates_a_net_without_neurons():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    ann = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    twin = copy.deepcopy(ann)
    opt = training.make_optimizer("adam", ann.parameters(), 0.01)
    records = training.fit(ann, _shuffled(x, y), opt, training.make_scheduler("cosine", opt, 3), epochs=3,
                           test_loader=DataLoader(TensorDataset(x, y), batch_size=40))
    _reference_adam_cosine(twin, _shuffled(x, y), 3, 0.01)
    _assert_same_weights(ann.state_dict(), twin.state_dict())  # the same numbers as the plain loop
    assert [r["epoch"] for r in records] == [0, 1, 2] and records[-1]["lr"] < records[0]["lr"]
    assert all(math.isnan(r["firing_rate"]) for r in records)
    stats = training.evaluate(ann, [(x, y)])
    assert stats["acc"] == records[-1]["test_acc"] > 0.5 and math.isnan(stats["firing_rate"])
    opt = training.make_optimizer("adam", twin.parameters(), 0.01)
    (record,) = training.fit(twin, [(x, y)], opt, training.make_scheduler("cosine", opt, 1), epochs=1)
    assert list(record) == ["epoch", "train_loss", "train_acc", "lr", "epoch_time"]  # no test loader


def test_firing_rate_monitor_counts_spikes_per_neuron_step():
    from spikingjelly.activation_based import layer

    from sj_sew.analysis import FiringRateMonitor
    from sj_sew.neurons import NeuronSpec

    always, never = NeuronSpec("if").make(), NeuronSpec("if").make()
    net = torch.nn.Sequential(layer.Flatten(step_mode="m"), always)
    with FiringRateMonitor(torch.nn.Sequential(net, never)) as monitor:
        out = always(torch.full((4, 2, 3), 1.5))  # above threshold from rest: a spike every step
        never(out * 0)
    assert out.sum() == 24
    rates = monitor.rates()
    assert rates == {"0.1": 1.0, "1": 0.0}
    assert monitor.mean_rate() == 0.5 and monitor.totals() == (24.0, 48)
    with pytest.raises(ValueError, match="no neuron layer"):
        FiringRateMonitor(torch.nn.Linear(2, 2))
