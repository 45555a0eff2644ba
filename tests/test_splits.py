"""One per-class split (sj_sew.data.split.per_class_split) behind every caller, each caller's split unchanged:
the index lists below were recorded from the code before the callers shared it (sha256 of the int64 indices,
first 16 hex digits, and their count)."""
import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from sj_sew.data import build_dataset
from sj_sew.data.dvs import cifar10_dvs_split_indices
from sj_sew.data.idx import FASHION_MNIST_DIR
from sj_sew.data.split import per_class_split, validation_split


def digest(indices) -> tuple[int, str]:
    indices = np.asarray(indices, dtype=np.int64)
    return len(indices), hashlib.sha256(indices.tobytes()).hexdigest()[:16]


def test_quickstart_data_and_validation_split_unchanged():
    """The README's main job: the events set's per-class train/test split of the digits and the run's
    validation split carved from it."""
    from sklearn.datasets import load_digits

    train, test = per_class_split(load_digits().target, 0.75, rounding="round", seed=0)
    assert (digest(train), digest(test)) == ((1347, "6e6065ea12f40381"), (450, "be19ee425b1abd69"))
    kept, val = validation_split(build_dataset("events", True, T=4), 0.1)
    assert (digest(kept.indices), digest(val.indices)) == ((1211, "ec1d86e4810bce60"), (136, "ca3869e26331d1e6"))
    assert all(type(i) is int for i in val.indices[:3])


def test_digits_data_set_uses_the_same_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    train, test = build_dataset("digits", True), build_dataset("digits", False)
    want_train, want_test = per_class_split(d.target, 0.75, rounding="round", seed=0)
    assert digest(want_train) == (1347, "6e6065ea12f40381")
    expected = torch.from_numpy(d.images[want_train].astype(np.float32) / 16.0).unsqueeze(1)
    assert torch.equal(train.tensors[0], expected) and len(test) == 450


@pytest.mark.parametrize("fraction, train, val", [
    (0.1, (53, "481157780f072c83"), (8, "9709d27747050d19")),
    (0.25, (45, "186df967a2e0a146"), (16, "7b2b073d19126df6")),
    (0.5, (30, "b4a8208039c946c9"), (31, "66e5f03f738feec8")),
])
def test_validation_split_of_small_classes_unchanged(fraction, train, val):
    labels = np.repeat(np.arange(5), [1, 2, 3, 15, 40])  # a class of 1 and of 2: the keep-both rule
    kept, held = validation_split(TensorDataset(torch.zeros(len(labels), 1), torch.from_numpy(labels)), fraction)
    assert (digest(kept.indices), digest(held.indices)) == (train, val)
    assert 0 not in labels[held.indices] and 1 in labels[held.indices]


CIFAR10_DVS_TARGETS = np.repeat(np.arange(10), [1000, 999, 7, 3, 1, 2, 11, 5, 998, 10])


@pytest.mark.parametrize("seed, train, test", [
    (0, "91064923f7a84c09", "e1e79d8bf08c5701"),
    (1, "512b3c7889b091c3", "7ad9fc6b5957d642"),
    (None, "990104178e4e7d50", "552c405fcb51c851"),
])
def test_cifar10_dvs_split_unchanged(seed, train, test):
    targets = CIFAR10_DVS_TARGETS.tolist()
    assert digest(cifar10_dvs_split_indices(targets, True, seed)) == (2736, train)
    assert digest(cifar10_dvs_split_indices(targets, False, seed)) == (300, test)


def test_cifar10_dvs_split_of_shuffled_targets_unchanged():
    targets = np.random.default_rng(1).permutation(CIFAR10_DVS_TARGETS).tolist()
    assert digest(cifar10_dvs_split_indices(targets, True, 0)) == (2736, "25e0b1d0cd8dcdcc")
    assert digest(cifar10_dvs_split_indices(targets, True, None)) == (2736, "5508dd53d86d75a6")


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("per_class, train, test", [
    (12, (90, "8ff54640a7b55a91"), (30, "6bc68463a0b11a06")),
    (200, (1500, "1dff8bdc6a253b7c"), (500, "6580ec1c128116e8")),  # the g ablation's data
    (300, (2250, "7f9560090fd122c0"), (750, "51e4a5149f370b54")),  # the degradation study's data
    (700, (5250, "e7606a12d3289927"), (1750, "57bee7ff17fb5e20")),
])
def test_fashion_events_split_unchanged(per_class, train, test):
    from sj_sew.data.idx import fashion_mnist_arrays

    _, labels = fashion_mnist_arrays(None)
    got = per_class_split(labels, 0.75, rounding="round", seed=0, per_class=per_class)
    assert (digest(got[0]), digest(got[1])) == (train, test)


def test_roundings_differ_where_they_should():
    labels = np.repeat([0, 1], [5, 5])  # 0.9 * 5 = 4.5: round (half to even) 4, ceil 5
    assert len(per_class_split(labels, 0.9, rounding="round", seed=0)[0]) == 8
    assert len(per_class_split(labels, 0.9, rounding="ceil", seed=None)[0]) == 10
    assert len(per_class_split(labels, 0.9, rounding="round", seed=0, keep_both=True)[0]) == 8
    assert len(per_class_split(labels, 0.99, rounding="ceil", seed=0, keep_both=True)[1]) == 2
    with pytest.raises(ValueError, match="rounding"):
        per_class_split(labels, 0.5, rounding="floor")
