"""Runs that travel: a run written on a GPU machine loads, evaluates, exports and resumes on this CPU machine;
the run directory says what ran (config.json, summary.json, TensorBoard hparams); a run killed before its first
checkpoint says how to start it again; --config and --weights start runs from files.

A GPU machine's checkpoint is written here as torch writes one there: its tensors' storages tagged ``cuda:0``
(``torch.serialization.location_tag``, which ``torch.save`` asks for every storage), a CUDA generator state, and
the configuration such a run records (device cuda, the native kernels, fp16 amp, SyncBatchNorm, workers, a data
root and an output folder that exist only there)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew import training
from sj_sew.training import cli

ROOT = Path(__file__).resolve().parents[1]
NET = "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10"
TINY = ["--dataset", "events", "--data-option", "per_class=16", "--notation", NET, "--T", "4", "--optimizer", "sgd",
        "--lr", "0.05", "--batch-size", "24", "--seed", "3", "--no-progress", "--device", "cpu", "--threads", "1"]

#: What a run on a GPU machine records about that machine.
GPU_MACHINE = {"device": "cuda", "backend": "cuda", "amp": "fp16", "sync_bn": True, "workers": 8, "threads": None,
               "memory_saving": True, "data_root": "/gpu-node/datasets/events", "out": "/gpu-node/runs/sew"}


@pytest.fixture(autouse=True)
def _keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cpu"
    cli.main(TINY + ["--epochs", "2", "--out", str(out)])
    return out


def _write_as_gpu_machine(state: dict, path: Path, monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        training.save_checkpoint(state, path)


@pytest.fixture
def gpu_run(trained, tmp_path, monkeypatch) -> Path:
    """``trained`` as a GPU machine would have written it, copied to another folder."""
    run = tmp_path / "from-gpu"
    run.mkdir()
    for name in ("checkpoint.pt", "best.pt"):
        state = training.read_checkpoint(trained / name)
        state["config"] = {**state["config"], **GPU_MACHINE}
        if "rng" in state:
            state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
        _write_as_gpu_machine(state, run / name, monkeypatch)
    if not torch.cuda.is_available():  # the files really are CUDA files: a plain torch.load refuses them here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(run / "best.pt", weights_only=True)
    return run


def _logits(net, seed=0):
    torch.manual_seed(seed)
    x = (torch.rand(4, 3, 2, 16, 16) > 0.7).float()
    functional.reset_net(net)
    with torch.no_grad():
        out = net(x)
    functional.reset_net(net)
    return out


def test_a_gpu_machines_run_loads_here_with_the_same_network(trained, gpu_run):
    here, _, epoch = sj_sew.load_checkpoint(trained)
    there, cfg, epoch_there = sj_sew.load_checkpoint(gpu_run)
    assert cfg.device == "cuda" and cfg.backend == "cuda" and epoch_there == epoch  # recorded, not obeyed
    assert torch.equal(_logits(here), _logits(there))
    assert all(p.device.type == "cpu" for p in there.parameters())


def test_a_gpu_machines_run_evaluates_here_given_the_data_root(gpu_run, tmp_path):
    from sj_sew.training.load import evaluate_checkpoint

    with pytest.raises(training.ConfigError, match=r"--data-root /gpu-node/datasets/events does not exist on this "
                                                   r"machine.*give the directory that holds it on this machine"):
        evaluate_checkpoint(gpu_run)
    result = evaluate_checkpoint(gpu_run, data_root=str(tmp_path))
    assert result["samples"] > 0 and 0 <= result["acc"] <= 1
    shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(gpu_run), "--data-root",
                            str(tmp_path), "--out", str(tmp_path / "eval.json")], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["acc"] == result["acc"]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_gpu_machines_run_exports_here(gpu_run, tmp_path, fmt):
    pytest.importorskip("onnx") if fmt == "onnx" else None
    out = tmp_path / f"net.{fmt}"
    shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(gpu_run), "--format", fmt,
                            "--out", str(out)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert out.stat().st_size > 0 and "max |" in shown.stdout


def test_a_gpu_machines_run_resumes_here_on_this_machines_choices(gpu_run, capsys):
    """Device, kernels, data root and SyncBatchNorm are the machine's: they may change on resume."""
    with pytest.raises(SystemExit):
        cli.main(["--resume", str(gpu_run), "--no-progress"])
    assert "CUDA is not available on this machine; use --device cpu" in capsys.readouterr().err
    summary = cli.main(["--resume", str(gpu_run), "--out", str(gpu_run), "--device", "cpu", "--backend", "auto",
                        "--no-sync-bn", "--data-root", str(gpu_run), "--epochs", "3", "--no-progress"])
    assert summary["epochs"] == 3


def test_the_run_directory_says_what_ran(trained):
    record = json.loads((trained / "config.json").read_text())
    cfg = record["config"]
    assert (cfg["T"], cfg["input_size"], cfg["num_classes"], cfg["notation"]) == (4, 16, 10, NET)
    assert set(cfg) == set(training.RunConfig().to_dict())  # every default written out
    assert record["network"] == training.RunConfig.from_dict(cfg).network()
    assert record["sj_sew_version"] == sj_sew.__version__ and record["spikingjelly_version"] == sj_sew.SJ_VERSION
    summary = json.loads((trained / "summary.json").read_text())
    metrics = training.read_metrics(trained / "metrics.jsonl")
    assert summary["epochs"] == 2 and summary["last_test_acc"] == metrics[-1]["test_acc"]
    assert summary["selected_test_acc"] == metrics[summary["selected_epoch"]]["test_acc"]
    hparams = list((trained / "tensorboard").rglob("events.out.tfevents.*"))
    if hparams:  # TensorBoard is installed by setup_env.sh; its hparams go to a run of their own
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        logged = [p for p in hparams if p.parent.name == "hparams"]
        assert logged, hparams
        acc = EventAccumulator(str(logged[0].parent)).Reload()
        assert "_hparams_/session_start_info" in acc.summary_metadata


def test_T_is_resolved_and_recorded():
    assert training.resolve_config({"dataset": "events"}).T == 4  # the set's own, written down
    assert training.resolve_config({"dataset": "digits", "model": "sew_resnet18"}).T == 4  # custom static default
    assert training.resolve_config({}).T == 4  # the quick start's


def test_a_run_killed_before_its_first_checkpoint_says_how_to_start_again(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cut"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.loop, "train_one_epoch", killed)
    with pytest.raises(SystemExit):
        cli.main(TINY + ["--epochs", "2", "--out", str(out)])
    monkeypatch.undo()
    assert (out / "config.json").exists() and not (out / "checkpoint.pt").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(["--resume", "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "stopped before its first checkpoint was complete" in err
    assert f"--config {out / 'config.json'} --out {out}" in err
    again = cli.main(["--config", str(out / "config.json"), "--out", str(out), "--no-progress"])
    assert again["epochs"] == 2
    first = json.loads((out / "config.json").read_text())["config"]
    assert first == {**first, "data_options": {"per_class": 16}, "notation": NET, "lr": 0.05, "seed": 3}


def test_a_toml_config_file_sits_between_the_preset_and_the_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('dataset = "digits"\nmodel = "sew_resnet18"\nbatch-size = 8\nlr = 0.01\nconnect = "iand"\n'
                    '[data_options]\ntrain_fraction = 0.5\n')
    cfg, _ = cli.config_from_argv(["--config", str(path), "--lr", "0.02", "--out", str(tmp_path / "x")])
    assert (cfg.dataset, cfg.model, cfg.batch_size, cfg.lr, cfg.connect, cfg.preset) == \
        ("digits", "sew_resnet18", 8, 0.02, "IAND", "custom")
    assert cfg.data_options == {"train_fraction": 0.5} and cfg.optimizer == "adam" and not cfg.zero_init
    path.write_text("learning_rate = 0.1\n")
    with pytest.raises(training.ConfigError, match=r"unknown settings \['learning_rate'\]"):
        training.resolve_config({}, config_file=path)


def test_cli_and_python_take_the_same_spellings(tmp_path):
    from_cli, _ = cli.config_from_argv(["--dataset", "digits", "--model", "sew_resnet18", "--connect", "add",
                                        "--neuron", "LIF", "--surrogate", "Sigmoid", "--out", str(tmp_path / "x")])
    assert (from_cli.connect, from_cli.neuron, from_cli.surrogate) == ("ADD", "lif", "sigmoid")
    net = training.model_from_config(from_cli)
    same = sj_sew.create_model("sew_resnet18", connect="add", neuron="LIF", surrogate_function="Sigmoid",
                               in_channels=1, num_classes=10, T=4)
    assert training.architecture(net) == training.architecture(same)
    with pytest.raises(ValueError) as python_error:
        sj_sew.create_model("sew_resnet_18")
    with pytest.raises(training.ConfigError) as cli_error:
        training.resolve_config({"model": "sew_resnet_18"})
    assert "did you mean sew_resnet18 (for sew_resnet_18)?" in str(python_error.value)
    assert "did you mean sew_resnet18 (for sew_resnet_18)?" in str(cli_error.value)


def test_fine_tuning_from_a_run_keeps_every_weight_but_a_new_classifier(trained, tmp_path):
    cfg = training.resolve_config({"dataset": "events", "notation": NET, "weights": str(trained), "num_classes": 7})
    net = training.model_from_config(cfg)
    note = training.load_initial_weights(net, cfg)
    source = sj_sew.load_checkpoint(trained).model.state_dict()
    head = training.build.classifier_name(net)
    for k, v in net.state_dict().items():
        if k.startswith(f"{head}."):
            assert v.shape[0] == 7
        else:
            assert torch.equal(v, source[k]), k
    assert f"classifier {head} (7 classes) starts fresh" in note
    other = training.resolve_config({"notation": NET.replace("c4", "c8"), "weights": str(trained)})
    with pytest.raises(training.ConfigError, match="were trained as another network"):
        training.load_initial_weights(training.model_from_config(other), other)


def test_fine_tuning_from_a_zoo_file_and_refusing_a_name_that_is_not_there(tmp_path):
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import sew_resnet as zoo

    path = tmp_path / "zoo.pth"
    torch.save(zoo.sew_resnet18(spiking_neuron=neuron.IFNode, cnf="ADD", num_classes=1000).state_dict(), path)
    cfg = training.resolve_config({"dataset": "cifar10", "data_root": str(tmp_path), "model": "sew_resnet18",
                                   "weights": str(path)})
    net = training.model_from_config(cfg)
    note = training.load_initial_weights(net, cfg)
    assert "classifier fc (10 classes) starts fresh" in note
    zoo_state = torch.load(path, weights_only=True)
    ours = net.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in zoo_state.items() if not k.startswith("fc.")) and len(ours) > 100
    with pytest.raises(training.ConfigError, match="--weights nope.pt: no such file or run directory"):
        training.resolve_config({**cfg.to_dict(), "weights": "nope.pt", "preset": "custom"})


def test_sj_sew_command_lists_and_summarises(tmp_path):
    def sj(*argv):
        return subprocess.run([sys.executable, "-m", "sj_sew", *argv], capture_output=True, text=True, cwd=ROOT)

    shown = sj("models", "sew_resnet1?")
    assert shown.returncode == 0 and shown.stdout.split() == ["sew_resnet18"]
    assert "fashion_events" in sj("datasets").stdout
    summary = sj("summary", "sew_resnet18", "--input-size", "32", "--T", "2", "--firing-rate", "0.1")
    assert summary.returncode == 0, summary.stderr
    params = sum(p.numel() for p in sj_sew.create_model("sew_resnet18", num_classes=1000).parameters())
    assert f"parameters: {params:,}" in summary.stdout and "output: [N, 1000]" in summary.stdout
    assert "SOPs" in summary.stdout
    bad = sj("summary", "sew_resnet_18")
    assert bad.returncode == 2 and "did you mean sew_resnet18" in bad.stderr


def test_summary_sops_are_the_expected_count_of_random_spikes_at_that_rate():
    """Against the analysis package's counter of actual events: Bernoulli(rate) spikes into a conv and a linear."""
    from spikingjelly.activation_based import layer

    from sj_sew.analysis.energy import OpCounter
    from sj_sew.summary import model_summary

    net = torch.nn.Sequential(layer.Conv2d(2, 8, 3, padding=1, stride=2, step_mode="m"),
                              layer.Flatten(step_mode="m"), layer.Linear(8 * 16 * 16, 5, step_mode="m"))
    torch.manual_seed(0)
    x = (torch.rand(4, 64, 2, 32, 32) < 0.3).float()
    counter = OpCounter(net)
    with counter:
        net(x)
    counter.samples = 64
    expected = model_summary(net, torch.zeros(4, 1, 2, 32, 32), firing_rate=0.3)
    conv_only = OpCounter(net[:1])  # the linear layer's input is analog (conv outputs): MACs, counted apart
    with conv_only:
        net[:1](x)
    conv_only.samples = 64
    assert expected["sops"] == pytest.approx(conv_only.report()["sops"], rel=0.01)
    assert expected["macs"] == pytest.approx(counter.report()["macs"])
    assert expected["parameters"] == sum(p.numel() for p in net.parameters()) and expected["output"] == [4, 1, 5]


def test_ctrl_c_before_the_first_epoch_says_how_to_start_again(tmp_path, capsys, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.loop, "train_one_epoch", killed)
    with pytest.raises(SystemExit) as stop:
        cli.main(TINY + ["--epochs", "2", "--out", str(tmp_path / "cut")])
    err = capsys.readouterr().err
    assert stop.value.code == 130 and "interrupted before the first epoch was saved" in err
    assert f"--config {tmp_path / 'cut'}/config.json --out {tmp_path / 'cut'}" in err


def test_export_advice_names_its_own_flag(trained, tmp_path):
    net = "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10"
    assert "MP" in net  # the run's net max-pools: NIR refuses it and says which flag writes average pooling
    shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(trained), "--format", "nir",
                            "--out", str(tmp_path / "x.nir")], capture_output=True, text=True)
    assert shown.returncode == 1 and "--max-pool avg" in shown.stderr and "max_pool_to_avg" not in shown.stderr
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(tmp_path / "none"), "--format",
                              "onnx"], capture_output=True, text=True)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr  # one line (a library's warning may precede)
    assert "no checkpoint or run directory at" in missing.stderr.strip().splitlines()[-1]


def test_mlf_decay_is_part_of_the_architecture():
    a = sj_sew.create_model("ds_resnet14", num_classes=10)
    b = sj_sew.create_model("ds_resnet14", num_classes=10, decay=0.5)
    assert training.architecture(a)["neurons"] != training.architecture(b)["neurons"]
    assert "decay=0.25" in training.architecture(a)["neurons"]


def test_a_config_json_that_cannot_be_written_stops_the_run_with_one_message(tmp_path, monkeypatch, capsys):
    import errno
    import pathlib

    real = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".config.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(SystemExit) as stop:
        cli.main(TINY + ["--epochs", "1", "--out", str(tmp_path / "full")])
    assert "could not write" in str(stop.value.code) and "config.json" in str(stop.value.code)
    assert not list((tmp_path / "full").glob(".config.json.tmp*"))


def test_fine_tuning_refuses_a_file_that_records_another_connect(tmp_path):
    """A checkpoint that records its arguments (here as a plain dict, readable without trust) says what net it is."""
    path = tmp_path / "iand.pth"
    net = sj_sew.create_model("sew_resnet18", connect="IAND", num_classes=10)
    torch.save({"model": net.state_dict(), "args": {"model": "sew_resnet18", "connect_f": "IAND"}}, path)
    cfg = training.resolve_config({"dataset": "cifar10", "data_root": str(tmp_path), "model": "sew_resnet18",
                                   "weights": str(path)})
    with pytest.raises(training.ConfigError, match="IAND"):
        training.load_initial_weights(training.model_from_config(cfg), cfg)
    ok = training.resolve_config({**cfg.to_dict(), "connect": "IAND", "preset": "custom"})
    assert "tensors from" in training.load_initial_weights(training.model_from_config(ok), ok)
