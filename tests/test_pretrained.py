"""Published checkpoints: key mapping from each source onto sj_sew's nets, strict refusals, the weights table.

``fixtures/authors_state_dict_keys.json`` holds the state-dict key names and shapes of the authors' networks as
data (derived by building the nets of fangwei123456/Spike-Element-Wise-ResNet with the May-2021 SpikingJelly
layout, BICLab/MS-ResNet and langfengQ/MLF-DSResNet); none of their code is in this repository.
"""
import hashlib
import json
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
    torch.save({"model": model.state_dict(), "args": _Args()}, pickled)
    with pytest.raises(RuntimeError, match="trusted=True"):
        sj_sew.load_pretrained(str(pickled), "net7b")
    assert torch.equal(sj_sew.load_pretrained(str(pickled), "net7b", trusted=True).layers[0].weight,
                       model.layers[0].weight)
    with pytest.raises(FileNotFoundError, match="neither a file nor a registered name"):
        sj_sew.create_model("net7b", weights=str(tmp_path / "missing.pth"))


class _Args:  # stands for the argparse.Namespace the SEW authors store in their checkpoints
    lr = 0.1


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
