"""Published checkpoints: key mapping from each source onto sj_sew's nets, strict refusals, the weights table.

``fixtures/authors_state_dict_keys.json`` holds the state-dict key names and shapes of the authors' networks as
data (derived by building the nets of fangwei123456/Spike-Element-Wise-ResNet with the May-2021 SpikingJelly
layout, BICLab/MS-ResNet and langfengQ/MLF-DSResNet); none of their code is in this repository.
"""
import argparse
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

import sj_sew
from sj_sew.models import weights as W

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "authors_state_dict_keys.json").read_text())
BUILD = {"net7b/spiking": ("net7b", {"family": "spiking"}), "net7b/plain": ("net7b", {"family": "plain"})}
CASES = [(source, name) for source, nets in FIXTURE.items() for name in nets]


def _build(name):
    arch, kwargs = BUILD.get(name, (name, {}))
    return arch, sj_sew.create_model(arch, **kwargs), kwargs


def _randomised(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
            else:
                t.fill_(7)
    return model


@pytest.mark.parametrize("source, name", CASES)
def test_authors_keys_and_shapes_map_one_to_one_and_round_trip(source, name):
    arch, model, kwargs = _build(name)
    _randomised(model)
    keys = FIXTURE[source][name]
    rename = W.SOURCES[source]
    ours = model.state_dict()
    targets = [rename(k, model) for k, _ in keys]
    assert sorted(targets) == sorted(ours), set(targets) ^ set(ours)
    assert all(list(ours[t].shape) == shape for t, (_, shape) in zip(targets, keys))
    theirs = {"model": {k: ours[t].clone() for t, (k, _) in zip(targets, keys)}, "epoch": 319}
    loaded = sj_sew.load_pretrained(theirs, arch, source="auto", **kwargs)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in ours.items())


def test_resnet18_authors_names_differ_from_ours_except_stem_and_classifier():
    authors = {k for k, _ in FIXTURE["sew_authors"]["sew_resnet18"]}
    ours = set(sj_sew.create_model("sew_resnet18").state_dict())
    assert len(authors) == len(ours) == 122 and len(authors & ours) == 8


def test_spikingjelly_zoo_and_ms_resnet_names_load():
    zoo = pytest.importorskip("spikingjelly.activation_based.model.sew_resnet")
    from spikingjelly.activation_based import neuron
    net = zoo.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, num_classes=10)
    ours = sj_sew.load_pretrained(net.state_dict(), "sew_resnet18", num_classes=10)
    assert torch.equal(ours.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)
    try:
        from spikingjelly.activation_based.model import ms_resnet
    except ImportError:
        return  # SpikingJelly 0.0.0.0.14 ships no ms_resnet
    zoo_ms = ms_resnet.ms_resnet18(T=2, num_classes=10)
    ms = sj_sew.load_pretrained(zoo_ms.state_dict(), "ms_resnet18", source="spikingjelly", num_classes=10)
    assert torch.equal(ms.conv1.weight, zoo_ms.stem[0].weight) and torch.equal(ms.fc.bias, zoo_ms.head.bias)


def test_clock_driven_zoo_names_are_ours():
    sew = pytest.importorskip("spikingjelly.clock_driven.model.sew_resnet",
                              reason="clock_driven exists on SpikingJelly 0.0.0.0.14 only")
    from spikingjelly.clock_driven import neuron
    net = sew.multi_step_sew_resnet18(T=2, cnf="ADD", multi_step_neuron=neuron.MultiStepIFNode, num_classes=10)
    ours = sj_sew.load_pretrained(net.state_dict(), "sew_resnet18", source="spikingjelly", num_classes=10)
    assert torch.equal(ours.layer2[0].downsample[0].weight, net.layer2[0].downsample[0].weight)


def test_refusal_names_every_unmapped_key_and_every_differing_shape():
    arch, model, _ = _build("sew_resnet18")
    theirs = {k: torch.zeros(s) for k, s in FIXTURE["sew_authors"]["sew_resnet18"]}
    theirs["fc.weight"] = torch.zeros(10, 512)  # trained for 10 classes
    theirs["layer9.0.extra.weight"] = torch.zeros(3)
    del theirs["layer1.0.conv2.module.1.running_var"]
    with pytest.raises(W.CheckpointMismatch) as info:
        sj_sew.load_pretrained(theirs, "sew_resnet18", source="sew_authors")
    message = str(info.value)
    assert "'fc.weight' -> 'fc.weight': checkpoint (10, 512), model (1000, 512)" in message
    assert "'layer9.0.extra.weight' does not map" in message
    assert "model key 'layer1.0.bn2.running_var' gets no value" in message
    assert len(info.value.problems) == 3
    with pytest.raises(W.CheckpointMismatch, match="problem"):  # auto: the closest source's problems
        sj_sew.load_pretrained(theirs, "sew_resnet18")
    with pytest.raises(ValueError, match="unknown checkpoint source"):
        sj_sew.load_pretrained(theirs, "sew_resnet18", source="timm")


def test_files_ddp_prefix_and_pickled_checkpoints(tmp_path):
    model = _randomised(sj_sew.create_model("net7b"))
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3}, path)
    loaded = sj_sew.create_model("net7b", weights=str(path))
    assert torch.equal(loaded.layers[0].weight, model.layers[0].weight)
    pickled = tmp_path / "args.pth"
    torch.save({"model": model.state_dict(), "args": _gesture_args("add")}, pickled)
    with pytest.raises(RuntimeError, match="pickles argparse.Namespace.*trusted=True"):
        sj_sew.load_pretrained(str(pickled), "net7b")
    assert torch.equal(sj_sew.load_pretrained(str(pickled), "net7b", trusted=True).layers[0].weight,
                       model.layers[0].weight)
    with pytest.raises(FileNotFoundError, match="neither a file nor a registered name"):
        sj_sew.create_model("net7b", weights=str(tmp_path / "missing.pth"))


# --------------------------------------------------------------------------------------------------
# Files that pickle their training arguments, written as their scripts write them
# --------------------------------------------------------------------------------------------------

def _gesture_args(connect_f, model="DVSGNetSEW32"):
    """The Namespace of the SEW authors' dvsgesture/train.py, with the values of their published run's args.txt."""
    return argparse.Namespace(T=16, T_train=12, adam=False, amp=True, batch_size=16, connect_f=connect_f, cos_lr_T=0,
                              data_path="/raid/wfang/datasets/DVS128Gesture", dataset_name="DVS128Gesture",
                              device="cuda:2", dist_url="env://", distributed=False, epochs=192, lr=0.001,
                              lr_gamma=0.1, lr_step_size=64, model=model, momentum=0.9, output_dir="./logs_n9",
                              print_freq=64, resume="", start_epoch=0, sync_bn=False, tb=True, test_only=False,
                              val_ratio=0, weight_decay=0, workers=4, world_size=1, zero_init_residual=True)


def _imagenet_args(model, connect_f):
    """The Namespace of the SEW authors' imagenet/train.py for their published command line (--model, --connect_f,
    --T 4, --lr 0.1, --epoch 320, --cos_lr_T 320 ...)."""
    return argparse.Namespace(model=model, connect_f=connect_f, T=4, lr=0.1, epochs=320, cos_lr_T=320, batch_size=32,
                              amp=True, tb=True, cache_dataset=True, zero_init_residual=False, momentum=0.9,
                              weight_decay=0, data_path="/raid/wfang/imagenet", output_dir="./logs")


def _authors_file(path, model, fixture, args, key="model"):
    """A checkpoint as the authors' train.py saves it: their key names (``fixture``), optimizer and scheduler
    state, and ``args``."""
    theirs = {k: model.state_dict()[W.SOURCES["sew_authors"](k, model)] for k, _ in FIXTURE["sew_authors"][fixture]}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    checkpoint = {key: theirs, "optimizer": optimizer.state_dict(),
                  "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 64).state_dict(), "epoch": 191}
    if args is not None:
        checkpoint.update(args=args, max_test_acc1=97.92, test_acc5_at_max_test_acc1=100.0)
    torch.save(checkpoint, path)
    return path


def _logits_net(connect):
    """7B-Net with weights that make its blocks fire (BN variances kept positive), in eval mode."""
    torch.manual_seed(0)
    net = sj_sew.create_model("net7b", connect=connect)
    with torch.no_grad():
        for k, t in net.state_dict().items():
            if "running_var" in k:
                t.uniform_(0.5, 1.5)
            elif t.is_floating_point():
                t.add_(0.3 * torch.randn_like(t))
    return net.eval()


def test_create_model_loads_authors_iand_file_only_as_iand_and_only_when_trusted(tmp_path):
    iand = _logits_net("IAND")
    path = _authors_file(tmp_path / "dvsgesture_iand.pth", iand, "net7b", _gesture_args("iand"))
    with pytest.raises(RuntimeError, match="pickles argparse.Namespace.*pass trusted=True"):
        sj_sew.create_model("net7b", weights=str(path))  # trust is never given silently
    with pytest.raises(W.CheckpointMismatch) as info:
        sj_sew.create_model("net7b", weights=str(path), trusted=True)  # net7b's default connect is ADD
    assert "connect_f='iand'" in str(info.value) and "connect='ADD'" in str(info.value)
    assert "pass connect='IAND'" in str(info.value)
    loaded = sj_sew.create_model("net7b", weights=str(path), trusted=True, connect="IAND").eval()
    assert loaded.layers[3].connect.name == "IAND"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in iand.state_dict().items())
    x = (torch.rand(2, 1, 2, 128, 128, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    with torch.no_grad():
        as_add = sj_sew.create_model("net7b", weights=iand.state_dict()).eval()(x)  # what a silent load gave
        assert torch.equal(loaded(x), iand(x)) and (as_add - iand(x)).abs().max() > 0.1


def test_recorded_model_name_must_name_the_requested_network(tmp_path):
    plain = sj_sew.create_model("net7b", family="plain")
    path = _authors_file(tmp_path / "plain.pth", plain, "net7b/plain", _gesture_args(None, model="PlainNet"))
    with pytest.raises(W.CheckpointMismatch, match=r"model='PlainNet' \(net7b or wide_net7b, family 'plain'\), "
                                                   r"the requested network is net7b \(family 'sew'\)"):
        sj_sew.create_model("net7b", weights=str(path), trusted=True)
    assert sj_sew.create_model("net7b", family="plain", weights=str(path), trusted=True).family == "plain"
    sew = sj_sew.create_model("net7b")
    path = _authors_file(tmp_path / "sew.pth", sew, "net7b", _gesture_args("add", model="SEWResNet"))
    with pytest.raises(W.CheckpointMismatch, match="model='SEWResNet'.*the requested network is net7b .family 'spiking'"):
        sj_sew.create_model("net7b", family="spiking", weights=str(path), trusted=True)
    with pytest.raises(W.CheckpointMismatch, match="connect_f='add', the requested net7b has no SEW connect"):
        sj_sew.load_pretrained({"model": sew.state_dict(), "args": _gesture_args("add", model="DVSGNetSEW32")},
                               "net7b", family="plain")


def test_spikingjelly_train_classify_checkpoint_names_its_model(tmp_path):
    try:
        from spikingjelly.activation_based.examples.common.train_classify import Trainer  # 2.x
    except ImportError:
        from spikingjelly.activation_based.model.train_classify import Trainer  # 0.0.0.0.14
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import spiking_resnet
    zoo = spiking_resnet.spiking_resnet18(spiking_neuron=neuron.IFNode, num_classes=10)
    args = Trainer().get_args_parser().parse_args(["--model", "spiking_resnet18", "--data-path", "/data"])
    optimizer = torch.optim.SGD(zoo.parameters(), lr=0.1)
    torch.save({"model": zoo.state_dict(), "optimizer": optimizer.state_dict(), "lr_scheduler": {}, "epoch": 9,
                "args": args, "max_test_acc1": 12.5}, tmp_path / "checkpoint_max.pth")
    path = str(tmp_path / "checkpoint_max.pth")
    with pytest.raises(RuntimeError, match="trusted=True"):
        sj_sew.create_model("spiking_resnet18", weights=path, num_classes=10)
    # a SEW ResNet-18 with IF neurons has the very same keys and shapes: only the recorded name tells them apart
    with pytest.raises(W.CheckpointMismatch, match="model='spiking_resnet18', the requested network is sew_resnet18"):
        sj_sew.create_model("sew_resnet18", weights=path, trusted=True, num_classes=10)
    ours = sj_sew.create_model("spiking_resnet18", weights=path, trusted=True, num_classes=10)
    assert torch.equal(ours.layer4[1].conv2.weight, zoo.layer4[1].conv2.weight)


@pytest.mark.parametrize("name", ["sew_resnet18_imagenet_add", "net7b_dvs128_gesture_add", "wide_net7b_cifar10_dvs_add"])
def test_every_kind_of_table_entry_loads_through_create_model(name, tmp_path, monkeypatch):
    entry = W.get_weights(name)
    monkeypatch.setenv("SJ_SEW_WEIGHTS", str(tmp_path))
    model = sj_sew.create_model(entry.arch, **entry.model_kwargs)
    if entry.arch == "sew_resnet18":  # imagenet/train.py: 'model' and 'args'
        _authors_file(tmp_path / entry.filename, model, "sew_resnet18", _imagenet_args("sew_resnet18", "ADD"))
    elif entry.arch == "net7b":  # dvsgesture/train.py: 'model' and 'args'
        _authors_file(tmp_path / entry.filename, model, "net7b", _gesture_args("add"))
    else:  # cifar10dvs/train.py: 'net', no arguments
        _authors_file(tmp_path / entry.filename, model, "wide_net7b", None, key="net")
    pickles = entry.arch != "wide_net7b"
    with pytest.warns(UserWarning, match="no checksum"):
        if pickles:
            with pytest.raises(RuntimeError, match="trusted=True"):
                sj_sew.create_model(entry.arch, weights=name)
        loaded = sj_sew.create_model(entry.arch, weights=name, trusted=pickles)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_trusted_without_weights_is_refused():
    with pytest.raises(TypeError, match="trusted=True applies to weights="):
        sj_sew.create_model("net7b", trusted=True)


def test_weights_table_checks_architecture_checksum_and_supplies_arguments(tmp_path, monkeypatch):
    entry = W.get_weights("sew_resnet18_imagenet_add")
    assert entry.accuracy["top1"] == 63.18 and entry.arch == "sew_resnet18" and entry.source == "sew_authors"
    assert "sew_resnet50_imagenet_add" in sj_sew.pretrained.list_weights("sew_resnet50")
    with pytest.raises(ValueError, match="are for sew_resnet18, not sew_resnet34"):
        sj_sew.create_model("sew_resnet34", weights="sew_resnet18_imagenet_add")
    monkeypatch.setenv("SJ_SEW_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        sj_sew.create_model("sew_resnet18", weights="sew_resnet18_imagenet_add")
    model = _randomised(sj_sew.create_model("net7b", num_classes=3))
    authors_net = {W.SOURCES["sj_sew"](k, model): v for k, v in model.state_dict().items()}
    torch.save({"model": authors_net}, tmp_path / "mine.pth")
    digest = hashlib.sha256((tmp_path / "mine.pth").read_bytes()).hexdigest()
    W.register_weights(W.Weights("test_net7b_3", "net7b", "sj_sew", "file://here", "mine.pth", "events",
                                 {"top1": 50.0}, dict(num_classes=3), sha256=digest))
    try:
        loaded = sj_sew.create_model("net7b", weights="test_net7b_3")  # num_classes=3 from the entry
        assert torch.equal(loaded.layers[-1].weight, model.layers[-1].weight)
        (tmp_path / "mine.pth").write_bytes(b"tampered")
        with pytest.raises(ValueError, match="sha256"):
            sj_sew.create_model("net7b", weights="test_net7b_3")
        with pytest.raises(ValueError, match="already registered"):
            W.register_weights(W.get_weights("test_net7b_3"))
    finally:
        W._WEIGHTS.pop("test_net7b_3")
    with pytest.warns(UserWarning, match="no checksum"):
        (tmp_path / "sew18.pth").write_bytes(b"")
        monkeypatch.setattr(W, "read_checkpoint_file", lambda *a: {"x": torch.zeros(1)})
        with pytest.raises(W.CheckpointMismatch):
            W.load_weights(sj_sew.create_model("sew_resnet18"), "sew_resnet18",
                           W.Weights("tmp", "sew_resnet18", "sew_authors", "u", "sew18.pth", "imagenet", {}))


def test_convert_checkpoint_script_round_trip(tmp_path):
    import subprocess
    import sys
    model = _randomised(sj_sew.create_model("net7b"))
    ours = model.state_dict()
    keys = FIXTURE["sew_authors"]["net7b"]
    theirs = {k: ours[W.SOURCES["sew_authors"](k, model)] for k, _ in keys}
    torch.save({"model": theirs, "epoch": 191}, tmp_path / "authors.pth")
    script = Path(__file__).parent.parent / "scripts" / "convert_checkpoint.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "authors.pth"), "--arch", "net7b",
                           "--out", str(tmp_path / "ours.pth")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = sj_sew.create_model("net7b", weights=str(tmp_path / "ours.pth"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in ours.items())
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "authors.pth"), "--arch", "wide_net7b"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "does not fit wide_net7b" in bad.stderr


def _convert_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "convert_checkpoint", Path(__file__).parent.parent / "scripts" / "convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_convert_checkpoint_script_errors_are_one_line(tmp_path, capsys):
    main = _convert_script().main
    sew = sj_sew.create_model("net7b")
    _authors_file(tmp_path / "iand.pth", sew, "net7b", _gesture_args("IAND"))
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_state.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    torch.save({"model": sew.state_dict()}, tmp_path / "plain.pth")
    cases = [
        ([str(tmp_path / "missing.pth")], "neither a file nor a registered name"),
        ([str(tmp_path / "no_state.pth")], "not a state dict"),
        ([str(tmp_path / "garbage.pth")], r"does not load with weights_only=True \(UnpicklingError: Unsupported "
                                          r"operand \d+\); if you trust the file, pass trusted=True"),
        ([str(tmp_path / "garbage.pth"), "--trusted"], r"is not a torch checkpoint \(UnpicklingError: [^\n]+\)$"),
        ([str(tmp_path / "iand.pth")], "pickles argparse.Namespace"),
        ([str(tmp_path / "iand.pth"), "--trusted"], "connect_f='IAND', the requested net7b is built with connect='ADD'"),
        ([str(tmp_path / "iand.pth"), "--trusted", "--connect", "IAND", "--arch", "wide_net7b"],
         "model='DVSGNetSEW32' .net7b, family 'sew'., the requested network is wide_net7b"),
        ([str(tmp_path / "plain.pth"), "--arch", "wide_net7b"],
         r"does not fit wide_net7b .*problem\(s\): .*; and \d+ more$"),
    ]
    for argv, message in cases:
        argv = argv if "--arch" in argv else [*argv, "--arch", "net7b"]
        assert main([*argv, "--out", str(tmp_path / "out.pth")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert re.search(message, err.strip()), err
    assert not (tmp_path / "out.pth").exists()
    assert main([str(tmp_path / "iand.pth"), "--arch", "net7b", "--trusted", "--connect", "IAND",
                 "--out", str(tmp_path / "out.pth")]) == 0
    loaded = sj_sew.create_model("net7b", connect="IAND", weights=str(tmp_path / "out.pth"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in sew.state_dict().items())
