"""DVS128 Gesture and CIFAR10-DVS through SpikingJelly's own loaders, on tiny files in the exact raw formats."""
import contextlib
import pickle
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import dvs_files
from dvs_files import frames_of, sample_key, write_cifar10_dvs, write_gesture
from sj_sew._compat import SJ2
from sj_sew.data import dvs

pytestmark = pytest.mark.usefixtures("one_preprocessing_thread")

T = 4


class NetworkGuard:
    """Records every download or connection attempt; the test fails on one unless ``expected`` is set."""

    def __init__(self):
        self.attempts, self.expected = [], False

    def refuse(self, what):
        self.attempts.append(str(what))
        raise RuntimeError(f"test forbids network access: {what}")


@pytest.fixture(autouse=True)
def network(monkeypatch):
    import torchvision.datasets.utils as tv_utils

    guard = NetworkGuard()
    refuse_download = lambda url, *args, **kwargs: guard.refuse(url)  # noqa: E731
    monkeypatch.setattr(tv_utils, "download_url", refuse_download)
    try:
        import spikingjelly.datasets.base as sj_base  # 2.x imports the function by name
        monkeypatch.setattr(sj_base, "download_url", refuse_download)
    except ImportError:
        pass
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: guard.refuse(address))
    yield guard
    assert guard.expected or not guard.attempts, f"network was tried: {guard.attempts}"


def check_samples(ds, expected: dict):
    """Every sample's frames equal the independent integration of its events, and its label is right."""
    assert sorted(sample_key(path) for path, _ in ds.samples) == sorted(expected)
    for index, (path, _) in enumerate(ds.samples):
        frames, label = ds[index]
        want = expected[sample_key(path)]
        assert isinstance(label, int) and label == want.label
        assert frames.dtype == torch.float32 and frames.shape == (T, 2, 128, 128)
        assert frames.sum().item() == len(want.x)  # every event of the window lands in exactly one frame
        assert np.array_equal(frames.numpy(), frames_of(want, T))


# ----------------------------------------------------------------------------------- loading and labels


def test_gesture_frames_and_labels(tmp_path):
    raw = write_gesture(tmp_path, dvs_files.every_class_trials(train_trials=2, test_trials=1))
    train = dvs.dvs128_gesture(tmp_path, train=True, T=T)
    test = dvs.dvs128_gesture(tmp_path, train=False, T=T)
    assert len(train) == 24 and len(test) == 12
    check_samples(train, raw.samples["train"])
    check_samples(test, raw.samples["test"])
    assert sorted(set(train.targets)) == list(range(11)) and train.classes == [str(k) for k in range(11)]


def test_gesture_labels_undo_spikingjellys_string_order(tmp_path):
    write_gesture(tmp_path, dvs_files.every_class_trials())
    ours = dvs.dvs128_gesture(tmp_path, train=True, T=T)
    from spikingjelly.datasets.dvs128_gesture import DVS128Gesture

    theirs = DVS128Gesture(str(tmp_path), train=True, data_type="frame", frames_number=T, split_by="number")
    assert theirs.classes == sorted(str(k) for k in range(11))  # '0', '1', '10', '2', ...
    by_path = {Path(p).resolve(): label for p, label in ours.samples}
    for path, target in theirs.samples:
        assert by_path[Path(path).resolve()] == int(Path(path).parent.name) == int(theirs.classes[target])
    assert any(int(theirs.classes[t]) != t for _, t in theirs.samples)  # the two orders do differ


def test_gesture_from_archive(tmp_path):
    raw = write_gesture(tmp_path, dvs_files.every_class_trials(), as_archive=True)
    test = dvs.dvs128_gesture(tmp_path, train=False, T=T)
    check_samples(test, raw.samples["test"])
    assert (tmp_path / "extract" / "DvsGesture" / "trials_to_test.txt").is_file()
    assert (tmp_path / "download" / "DvsGesture.tar.gz").is_file()  # kept although its MD5 is not IBM's


def test_gesture_split_by_time(tmp_path):
    raw = write_gesture(tmp_path, dvs_files.every_class_trials(), events_per_window=(30, 40))
    train = dvs.dvs128_gesture(tmp_path, train=True, T=T, split_by="time")
    assert (tmp_path / "frames_number_4_split_by_time").is_dir()
    for index, (path, _) in enumerate(train.samples):
        frames, label = train[index]
        want = raw.samples["train"][sample_key(path)]
        assert label == want.label and frames.sum().item() == len(want.x)
        assert np.array_equal(frames.sum(0).numpy(), frames_of(want, 1)[0])  # same events, split in time


def test_cifar10_dvs_frames_labels_and_split(tmp_path):
    raw = write_cifar10_dvs(tmp_path, per_class=10)
    train = dvs.cifar10_dvs(tmp_path, train=True, T=T)
    test = dvs.cifar10_dvs(tmp_path, train=False, T=T)
    everything = raw.samples["all"]
    check_samples(train, {sample_key(p): everything[sample_key(p)] for p, _ in train.samples})
    check_samples(test, {sample_key(p): everything[sample_key(p)] for p, _ in test.samples})
    train_keys = {sample_key(p) for p, _ in train.samples}
    test_keys = {sample_key(p) for p, _ in test.samples}
    assert not train_keys & test_keys and train_keys | test_keys == set(everything)
    assert np.bincount(train.targets).tolist() == [9] * 10 and np.bincount(test.targets).tolist() == [1] * 10
    assert train.classes == list(dvs_files.CIFAR10_DVS_CLASSES)
    again = dvs.cifar10_dvs(tmp_path, train=False, T=T)
    assert again.samples == test.samples  # deterministic
    other_seed = dvs.cifar10_dvs(tmp_path, train=False, T=T, split_seed=1)
    assert {sample_key(p) for p, _ in other_seed.samples} != test_keys


def test_cifar10_dvs_unseeded_split_is_spikingjellys(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=11)
    from spikingjelly.datasets import split_to_train_test_set
    from spikingjelly.datasets.cifar10_dvs import CIFAR10DVS

    ours = {train: dvs.cifar10_dvs(tmp_path, train=train, T=T, split_seed=None) for train in (True, False)}
    full = CIFAR10DVS(str(tmp_path), data_type="frame", frames_number=T, split_by="number")
    theirs = dict(zip((True, False), split_to_train_test_set(0.9, full, 10)))
    for train in (True, False):
        assert [p for p, _ in ours[train].samples] == [full.samples[i][0] for i in theirs[train].indices]
    assert len(ours[True]) == 100 and len(ours[False]) == 10  # ceil(0.9 * 11) = 10 per class


def test_split_indices_are_a_partition():
    sizes = (10, 20, 31)
    targets = np.repeat(np.arange(3), sizes)[np.random.default_rng(0).permutation(sum(sizes))].tolist()
    for seed in (None, 0, 5):
        train = dvs.cifar10_dvs_split_indices(targets, True, seed)
        test = dvs.cifar10_dvs_split_indices(targets, False, seed)
        assert sorted(train + test) == list(range(len(targets))) and not set(train) & set(test)
        assert np.bincount(np.asarray(targets)[train]).tolist() == [9, 18, 28]  # ceil(0.9 n) per class
        assert train == dvs.cifar10_dvs_split_indices(targets, True, seed)
    first_of_each_class = [j for k, n in enumerate((9, 18, 28)) for j in np.flatnonzero(np.equal(targets, k))[:n]]
    assert dvs.cifar10_dvs_split_indices(targets, True, None) == sorted(first_of_each_class)
    assert dvs.cifar10_dvs_split_indices(targets, True, 0) != dvs.cifar10_dvs_split_indices(targets, True, 1)


def test_cifar10_dvs_from_archives(tmp_path):
    raw = write_cifar10_dvs(tmp_path, per_class=1, as_archives=True)
    ds = dvs.cifar10_dvs(tmp_path, train=True, T=T)
    check_samples(ds, raw.samples["all"])


def test_dataset_pickles(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=1)
    ds = dvs.cifar10_dvs(tmp_path, train=True, T=T)
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[3][0], ds[3][0]) and copy[3][1] == ds[3][1]


# ------------------------------------------------------------------------------------ missing / corrupt


@pytest.mark.parametrize("allow_download", [False, True])  # no public download: the same message either way
def test_missing_gesture_files_say_what_to_put_where(tmp_path, allow_download):
    with pytest.raises(dvs.MissingDatasetFiles) as info:
        dvs.dvs128_gesture(tmp_path, train=True, T=T, allow_download=allow_download)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for part in (str(tmp_path / "download" / "DvsGesture.tar.gz"), str(tmp_path / "extract" / "DvsGesture"),
                 "trials_to_train.txt", "trials_to_test.txt", "_labels.csv", ".aedat"):
        assert part in message


def test_missing_trial_file_is_named(tmp_path):
    raw = write_gesture(tmp_path, dvs_files.every_class_trials())
    gone = next(p for p in raw.files if p.name == "user24_fluorescent_labels.csv")
    gone.unlink()
    with pytest.raises(dvs.MissingDatasetFiles, match="user24_fluorescent_labels.csv"):
        dvs.dvs128_gesture(tmp_path, train=True, T=T)


def test_missing_cifar10_dvs_files_say_what_to_put_where(tmp_path):
    with pytest.raises(dvs.MissingDatasetFiles) as info:
        dvs.cifar10_dvs(tmp_path, train=True, T=T)
    message = str(info.value)
    for part in (str(tmp_path / "download"), "airplane.zip", "truck.zip", "cifar10_<class>_<i>.aedat",
                 str(tmp_path / "extract"), "allow_download=True"):
        assert part in message
    write_cifar10_dvs(tmp_path, per_class=1)
    shutil.rmtree(tmp_path / "extract" / "frog")
    with pytest.raises(dvs.MissingDatasetFiles, match="frog"):
        dvs.cifar10_dvs(tmp_path, train=True, T=T)


@pytest.mark.parametrize("damage", ["truncate", "no_header_end", "bad_csv", "csv_without_header", "one_row_csv"])
def test_corrupt_gesture_file_is_named(tmp_path, damage):
    write_gesture(tmp_path, dvs_files.every_class_trials())
    folder = tmp_path / "extract" / "DvsGesture"
    aedat, csv = folder / "user01_fluorescent.aedat", folder / "user01_fluorescent_labels.csv"
    if damage == "truncate":
        aedat.write_bytes(aedat.read_bytes()[:-5])
    elif damage == "no_header_end":
        aedat.write_bytes(aedat.read_bytes().replace(b"#!END-HEADER\r\n", b"#"))
    elif damage == "bad_csv":
        csv.write_text("class,startTime_usec,endTime_usec\n1,2\nthree,4,5\n")
    elif damage == "one_row_csv":  # SpikingJelly's reader indexes a lone row as a scalar and fails
        csv.write_text("\n".join(csv.read_text().splitlines()[:2]) + "\n")
    else:
        csv.write_text("\n".join(csv.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(dvs.CorruptDatasetFiles) as info:
        dvs.dvs128_gesture(tmp_path, train=False, T=T)
    assert isinstance(info.value, ValueError)
    assert str(aedat if damage in ("truncate", "no_header_end") else csv) in str(info.value)
    assert not (tmp_path / "events_np").exists()


def test_corrupt_cifar10_dvs_file_is_named(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=1)
    bad = tmp_path / "extract" / "deer" / "cifar10_deer_0.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(dvs.CorruptDatasetFiles, match=str(bad)):
        dvs.cifar10_dvs(tmp_path, train=True, T=T)


def test_corrupt_archive_is_named(tmp_path):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "DvsGesture.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(dvs.CorruptDatasetFiles, match="DvsGesture.tar.gz"):
        dvs.dvs128_gesture(tmp_path, train=True, T=T)
    assert (tmp_path / "download" / "DvsGesture.tar.gz").exists()  # the user's file is left alone


def test_missing_class_in_test_trials(tmp_path):
    plan = dvs_files.every_class_trials()
    plan["test"]["user24_fluorescent"].remove(5)
    write_gesture(tmp_path, plan)
    with pytest.raises(dvs.CorruptDatasetFiles, match=r"\[5\] \(test\)"):
        dvs.dvs128_gesture(tmp_path, train=True, T=T)


def test_empty_time_window_gives_clear_message_and_no_leftover(tmp_path):
    write_cifar10_dvs(tmp_path, per_class=1)
    stuck = tmp_path / "extract" / "cat" / "cifar10_cat_0.aedat"  # every event at one instant: no time to split
    stuck.write_bytes(dvs_files.cifar10_dvs_aedat_bytes([7] * 5, [1, 2, 3, 4, 5], [9] * 5, [0] * 5))
    with pytest.raises(dvs.CorruptDatasetFiles, match="cifar10_cat_0") as info:
        dvs.cifar10_dvs(tmp_path, train=True, T=T, split_by="time")
    assert "split_by='number'" in str(info.value)
    assert not (tmp_path / "frames_number_4_split_by_time").exists()
    assert len(dvs.cifar10_dvs(tmp_path, train=True, T=T, split_by="number")) == 10


@pytest.mark.parametrize("bad", [dict(T=0), dict(T=2.0), dict(split_by="count"), dict(train=None)])
def test_bad_arguments(tmp_path, bad):
    args = dict(train=True, T=T, split_by="number") | bad
    with pytest.raises((ValueError, TypeError), match="|".join(bad)):
        dvs.dvs128_gesture(tmp_path, **args)


def fail_on_one_cifar10_dvs_file(monkeypatch, victim: str):
    """Make SpikingJelly's own CIFAR10-DVS reader raise inside its worker threads for one file."""
    import spikingjelly.datasets.cifar10_dvs as sj_cifar

    name = "_load_origin_data" if hasattr(sj_cifar, "_load_origin_data") else "load_origin_data"
    owner = sj_cifar if name == "_load_origin_data" else sj_cifar.CIFAR10DVS
    original = getattr(owner, name)

    def reader(file_name):
        if Path(file_name).stem == victim:
            raise OSError("simulated read failure")
        return original(file_name)

    monkeypatch.setattr(owner, name, reader if owner is sj_cifar else staticmethod(reader))


def test_failures_inside_spikingjellys_threads_are_reported(tmp_path, monkeypatch):
    """0.0.0.0.14 never looks at its worker threads' results, so a failing sample just goes missing;
    2.x re-raises the first failure. Either way: one clear error naming it, and no cache left behind."""
    write_cifar10_dvs(tmp_path, per_class=1)
    fail_on_one_cifar10_dvs_file(monkeypatch, "cifar10_bird_0")
    with pytest.raises(dvs.CorruptDatasetFiles, match="bird/cifar10_bird_0.npz"):
        dvs.cifar10_dvs(tmp_path, train=True, T=T)
    assert not (tmp_path / "events_np").exists() and not (tmp_path / "frames_number_4_split_by_number").exists()
    monkeypatch.undo()
    assert len(dvs.cifar10_dvs(tmp_path, train=True, T=T)) == 10


@pytest.mark.skipif(SJ2, reason="SpikingJelly 0.0.0.0.14 only")
def test_sj014_cifar10_dvs_reader_needs_the_numpy2_fix(tmp_path, monkeypatch):
    """Without the fix, NumPy >= 2.3 breaks 0.0.0.0.14's reader for every file (np.fromstring is gone)."""
    try:
        np.fromstring(b"\0\0\0\0", dtype=">u4")
        pytest.skip("this NumPy still has binary np.fromstring")
    except ValueError:
        pass
    write_cifar10_dvs(tmp_path, per_class=1)
    monkeypatch.setattr(dvs, "numpy2_fromstring_fix", lambda module: contextlib.nullcontext())
    with pytest.raises(dvs.CorruptDatasetFiles, match="10 sample"):
        dvs.cifar10_dvs(tmp_path, train=True, T=T)
    monkeypatch.undo()
    assert len(dvs.cifar10_dvs(tmp_path, train=True, T=T)) == 10


# ------------------------------------------------------------------------------------ leftovers


def test_next_run_works_after_spikingjellys_own_failed_run(tmp_path):
    from spikingjelly.datasets.dvs128_gesture import DVS128Gesture

    def spikingjelly_alone():
        DVS128Gesture(str(tmp_path), train=True, data_type="frame", frames_number=T, split_by="number")

    with pytest.raises(NotImplementedError):  # no raw files: SpikingJelly gives up, leaving traces behind
        spikingjelly_alone()
    raw = write_gesture(tmp_path, dvs_files.every_class_trials())
    if SJ2:  # 2.x left 'events_np.building' and now refuses to run at all
        with pytest.raises(RuntimeError, match="events_np.building"):
            spikingjelly_alone()
    check_samples(dvs.dvs128_gesture(tmp_path, train=True, T=T), raw.samples["train"])
    assert not list(tmp_path.glob("*.building"))


def test_next_run_works_after_our_failed_run(tmp_path):
    write_gesture(tmp_path, dvs_files.every_class_trials())
    aedat = tmp_path / "extract" / "DvsGesture" / "user24_fluorescent.aedat"
    good = aedat.read_bytes()
    aedat.write_bytes(good[: len(good) // 2])
    with pytest.raises(dvs.CorruptDatasetFiles):
        dvs.dvs128_gesture(tmp_path, train=True, T=T)
    aedat.write_bytes(good)
    assert len(dvs.dvs128_gesture(tmp_path, train=False, T=T)) == 12


def test_unfinished_2x_build_markers_are_cleared(tmp_path):
    raw = write_gesture(tmp_path, dvs_files.every_class_trials())
    dvs.dvs128_gesture(tmp_path, train=True, T=T)
    frames_dir = tmp_path / "frames_number_4_split_by_number"
    for path in list(frames_dir.rglob("*.npz"))[::2]:
        path.unlink()
    (tmp_path / "frames_number_4_split_by_number.building").touch()
    with pytest.warns(UserWarning, match="did not finish"):
        ds = dvs.dvs128_gesture(tmp_path, train=True, T=T)
    check_samples(ds, raw.samples["train"])
    (tmp_path / "events_np.building").touch()  # an unfinished events_np voids every frames folder too
    with pytest.warns(UserWarning, match="did not finish"):
        check_samples(dvs.dvs128_gesture(tmp_path, train=False, T=T), raw.samples["test"])


def test_half_built_caches_without_markers_are_rebuilt(tmp_path):
    """0.0.0.0.14 leaves no marker: a half-filled events_np or frames folder is found by its content."""
    raw = write_cifar10_dvs(tmp_path, per_class=2)
    dvs.cifar10_dvs(tmp_path, train=True, T=T)

    def forget_and_damage(path, content=None):
        for stamp in tmp_path.glob("*.sj_sew.json"):
            stamp.unlink()
        path.write_bytes(content) if content is not None else path.unlink()

    forget_and_damage(tmp_path / "frames_number_4_split_by_number" / "dog" / "cifar10_dog_1.npz", b"PK\x03\x04 cut")
    check_samples(dvs.cifar10_dvs(tmp_path, train=True, T=T), raw.samples["all"])
    forget_and_damage(tmp_path / "events_np" / "ship" / "cifar10_ship_0.npz")
    check_samples(dvs.cifar10_dvs(tmp_path, train=True, T=T), raw.samples["all"])


def test_recorded_cache_needs_no_raw_files(tmp_path):
    raw = write_cifar10_dvs(tmp_path, per_class=1)
    dvs.cifar10_dvs(tmp_path, train=True, T=T)
    shutil.rmtree(tmp_path / "extract")
    check_samples(dvs.cifar10_dvs(tmp_path, train=True, T=T), raw.samples["all"])
    frames, _ = dvs.cifar10_dvs(tmp_path, train=True, T=1)[0]  # new frames from the recorded events
    first = raw.samples["all"]["airplane/cifar10_airplane_0"]
    assert frames.shape == (1, 2, 128, 128) and np.array_equal(frames.numpy(), frames_of(first, 1))
    for stamp in tmp_path.glob("*.sj_sew.json"):  # built elsewhere: adopted, with a warning
        stamp.unlink()
    with pytest.warns(UserWarning, match="cannot be checked"):
        check_samples(dvs.cifar10_dvs(tmp_path, train=True, T=T), raw.samples["all"])


# ------------------------------------------------------------------------------------ network


def test_download_only_when_allowed(tmp_path, network):
    with pytest.raises(dvs.MissingDatasetFiles):
        dvs.cifar10_dvs(tmp_path, train=True, T=T)
    assert network.attempts == []
    network.expected = True
    root = tmp_path / "allowed"
    with pytest.raises(dvs.DatasetFilesError):  # the (refused) download fails: reported, nothing left behind
        dvs.cifar10_dvs(root, train=True, T=T, allow_download=True)
    assert network.attempts and "figshare" in network.attempts[0]
    assert not list(root.glob("*.building")) and not (root / "events_np").exists()


def test_extracted_files_alone_never_reach_for_the_network(tmp_path, network):
    """With only extract/ present SpikingJelly itself would download CIFAR10-DVS and MD5-check download/."""
    write_cifar10_dvs(tmp_path, per_class=1)
    dvs.cifar10_dvs(tmp_path, train=True, T=T)
    (tmp_path / "download" / "stray.zip").write_bytes(b"x")  # a later run with a download/ folder
    dvs.cifar10_dvs(tmp_path, train=False, T=2)
    assert network.attempts == [] and (tmp_path / "download" / "stray.zip").exists()


def test_our_aedat_check_reads_what_spikingjelly_reads(tmp_path):
    from spikingjelly.datasets import load_aedat_v3

    rng = np.random.default_rng(1)
    n = 500
    t = np.sort(rng.integers(0, 10**6, n))
    x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    path = tmp_path / "rec.aedat"
    path.write_bytes(dvs_files.gesture_aedat_bytes(t, x, y, p, packet_events=64))
    ours, theirs = dvs.read_gesture_aedat(path), load_aedat_v3(str(path))
    for key, want in zip("txyp", (t, x, y, p)):
        assert np.array_equal(ours[key], want) and np.array_equal(np.asarray(theirs[key]), want)
