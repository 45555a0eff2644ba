"""The data registry, random temporal delete and the emulated event sensor."""
import dataclasses

import numpy as np
import pytest
import torch

from sj_sew.data import build_dataset, dataset_info, list_datasets, time_first_collate
from sj_sew.data.embedded import EmbeddedEventSet, SensorConfig, emulate_events, frames_by_count
from sj_sew.data.split import per_class_split
from sj_sew.data.transforms import RandomTemporalDelete, integrate_by_count, random_temporal_delete


def test_random_temporal_delete_keeps_order_and_count():
    x = torch.arange(16.0).view(16, 1, 1).expand(16, 3, 2)  # slice t holds the value t
    seen = set()
    for _ in range(20):
        y = random_temporal_delete(x, 12, dim=0)
        kept = y[:, 0, 0].tolist()
        assert len(kept) == 12 and kept == sorted(kept) and len(set(kept)) == 12
        assert torch.equal(y, x[[int(t) for t in kept]])
        seen.add(tuple(kept))
    assert len(seen) > 1  # random, not a fixed choice
    batch_first = random_temporal_delete(x.transpose(0, 1), 5, dim=1)
    assert batch_first.shape == (3, 5, 2)
    assert batch_first[0, :, 0].tolist() == sorted(batch_first[0, :, 0].tolist())


def test_random_temporal_delete_is_identity_at_test():
    rtd = RandomTemporalDelete(3)
    x = torch.randn(8, 2, 4)
    assert rtd(x).shape[0] == 3
    rtd.eval()
    assert torch.equal(rtd(x), x)
    with pytest.raises(ValueError, match=r"T_train must be an int in \[1, 8\]"):
        random_temporal_delete(x, 9)


def test_sensor_polarity_on_brightening_and_darkening():
    """A bright square on the left half, dark right half: moving right, the square's leading (right) edge
    brightens pixels (ON, p=1) and its trailing (left) edge darkens them (OFF, p=0)."""
    img = np.zeros((1, 8, 8), dtype=np.float32)
    img[0, 2:6, 2:6] = 1.0
    cfg = SensorConfig(sensor_size=12, image_size=8, saccade_amplitude=2.0, steps_per_saccade=4,
                       contrast_sigma=0.0, noise_rate=0.0)
    streams = emulate_events(img, cfg)
    ev = streams.sample(0)
    assert ev["t"].size > 0 and np.all(np.diff(ev["t"]) >= 0)
    # first leg moves the image by (+dy, +dx/2): first-step ON events lie right/below of OFF events
    first = ev["t"] == ev["t"].min()
    on, off = first & (ev["p"] == 1), first & (ev["p"] == 0)
    assert on.any() and off.any()
    assert ev["x"][on].mean() > ev["x"][off].mean() and ev["y"][on].mean() > ev["y"][off].mean()
    # inside the square and far outside nothing changes: no events at the centre nor at the corners
    centre = (ev["x"] == 6) & (ev["y"] == 6)
    corner = (ev["x"] == 0) & (ev["y"] == 0)
    assert not centre.any() and not corner.any()


def test_sensor_emits_nothing_for_a_uniform_scene_and_is_deterministic():
    cfg = SensorConfig(sensor_size=10, image_size=8, noise_rate=0.0)
    assert emulate_events(np.zeros((2, 8, 8), dtype=np.float32), cfg).t.size == 0  # a dark image on a dark field
    rng = np.random.default_rng(1)
    imgs = rng.random((3, 8, 8)).astype(np.float32)
    a = emulate_events(imgs, SensorConfig(sensor_size=12, image_size=8, seed=3))
    b = emulate_events(imgs, SensorConfig(sensor_size=12, image_size=8, seed=3))
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("t", "x", "y", "p", "offsets"))


def _sj_integrate():
    try:
        from spikingjelly.datasets import integrate_events_by_fixed_frames_number
    except ImportError as e:  # 2.0 imports every data set module (torchaudio among them)
        pytest.skip(f"spikingjelly.datasets not importable here: {e}")
    return integrate_events_by_fixed_frames_number


@pytest.mark.parametrize("n_events,T", [(0, 4), (3, 4), (4, 4), (103, 4), (1000, 7)])
def test_frame_integration_equals_spikingjelly(n_events, T):
    sj = _sj_integrate()
    rng = np.random.default_rng(n_events)
    ev = {"t": np.sort(rng.integers(0, 10**6, n_events)), "x": rng.integers(0, 6, n_events),
          "y": rng.integers(0, 5, n_events), "p": rng.integers(0, 2, n_events)}
    if n_events == 0:  # SpikingJelly cannot take an empty stream; ours gives empty frames
        assert integrate_by_count(ev, T, 5, 6).sum() == 0
        return
    np.testing.assert_array_equal(integrate_by_count(ev, T, 5, 6), sj(ev, "number", T, 5, 6))


def test_embedded_set_frames_match_spikingjelly_and_event_counts():
    sj = _sj_integrate()
    train, test = EmbeddedEventSet(True, T=5), EmbeddedEventSet(False, T=5)
    assert len(train) + len(test) == 1797 and not set(train.indices) & set(test.indices)
    for ds in (train, test):
        for i in (0, len(ds) // 2, len(ds) - 1):
            frames, label = ds[i]
            ev = ds.events(i)
            assert frames.shape == (5, 2, 16, 16) and frames.dtype == torch.float32 and 0 <= label < 10
            assert frames.sum() == ev["t"].size > 100  # every event in exactly one frame
            assert frames[:, 1].sum() == (ev["p"] == 1).sum()
            np.testing.assert_array_equal(frames.numpy(), sj(ev, "number", 5, 16, 16))
    assert EmbeddedEventSet(True, T=5).frames is train.frames  # built once, cached


def test_frames_by_count_for_many_streams_equals_one_by_one():
    rng = np.random.default_rng(0)
    imgs = rng.random((5, 8, 8)).astype(np.float32)
    streams = emulate_events(imgs, SensorConfig(sensor_size=12, image_size=8))
    frames = frames_by_count(streams, 4, 12, chunk=2)
    for i in range(5):
        np.testing.assert_array_equal(frames[i], integrate_by_count(streams.sample(i), 4, 12, 12))


def test_per_class_split_is_fixed_and_balanced():
    labels = np.repeat(np.arange(3), [10, 20, 8])
    tr, te = per_class_split(labels, 0.75, rounding="round", seed=0)
    tr2, te2 = per_class_split(labels, 0.75, rounding="round", seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert sorted(np.concatenate([tr, te])) == list(range(38))
    assert [int((labels[tr] == c).sum()) for c in range(3)] == [8, 15, 6]


def test_registry_and_time_first_batches():
    assert {"events", "digits", "fashion_mnist", "cifar10", "imagenet", "dvs128_gesture", "cifar10_dvs"} <= set(list_datasets())
    info = dataset_info("events")
    assert (info.in_channels, info.num_classes, info.input_size, info.sequence) == (2, 10, 16, True)
    ds = build_dataset("events", train=False, T=4)
    x, y = time_first_collate([ds[0], ds[1], ds[2]])
    assert x.shape == (4, 3, 2, 16, 16) and y.shape == (3,)
    torch.testing.assert_close(x[:, 1], ds[1][0])
    digits = build_dataset("digits", train=True)
    x, y = time_first_collate([digits[0], digits[1]])
    assert x.shape == (2, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(ValueError, match="unknown data set 'mnist'; valid: .*events"):
        build_dataset("mnist", train=True)
    with pytest.raises(ValueError, match="needs root"):
        build_dataset("imagenet", train=True)


def test_idx_reader_round_trip_and_wrong_kind(tmp_path):
    import gzip

    from sj_sew.data.idx import read_idx_images, read_idx_labels

    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = b"".join(v.to_bytes(4, "big") for v in (0x803, 2, 3, 4))
    with gzip.open(tmp_path / "images.gz", "wb") as f:
        f.write(header + images.tobytes())
    with gzip.open(tmp_path / "labels.gz", "wb") as f:
        f.write((0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([7, 9]))
    assert np.array_equal(read_idx_images(tmp_path / "images.gz"), images)
    labels = read_idx_labels(tmp_path / "labels.gz")
    assert labels.dtype == np.int64 and labels.tolist() == [7, 9]
    with pytest.raises(ValueError, match="not an IDX label file"):
        read_idx_labels(tmp_path / "images.gz")
    with pytest.raises(ValueError, match="not an IDX image file"):
        read_idx_images(tmp_path / "labels.gz")


def test_fashion_mnist_static_and_events():
    from sj_sew.data.idx import FASHION_MNIST_DIR

    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    test = build_dataset("fashion_mnist", train=False)
    x, y = test[0]
    assert len(test) == 10000 and x.shape == (1, 28, 28) and y == 9  # the first test image is an ankle boot
    ev = build_dataset("events", train=False, T=4, source="fashion_mnist", per_class=12)
    frames, _ = ev[0]
    assert len(ev) == 30 and frames.shape == (4, 2, 34, 34) and frames.sum() == ev.events(0)["t"].size
    # the registered data set is this sensor over Fashion-MNIST, with its 34x34 size in the data set's info
    fe = build_dataset("fashion_events", train=False, T=4, per_class=12)
    assert torch.equal(fe[0][0], frames) and [fe[i][1] for i in range(30)] == [ev[i][1] for i in range(30)]
    assert dataset_info("fashion_events") == dataclasses.replace(dataset_info("events"), input_size=34)
    with pytest.raises(TypeError, match="takes no option \\['source'\\]"):
        build_dataset("fashion_events", train=False, source="digits")


def test_cifar10_never_downloads_and_names_the_files(tmp_path, monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        build_dataset("cifar10", train=True, root=tmp_path)
