"""scripts/train.py and sj_sew.training: exact resume, atomic checkpoints, NaN stop, argument checks, ImageNet path."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sj_sew import training

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = _load_script()


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


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    full = train_script.main(TINY + ["--epochs", "3", "--out", str(tmp_path / "full")])
    assert full["epochs"] == 3

    calls = {"n": 0}
    real_evaluate = training.evaluate

    def killed_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_script.main(TINY + ["--epochs", "3", "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    assert training.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    resumed = train_script.main(["--resume", "--out", str(tmp_path / "cut"), "--no-progress"])
    assert resumed["epochs"] == 3

    a = training.load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = training.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _records(tmp_path / "full") == _records(tmp_path / "cut")
    assert [r["train_loss"] for r in _records(tmp_path / "full")] != [None] * 3
    assert a["config"]["notation"] == b["config"]["notation"] and isinstance(a["config"], dict)
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
    state = training.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(1000))
    with pytest.raises(Exception):
        training.load_checkpoint(partial[0])


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
        train_script.main(TINY + ["--epochs", "3", "--out", str(out)])
    message = str(stop.value)
    assert "the loss became nan at epoch 1, step 0" in message
    assert f"last good checkpoint is {out / 'checkpoint.pt'} (epoch 0)" in message
    state = training.load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(training.read_metrics(out / "metrics.jsonl")) == 1


@pytest.mark.parametrize("argv,expected", [
    (["--model", "resnet_nope"], "invalid choice: 'resnet_nope' (choose from"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop' (choose from 'sgd', 'adam')"),
    (["--scheduler", "linear"], "invalid choice: 'linear' (choose from 'step', 'cosine')"),
    (["--dataset", "mnist"], "invalid choice: 'mnist' (choose from"),
    (["--connect", "OR"], "invalid choice: 'OR' (choose from 'ADD', 'AND', 'IAND')"),
    (["--T", "8", "--T-train", "9"], "--T-train must be in [1, T=8], got 9"),
    (["--dataset", "digits", "--T", "4", "--T-train", "2"], "applies to sequence data sets"),
    (["--preset", "imagenet"], "give --data-root DIR"),
    (["--model", "sew_resnet18", "--family", "plain"], "--family applies to notation nets"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--sync-bn", "--device", "cpu"], "--sync-bn needs CUDA"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--dataset", "digits", "--T", "4", "--download"], "--download applies to ['cifar10', 'cifar10_dvs', 'dvs128_gesture']"),
])
def test_bad_arguments_fail_fast_naming_valid_choices(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_script.main(argv + ["--out", str(tmp_path / "never")])
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_memory_saving_without_perf_module_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sj_sew.perf", None)  # as if perf.py were absent
    with pytest.raises(SystemExit, match="--memory-saving needs sj_sew.perf.memory_saving"):
        train_script.main(["--memory-saving", "--out", str(tmp_path / "never")])


def test_presets_follow_the_paper_and_flags_override():
    parser = train_script.build_parser()

    def cfg(*argv):
        return train_script.resolve_config(parser.parse_args(list(argv)), parser)

    for connect, lr in [("ADD", 0.001), ("AND", 0.03), ("IAND", 0.063)]:
        c = cfg("--preset", "dvs128_gesture", "--data-root", "x", "--connect", connect)
        assert (c["model"], c["T"], c["T_train"], c["lr"], c["epochs"], c["scheduler"]) == ("net7b", 16, 12, lr, 192, "step")
    assert cfg("--preset", "dvs128_gesture", "--data-root", "x", "--family", "spiking")["lr"] == 0.1
    assert cfg("--preset", "dvs128_gesture", "--data-root", "x", "--family", "plain")["lr"] == 0.005
    assert cfg("--preset", "dvs128_gesture", "--data-root", "x", "--lr", "0.5")["lr"] == 0.5
    c = cfg("--preset", "imagenet", "--data-root", "x", "--model", "sew_resnet50")
    assert (c["model"], c["neuron"], c["T"], c["lr"], c["epochs"], c["batch_size"], c["amp"]) == ("sew_resnet50", "if", 4, 0.1, 320, 32, True)
    c = cfg("--preset", "cifar10_dvs", "--data-root", "x")
    assert (c["model"], c["lr"], c["epochs"], c["T_train"]) == ("wide_net7b", 0.01, 64, None)
    c = cfg("--model", "sew_resnet18")
    assert c["model"] == "sew_resnet18" and c["notation"] is None and c["dataset"] == "events"


def test_imagenet_path_runs_one_step_on_a_tiny_image_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for k, cls in enumerate(("n01", "n02")):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (40, 30), (200 * k, 60, 120)).save(tmp_path / split / cls / "a.png")
    out = tmp_path / "run"
    summary = train_script.main(["--preset", "imagenet", "--data-root", str(tmp_path), "--T", "1", "--epochs", "1",
                                 "--batch-size", "2", "--workers", "0", "--out", str(out), "--no-progress",
                                 "--no-tensorboard", "--device", "cpu", "--threads", "1"])
    (record,) = training.read_metrics(out / "metrics.jsonl")
    assert record["epoch"] == 0 and 0.0 <= record["test_acc"] <= 1.0 and record["train_loss"] > 0
    state = training.load_checkpoint(out / "checkpoint.pt")
    assert state["model"]["fc.weight"].shape == (2, 512)  # two classes found in the folder
    assert state["config"]["preset"] == "imagenet" and summary["epochs"] == 1
    json.dumps(state["config"])  # plain types only


@pytest.mark.slow
def test_quickstart_main_job_reaches_90_percent(tmp_path):
    """The main job exactly as `python scripts/train.py` runs it (about 1.5 minutes on 2 CPU cores)."""
    summary = train_script.main(["--out", str(tmp_path / "quick"), "--no-progress", "--no-tensorboard"])
    assert summary["epochs"] == 10 and summary["last_test_acc"] >= 0.90


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
