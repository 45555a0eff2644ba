"""Every bad input is one clear error before work starts (issue 10): the command line exits with status 2 and a
message naming the flag; the Python API raises TypeError/ValueError (or ConfigError, DataError, CheckpointError)
naming the argument; nothing is trained, written or loaded first. One case per parameter set below."""
import os
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import functional

import sj_sew
from sj_sew import training
from sj_sew.data import DataError, build_dataset, check_split, dataset_options
from sj_sew.training import CheckpointError, ConfigError, cli

pytestmark = pytest.mark.usefixtures("one_preprocessing_thread")

NET = "c4k3s1-BN-PLIF-{SEW Block(c4)-MPk2s2}*3-FC10"  # small net for the 16x16 event set


def _usage_error(argv, capsys) -> str:
    """Run the CLI expecting an argparse usage error; its message."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------------------ command line

CLI_CASES = [
    (["--momentum", "-1"], "--momentum must be a finite number >= 0, got -1.0"),
    (["--momentum", "1.5"], "--momentum must be < 1"),
    (["--momentum", "nan"], "--momentum must be a finite number >= 0, got nan"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a finite number >= 0, got -0.1"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number >= 0, got inf"),
    (["--gamma", "-1"], "--gamma (the StepLR factor) must be a finite number > 0"),
    (["--gamma", "0"], "--gamma (the StepLR factor) must be a finite number > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be > 0 and finite, got nan"),
    (["--lr", "inf"], "--lr must be > 0 and finite, got inf"),
    (["--lr", "0"], "--lr must be > 0 and finite, got 0.0"),
    (["--data-option", "bogus=1"], "--data-option bogus=1: data set 'events' takes no option ['bogus']; valid: "),
    (["--data-option", "per_clas=3"], "did you mean per_class= for per_clas=?"),
    (["--data-option", "T=3"], "are set by --data-root/--T, not --data-option"),
    (["--dataset", "digits", "--model", "sew_resnet18", "--T", "4", "--data-option", "source=digits"],
     "data set 'digits' takes no option ['source']; valid: ['split_seed', 'train_fraction']"),
    (["--dataset", "fashion_mnist", "--model", "sew_resnet18", "--T", "4", "--data-option", "x=1"],
     "data set 'fashion_mnist' takes no option ['x']; valid: none"),
    (["--T", "0"], "--T must be an integer >= 1, got 0"),
    (["--T", "-3"], "--T must be an integer >= 1, got -3"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "-4"], "--batch-size must be >= 1, got -4"),
    (["--device", "gpu7"], "--device 'gpu7' is not a device; valid: cpu, cuda or cuda:N"),
    (["--device", ""], "--device '' is not a device; valid: cpu, cuda or cuda:N"),
    (["--device", "meta"], "--device 'meta': sj_sew trains on cpu, cuda or cuda:N"),
    (["--notation", "garbage"], "--notation 'garbage' does not parse: cannot parse 'garbage'"),
    (["--notation", "c8k3s1-BN-IF-{SEW Block(c8)"], "--notation 'c8k3s1-BN-IF-{SEW Block(c8)' does not parse: unbalanced"),
    (["--notation", "c8k3s1-BN-IF"], "--notation cannot be built for data set 'events' (16x16 input): notation "
                                     "'c8k3s1-BN-IF' has no FC layer"),
    (["--notation", "c8k3s1-BN-IF-{SEW Block(c8)-MPk2s2}*5-FC10"],
     "--notation cannot be built for data set 'events' (16x16 input): 'c8k3s1-BN-IF-{SEW Block(c8)-MPk2s2}*5-FC10' "
     "shrinks a 16x16"),
    (["--model", "net7b", "--dataset", "digits", "--T", "4"], "--model net7b cannot be built for data set 'digits'"),
    (["--model", "sew_resnet18", "--family", "spiking"], "--family applies to notation nets"),
    (["--dataset", "cifar10", "--model", "sew_resnet18", "--T", "4", "--data-root", "/nonexistent/cifar"],
     "--data-root /nonexistent/cifar does not exist on this machine; give the directory that holds the cifar10 files "
     "(or add --download)"),
    (["--dataset", "cifar10", "--model", "sew_resnet18", "--T", "4", "--data-root", __file__],
     f"--data-root {__file__} is a file"),
    (["--dataset", "cifar10_dvs", "--model", "wide_net7b"], "data set 'cifar10_dvs' is not embedded: give --data-root"),
    (["--out", ""], "must name a directory, got ''"),
    (["--out", __file__], f"--out {__file__}: {__file__} is a file, not a directory"),
    (["--out", __file__ + "/run"], f"--out {__file__}/run: {__file__} is a file, not a directory"),
]


@pytest.mark.parametrize("argv,expected", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_bad_flag_is_a_usage_error_naming_it(argv, expected, tmp_path, capsys):
    if "--out" not in argv:
        argv = argv + ["--out", str(tmp_path / "never")]
    err = _usage_error(argv, capsys)
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_cli_out_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK) and os.geteuid() == 0:
            target = Path("/proc/sj_sew_run")  # root writes anywhere but procfs
        else:
            target = locked / "run"
        err = _usage_error(["--out", str(target)], capsys)
        assert f"--out {target} is not writable" in err or f"{target} is not writable" in err
    finally:
        locked.chmod(0o700)
    assert not list(locked.iterdir())  # the probe left nothing


def test_cli_resume_a_missing_checkpoint(tmp_path, capsys):
    err = _usage_error(["--resume", str(tmp_path / "nothing")], capsys)
    assert f"no checkpoint or run directory at {tmp_path / 'nothing'}" in err


# ------------------------------------------------------------------------------------------ presets


def _cfg(*argv):
    return cli.config_from_argv(list(argv) + ["--out", "never"])[0]


def test_preset_applies_only_when_chosen_or_nothing_else_is():
    quick = _cfg()
    assert (quick.preset, quick.optimizer, quick.batch_size, quick.zero_init, quick.threads) == \
        ("quickstart", "adam", 16, True, 1)
    assert _cfg("--epochs", "3").preset == "quickstart"  # flags that do not pick data or net keep it
    custom, plain = training.CUSTOM_DEFAULTS, training.RunConfig()
    for argv in (["--dataset", "digits", "--model", "sew_resnet18", "--T", "4"], ["--model", "sew_resnet18"],
                 ["--notation", NET]):
        c = _cfg(*argv)
        assert c.preset == "custom", argv
        assert (c.optimizer, c.lr, c.batch_size, c.zero_init, c.threads, c.epochs) == \
            (custom["optimizer"], custom["lr"], custom["batch_size"], plain.zero_init, plain.threads,
             custom["epochs"]), argv
    c = _cfg("--preset", "quickstart", "--dataset", "digits", "--notation", NET, "--T", "4")
    assert (c.preset, c.optimizer, c.batch_size) == ("quickstart", "adam", 16)  # chosen explicitly: applies
    assert "the quickstart preset applies only when none of" in " ".join(cli.build_parser().epilog.split())
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert "the quickstart preset applies only when none of `--dataset`, `--model` and `--notation`" in readme


# ------------------------------------------------------------------------------------------ Python API


@pytest.mark.parametrize("kwargs,error,expected", [
    (dict(zero_init=True), TypeError, "sew_resnet18 got an unknown argument 'zero_init'; did you mean "
                                      "zero_init_residual? Its arguments: ['T', 'backend', 'connect',"),
    (dict(conect="ADD"), TypeError, "sew_resnet18 got an unknown argument 'conect'; did you mean connect? Its"),
    (dict(num_class=10), TypeError, "got an unknown argument 'num_class'; did you mean num_classes? Its"),
    (dict(v_treshold=1.0), TypeError, "'v_treshold'; did you mean v_threshold (a parameter of its neuron IFNode)?"),
    (dict(tau=2.0), TypeError, "tau is a parameter of neuron='lif' or 'plif', not of IFNode"),
    (dict(bogus=1), TypeError, "got an unknown argument 'bogus'. Its arguments: ['T', 'backend', 'connect', "
                               "'in_channels', 'neuron', 'num_classes', 'width', 'zero_init_residual'], and the "
                               "parameters of its neuron IFNode: ['detach_reset'"),
    (dict(family="spiking"), TypeError, "sew_resnet18 fixes family='sew'"),
    (dict(neuron="lif", tau=0), ValueError, "tau of LIFNode must be > 1"),
    (dict(neuron="lif", tau=1.0), ValueError, "tau of LIFNode must be > 1"),
    (dict(neuron="plif", tau=0.5), ValueError, "init_tau of ParametricLIFNode must be > 1"),
    (dict(neuron="lif", tau="slow"), ValueError, "tau must be a finite number, got 'slow'"),
    (dict(v_threshold=-1.0), ValueError, "v_threshold must be > 0"),
    (dict(v_threshold=float("nan")), ValueError, "v_threshold must be a finite number, got nan"),
    (dict(v_reset=2.0), ValueError, "v_reset must be below v_threshold"),
    (dict(neuron="izhikevich"), ValueError, "unknown neuron 'izhikevich'; valid: ['if', 'lif', 'plif']"),
    (dict(connect="OR"), ValueError, "unknown connect function 'OR'; valid:"),
    (dict(backend="jax"), ValueError, "unknown backend 'jax'; valid:"),
    (dict(T=0), ValueError, "T must be a positive int or None, got 0"),
    (dict(num_classes=0), ValueError, "num_classes must be a positive int, got 0"),
])
def test_create_model_bad_argument_names_it(kwargs, error, expected):
    with pytest.raises(error) as e:
        sj_sew.create_model("sew_resnet18", **{"num_classes": 10, "width": 4, **kwargs})
    assert expected in str(e.value)
    if "; did you mean" in expected and "neuron" not in expected:  # a model argument's typo is not the neuron's
        assert "neuron" not in str(e.value).split(" Its arguments")[0]


def test_create_model_unknown_name_suggests_one():
    with pytest.raises(ValueError, match=r"unknown model 'sew_resnet19'.*did you mean sew_resnet18"):
        sj_sew.create_model("sew_resnet19")


@pytest.mark.parametrize("name", ["net7b", "ms_resnet18", "ds_resnet20", "surrogate_net", "spiking_resnet18"])
def test_every_model_kind_names_a_mistyped_argument(name):
    """Factories with and without neuron keyword arguments (DS-ResNet takes none) say the same."""
    with pytest.raises(TypeError, match=rf"^{name} got an unknown argument 'num_class'; did you mean num_classes\? "
                                        r"Its arguments: \[.*'num_classes'"):
        sj_sew.create_model(name, num_class=10)


@pytest.fixture(scope="module")
def seq_net():
    return sj_sew.NotationNet(NET, in_channels=2, input_size=16)


@pytest.fixture(scope="module")
def static_net():
    return sj_sew.NotationNet(NET, in_channels=1, input_size=16, T=2)


@pytest.mark.parametrize("x,error,expected", [
    (torch.zeros(0, 2, 2, 16, 16), ValueError, "has T = 0 time steps"),
    (torch.zeros(4, 0, 2, 16, 16), ValueError, "the input batch is empty (N = 0"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.int64), TypeError, "must be a floating-point tensor"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.bool), TypeError, "got dtype torch.bool; convert it with x.float()"),
    (torch.full((4, 2, 2, 16, 16), float("nan")), ValueError, "input holds non-finite values"),
    (torch.zeros(4, 2, 2, 32, 32), ValueError, "NotationNet was built for 16x16 input (input_size=16) but got 32x32"),
    (torch.zeros(4, 2, 3, 16, 16), ValueError, "expected 2 input channels"),
    (torch.zeros(2, 2, 16, 16), ValueError, "needs a model built with T="),
    ([[0.0]], TypeError, "input must be a torch.Tensor, got list"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.float64), TypeError,
     "input dtype torch.float64 differs from the model's parameters (torch.float32); convert the input "
     "(x.to(torch.float32)) or the model (model.to(torch.float64))"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.float16), TypeError, "input dtype torch.float16 differs"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.bfloat16), TypeError, "or run under torch.autocast"),
    (torch.zeros(4, 2, 2, 16, 16, dtype=torch.uint8), TypeError, "got dtype torch.uint8; convert it with x.float()"),
    (torch.zeros(4, 2, 2, 16, 16, device="meta"), ValueError,
     "the input is on meta but the model on cpu; move the input (x.to('cpu')) or the model"),
])
def test_bad_sequence_input_is_one_clear_error(seq_net, x, error, expected):
    with pytest.raises(error) as e:
        seq_net(x)
    assert expected in str(e.value)


def test_float64_runs_on_a_float64_model():
    """What SpikingJelly does: a ``.double()`` model takes float64 input, and computes what float32 does."""
    x = torch.rand(3, 2, 2, 16, 16)
    net = sj_sew.NotationNet(NET, in_channels=2, input_size=16).eval()
    single = net(x)
    functional.reset_net(net)
    double = net.double()(x.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="input dtype torch.float32 differs from the model's parameters "
                                        r"\(torch.float64\)"):
        net(x)


def test_autocast_takes_float32_input(seq_net):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = seq_net(torch.rand(2, 2, 2, 16, 16))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "strided"])
def test_any_memory_layout_gives_the_same_output(layout):
    net = sj_sew.NotationNet(NET, in_channels=2, input_size=16, T=3, neuron="if").eval()
    x = torch.rand(4, 2, 16, 16) * 4
    if layout == "channels_last":
        other = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        other = x.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        other = torch.rand(8, 2, 16, 16)[::2]
        other.copy_(x)
    assert not other.is_contiguous() and torch.equal(other, x)
    expected = net(x)
    functional.reset_net(net)
    assert (expected - expected[0]).abs().max() > 0.01  # the output depends on the input: neurons fire
    torch.testing.assert_close(net(other), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("frame,error,expected", [
    (torch.rand(2, 2, 16, 16, dtype=torch.float64), TypeError, "input dtype torch.float64 differs"),
    (torch.rand(2, 2, 16, 16).long(), TypeError, "must be a floating-point tensor"),
    (torch.full((2, 2, 16, 16), float("nan")), ValueError, "non-finite"),
    (torch.rand(0, 2, 16, 16), ValueError, "the input batch is empty"),
    (torch.rand(2, 2, 8, 8), ValueError, "built for 16x16 input"),
    (torch.rand(2, 3, 16, 16), ValueError, "expected 2 input channels"),
    (torch.rand(3, 2, 2, 16, 16), ValueError, "a streaming step takes one frame [N, C, H, W]; got shape (3, 2, 2"),
])
def test_bad_stream_frame_is_one_clear_error(frame, error, expected):
    """A stream's frame obeys the input contract except for T (a model built with T=2 takes one step)."""
    net = sj_sew.NotationNet(NET, in_channels=2, input_size=16, T=2)
    net.check_frame(torch.rand(2, 2, 16, 16))
    with pytest.raises(error) as e:
        net.check_frame(frame)
    assert expected in str(e.value)


def test_bad_static_input(static_net):
    x = torch.rand(3, 1, 16, 16)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        static_net(x)
    with pytest.raises(ValueError, match="built for 16x16 input"):
        static_net(torch.rand(3, 1, 8, 8))


@pytest.mark.parametrize("fn,identity,error,expected", [
    (42, 0, TypeError, "fn must be callable as fn(A, S) -> tensor, got 42"),
    (lambda a, s: a.sum(), 0, TypeError, "must return a tensor of A's shape (2, 3), got a tensor of shape ()"),
    (lambda a: a, 0, TypeError, "fn(A, S) failed on two spike tensors"),
    (lambda a, s: 1, 0, TypeError, "got int"),
    (lambda a, s: a * s, 0.5, ValueError, "identity_spike must be 0 or 1"),
])
def test_register_connect_checks_fn_at_registration(fn, identity, error, expected):
    with pytest.raises(error) as e:
        sj_sew.register_connect("NOPE_BAD_INPUT", fn, identity)
    assert expected in str(e.value)
    assert error is ValueError or "NOPE_BAD_INPUT" in str(e.value)  # the fn errors name the connect function
    assert "NOPE_BAD_INPUT" not in sj_sew.connect.list_connects()


# ------------------------------------------------------------------------------------------ data


def test_build_dataset_unknown_option_names_it():
    with pytest.raises(TypeError, match=r"data set 'digits' takes no option \['bogus'\]; valid: \['split_seed'"):
        build_dataset("digits", True, bogus=1)
    assert "per_class" in dataset_options("events") and dataset_options("cifar10") == ["download"]


def test_empty_test_split_is_an_error_naming_split_and_set():
    with pytest.raises(DataError, match="the test split of data set 'events' is empty"):
        build_dataset("events", False, T=2, per_class=1)


def test_one_class_train_split_is_an_error():
    one = torch.utils.data.TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="the train split of data set 'mine' holds 4 samples of 1 class"):
        check_split(one, "mine", train=True)
    assert check_split(one, "mine", train=False) is one


def test_cli_empty_split_is_a_usage_error(tmp_path, capsys):
    err = _usage_error(["--notation", NET, "--T", "2", "--data-option", "per_class=1", "--epochs", "1",
                        "--no-progress", "--no-tensorboard", "--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    assert "the test split of data set 'events' is empty" in err
    assert "Traceback" not in err


def test_cifar10_dvs_with_three_samples_per_class_has_no_test_split(tmp_path):
    from dvs_files import write_cifar10_dvs

    write_cifar10_dvs(tmp_path, per_class=3)
    with pytest.raises(DataError, match="the test split of data set 'cifar10_dvs' is empty"):
        build_dataset("cifar10_dvs", False, root=tmp_path, T=2)


@pytest.mark.parametrize("batch_size,train_size,expected", [
    (0, 4, "batch_size must be a positive int (per process), got 0"),
    (None, 4, "batch_size must be a positive int (per process), got None"),
    (2.5, 4, "got 2.5"),
    (2, 0, "the training data set (TensorDataset) is empty"),
])
def test_loaders_bad_arguments(batch_size, train_size, expected):
    data = torch.utils.data.TensorDataset(torch.zeros(train_size, 1, 8, 8), torch.zeros(train_size, dtype=torch.long))
    test = torch.utils.data.TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError) as e:
        training.make_loaders(data, test, batch_size, training.DistEnv(), seed=0)
    assert expected in str(e.value)


@pytest.mark.parametrize("name,value", [("WORLD_SIZE", "two"), ("WORLD_SIZE", "0"), ("LOCAL_RANK", "-1")])
def test_init_distributed_bad_environment(monkeypatch, name, value):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"the environment variable {name}='{value}' is not a valid .*torchrun"):
        training.init_distributed("cpu")


def test_resolve_config_from_python_names_the_flag():
    with pytest.raises(ConfigError, match="--momentum must be"):
        training.resolve_config({"momentum": -1.0})
    with pytest.raises(ConfigError, match="--data-option bogus"):
        training.resolve_config({"data_options": {"bogus": 1}})


# ------------------------------------------------------------------------------------------ checkpoints


def _torchvision_state_dict(path):
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)


def _config_of_unknown_keys(path):
    training.save_checkpoint({"config": {"nonsense": 1}, "model": {}}, path)


CHECKPOINTS = {
    "zero bytes": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(os.urandom(4096)),
    "truncated": lambda p: (torch.save({"model": {"w": torch.zeros(1000)}, "config": {}}, p),
                            p.write_bytes(p.read_bytes()[:300])),
    "a torchvision state_dict": _torchvision_state_dict,
    "a list": lambda p: torch.save([1, 2, 3], p),
    "a config of unknown keys": _config_of_unknown_keys,
}


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
def test_bad_checkpoint_is_one_error_naming_the_file(kind, tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    CHECKPOINTS[kind](path)
    with pytest.raises(CheckpointError) as e:
        training.load_checkpoint(path)
    assert str(path) in str(e.value)
    err = _usage_error(["--resume", str(path)], capsys)
    assert str(path) in err and "Traceback" not in err


def test_checkpoint_with_a_wrong_checksum(tmp_path):
    path = tmp_path / "checkpoint.pt"
    cfg = training.resolve_config({"epochs": 1, "out": str(tmp_path)})
    training.save_checkpoint({"config": cfg.to_dict(), "model": {"w": torch.zeros(3)}}, path)
    state = torch.load(path, weights_only=True)
    state["model"]["w"] += 1
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="checksum") as e:
        training.read_checkpoint(path)
    assert str(path) in str(e.value)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError) as e:
        training.load_checkpoint(tmp_path / "none.pt")
    assert str(tmp_path / "none.pt") in str(e.value)


@pytest.mark.parametrize("call,error,message", [
    (lambda: sj_sew.NotationNet(NET, input_size=16, in_channel=2), TypeError, "did you mean in_channels"),
    (lambda: sj_sew.NotationNet(5), TypeError, "a notation is a string"),
    (lambda: sj_sew.data.build_dataset("events", "train"), TypeError, "train must be True"),
    (lambda: sj_sew.data.build_dataset("events", True, per_class=0), ValueError, "per_class must be a positive int"),
    (lambda: sj_sew.data.build_dataset("events", True, per_class=-1), ValueError, "per_class must be a positive int"),
])
def test_a_new_users_mistakes_in_nets_and_data_are_named(call, error, message):
    with pytest.raises(error, match=message) as raised:
        call()
    assert not str(raised.value).startswith(("ParametricLIFNode", "LIFNode", "IFNode"))  # not the neuron's fault
