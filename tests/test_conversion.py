"""S-ResNet conversion: the IF neuron, layer/shortcut normalisation, real-data accuracy, SpikingJelly's converter."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from sj_sew import conversion as C



def test_if_neuron_subtractive_reset_from_half_threshold():
    node = C.SubtractiveIF()
    out = [node(torch.tensor(0.3)).item() for _ in range(5)]
    # v: 0.5 + 0.3 = 0.8, 1.1 -> spike, 0.1, 0.4, 0.7, 1.0 -> spike ... (reset keeps the remainder)
    assert out == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert node.v.item() == pytest.approx(0.0, abs=1e-6)
    node.reset()
    assert node.v == 0.5


def _random_bn(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.3)
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _rates_vs_ann(snn, ann, x, T):
    """Mean absolute gap between SNN scores / T and the ANN logits / lambda_fc (the normalised target)."""
    target = ann(x) / snn.scales["fc"]
    return (snn(x, T=T) - target).abs().mean().item()


def test_layer_and_shortcut_normalisation_reproduce_the_ann():
    ann = _random_bn(C.ann_resnet(14, widths=(4, 8, 8), in_channels=1, num_classes=5))
    x = torch.rand(16, 1, 8, 8)
    snn = C.convert(ann, [(x, None)], percentile=100.0, readout="count+membrane",
                    pool_neuron=False)  # max-norm: no clipping on these inputs
    assert set(snn.scales) == {"relu1", "fc"} | {f"blocks.{i}.relu{j}" for i in range(6) for j in (1, 2)}
    identity = [b for b in snn.blocks if b.shortcut is None]
    lam_in = ["relu1"] + [f"blocks.{i}.relu2" for i in range(5)]
    assert len(identity) == 4 and all(b.identity_scale == pytest.approx(snn.scales[lam_in[i]]
                                                                        / snn.scales[f"blocks.{i}.relu2"])
                                      for i, b in enumerate(snn.blocks) if b.shortcut is None)
    gap = _rates_vs_ann(snn, ann, x, 400)
    assert gap < 0.01
    for b in identity:  # without shortcut normalisation the two summed paths are in different units
        b.identity_scale = 1.0
    assert _rates_vs_ann(snn, ann, x, 400) > 5 * gap


def test_readouts_and_bad_input():
    ann = _random_bn(C.ann_resnet(8, widths=(4, 4, 4), in_channels=1, num_classes=3))
    x = torch.rand(4, 1, 8, 8)
    snn = C.convert(ann, [(x, None)])
    snn.reset()
    for _ in range(7):
        snn.step(x)
    assert snn.readout == "count+softmax"  # the authors': count + softmax(membrane) over the classes
    assert torch.equal(snn.scores(), snn.count + torch.softmax(snn.sn_out.v, dim=1))
    snn.readout = "count+membrane"
    assert torch.equal(snn.scores(), snn.count + snn.sn_out.v)
    snn.readout = "count"
    assert torch.equal(snn.scores(), snn.count) and set(snn.count.unique().tolist()) <= set(range(8))
    with pytest.raises(TypeError, match="ANNResNet"):
        C.convert(nn.Sequential(nn.Conv2d(1, 1, 3)), [(x, None)])
    with pytest.raises(ValueError, match="count\\+membrane"):
        C.convert(ann, [(x, None)], readout="rate")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        C.ann_resnet(9)


@pytest.fixture(scope="module")
def digits_ann():
    """A small ANN ResNet trained for a few seconds on scikit-learn's real handwritten digits (seeded)."""
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    torch.manual_seed(0)
    ann = C.ann_resnet(8, widths=(8, 16, 32), in_channels=1, num_classes=10)
    g = torch.Generator().manual_seed(0)
    C.train_ann(ann, DataLoader(TensorDataset(x_tr, y_tr), batch_size=64, shuffle=True, generator=g), epochs=8,
                lr=3e-3)
    calibration = DataLoader(TensorDataset(x_tr, y_tr), batch_size=256)
    test = DataLoader(TensorDataset(x_te, y_te), batch_size=360)
    return ann, calibration, test


def test_sresnet_within_one_point_of_the_ann_on_digits(digits_ann):
    """Real data: 1437 train / 360 test digits, depth-8 ANN (widths 8/16/32), 8 epochs, percentile 99.9."""
    ann, calibration, test = digits_ann
    ann_acc = C.ann_accuracy(ann, test)
    assert ann_acc > 0.9
    acc = C.accuracy_vs_time(C.convert(ann, calibration, percentile=99.9), test, [8, 64])
    assert acc[64] >= ann_acc - 0.01, (ann_acc, acc)
    assert acc[8] < acc[64] + 1e-9  # short simulations lose accuracy to discretisation


def test_spikingjelly_converter_baseline_runs_on_this_line(digits_ann):
    ann, calibration, test = digits_ann
    sj_snn = C.spikingjelly_convert(ann, calibration, mode="99.9%")
    acc = C.accuracy_vs_time(C.AccumulatedOutput(sj_snn), test, [64])
    assert acc[64] > C.ann_accuracy(ann, test) - 0.05


def test_ann_training_goes_through_the_shared_loop(monkeypatch):
    """train_ann and ann_accuracy are sj_sew.training's loop; SpikingJelly versions are _compat's business."""
    from pathlib import Path

    from sj_sew.training import loop

    calls = []
    real = loop.train_one_epoch
    monkeypatch.setattr(loop, "train_one_epoch", lambda *a, **k: calls.append(k["epoch"]) or real(*a, **k))
    ann = C.ann_resnet(8, widths=(4, 4, 4), in_channels=1, num_classes=3)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    assert C.train_ann(ann, [(x, y)], epochs=2) is ann and not ann.training and calls == [0, 1]
    assert C.ann_accuracy(ann, [(x, y)]) == (ann(x).argmax(1) == y).float().mean().item()
    package = Path(C.__file__).parent
    assert all("SJ2" not in f.read_text() and "SJ_VERSION" not in f.read_text() for f in package.glob("*.py"))


def test_scale_is_the_authors_sorted_element_and_an_if_neuron_follows_pooling():
    """MATLAB: final = sort(all activations); lambda = final(floor(numel * .999)) (1-based), zeros included."""
    ann = _random_bn(C.ann_resnet(8, widths=(4, 4, 4), in_channels=1, num_classes=3))
    x = torch.rand(6, 1, 8, 8)
    seen = {}
    handle = ann.relu1.register_forward_hook(lambda m, i, o: seen.update(relu1=o.detach().flatten()))
    ann(x)
    handle.remove()
    values = torch.sort(seen["relu1"].double()).values
    k = int(values.numel() * 0.999)  # floor, 1-based
    scales = C.activation_scales(ann, [(x, None)], percentile=99.9)
    assert scales["relu1"] == pytest.approx(values[k - 1].item(), rel=1e-6)
    positive = C.activation_scales(ann, [(x, None)], percentile=99.9, method="positive")
    assert positive["relu1"] == pytest.approx(np.percentile(values[values > 0].numpy(), 99.9), rel=1e-6)
    with pytest.raises(ValueError, match="sorted"):
        C.activation_scales(ann, [(x, None)], method="median")
    snn = C.convert(ann, [(x, None)])
    assert isinstance(snn.sn_pool, C.SubtractiveIF)
    rates = []
    snn.fc.register_forward_hook(lambda m, i, o: rates.append(i[0]) and None)
    snn(x, T=5)
    assert all(set(r.unique().tolist()) <= {0.0, 1.0} for r in rates)  # the FC sees spikes, not pooled rates
    assert C.convert(ann, [(x, None)], pool_neuron=False).sn_pool is None
