"""DVS128 Gesture and CIFAR10-DVS as ``[T, 2, 128, 128]`` float32 frames, built by SpikingJelly's own loaders.

    from sj_sew.data import dvs
    train = dvs.dvs128_gesture("~/data/DVS128Gesture", train=True, T=16)
    frames, label = train[0]          # frames: torch.float32 [16, 2, 128, 128], label: int

What this module adds around ``spikingjelly.datasets.{dvs128_gesture.DVS128Gesture, cifar10_dvs.CIFAR10DVS}``
(both SpikingJelly lines, 0.0.0.0.14 and 2.x):

* **No network** unless ``allow_download=True``: the raw files are found and checked here first, and SpikingJelly
  is handed a copy of its class whose download list is empty (it would otherwise fetch CIFAR10-DVS, and delete
  any file in ``download/`` whose MD5 differs).
* **One clear error** (:class:`MissingDatasetFiles` / :class:`CorruptDatasetFiles`, both :class:`DatasetFilesError`)
  naming the files to put where, instead of SpikingJelly's ``NotImplementedError``, silent thread failures
  (0.0.0.0.14 never reads its worker results) or an empty-class error from torchvision.
* **No poisoned cache**: unfinished builds (2.x ``*.building`` markers, 0.0.0.0.14 half-filled folders) are found by
  comparing each cache folder with the sample list the raw files imply, and removed, so the next run rebuilds.
  A finished cache is recorded in ``<root>/<cache>.sj_sew.json``; later runs trust it without the raw files.

Items are ``[T, 2, H, W]``, so a default DataLoader batch is ``[N, T, ...]``; ``sj_sew.data.time_first_collate``
gives SpikingJelly's ``[T, N, ...]``. Build one data set per root at a time (the cache is not locked between
processes).

Labels: DVS128 Gesture gives ``class - 1`` of its label csv (0..10), undoing the string order
('0', '1', '10', '2', ...) that SpikingJelly's class folders get; CIFAR10-DVS gives the CIFAR-10 class index.
CIFAR10-DVS has no official split: 90 % of each class trains, 10 % tests (the SEW paper's 9000/1000).
"""
from __future__ import annotations

import importlib
import json
import shutil
import struct
import tarfile
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._compat import numpy2_fromstring_fix
from .split import per_class_split
from ..progress import progress_bar

SPLIT_BY_CHOICES = ("number", "time")
SENSOR_SIZE = (128, 128)
GESTURE_NUM_CLASSES = 11
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_DVS_TRAIN_FRACTION = 0.9

_STAMP_SUFFIX = ".sj_sew.json"
_BUILDING_SUFFIX = ".building"  # SpikingJelly 2.x marks a folder being built with '<folder>.building'
_EXTRACT_IN_PROGRESS = "extract.sj_sew_partial"
_MAX_LISTED = 12


class DatasetFilesError(Exception):
    """The raw files of a data set are missing or unreadable; the message says which files to put where."""


class MissingDatasetFiles(DatasetFilesError, FileNotFoundError):
    """Raw files are absent."""


class CorruptDatasetFiles(DatasetFilesError, ValueError):
    """Raw files are present but not in the format SpikingJelly reads (or SpikingJelly failed on them)."""


# ----------------------------------------------------------------------------------------------- public API


class DVSFrames(Dataset):
    """``(frames, label)`` pairs: frames are float32 ``[T, 2, 128, 128]`` tensors read by SpikingJelly's loader.

    ``samples`` are ``(frames_file, label)`` pairs, ``classes[label]`` names a label. Holds no SpikingJelly object,
    so it pickles into DataLoader workers under any start method.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], loader: Callable, classes: Sequence[str]):
        self.samples = list(samples)
        self.loader = loader
        self.classes = list(classes)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        frames = torch.from_numpy(np.ascontiguousarray(self.loader(path), dtype=np.float32))
        return frames, label


def dvs128_gesture(root, train: bool, T: int, split_by: str = "number", allow_download: bool = False) -> DVSFrames:
    """DVS128 Gesture (IBM's 1176 train / 288 test windows as SpikingJelly cuts them) as ``T`` frames per sample.

    ``root`` holds ``download/DvsGesture.tar.gz`` or ``extract/DvsGesture/`` (see :class:`MissingDatasetFiles`
    messages); labels are the csv class minus one. The data set has no public download, so ``allow_download``
    changes nothing here; it is accepted for a uniform interface.
    """
    _check_args(train=train, T=T, split_by=split_by)
    return _load(_GESTURE, root, train, T, split_by, allow_download)


def cifar10_dvs(root, train: bool, T: int, split_by: str = "number", allow_download: bool = False,
                split_seed: Optional[int] = 0) -> DVSFrames:
    """CIFAR10-DVS as ``T`` frames per sample, 90 % of every class for training and the rest for testing.

    ``split_seed`` (an int) shuffles each class's samples with a generator seeded by ``(split_seed, class)``
    before the cut, so the split is deterministic and independent of how many samples other classes have.
    ``split_seed=None`` keeps SpikingJelly's sample order (file names sorted as strings) and cuts there: exactly
    ``spikingjelly.datasets.split_to_train_test_set(0.9, dataset, 10)``, as the SEW authors' scripts use it.
    ``allow_download=True`` lets SpikingJelly fetch the ten class zips from figshare when no raw files are found.
    """
    _check_args(train=train, T=T, split_by=split_by)
    if split_seed is not None and (isinstance(split_seed, bool) or not isinstance(split_seed, int)):
        raise TypeError(f"split_seed must be an int or None, got {split_seed!r}")
    full = _load(_CIFAR10_DVS, root, None, T, split_by, allow_download)
    keep = cifar10_dvs_split_indices(full.targets, train, split_seed)
    return DVSFrames([full.samples[i] for i in keep], full.loader, full.classes)


def cifar10_dvs_split_indices(targets: Sequence[int], train: bool, split_seed: Optional[int] = 0,
                              train_fraction: float = CIFAR10_DVS_TRAIN_FRACTION) -> list[int]:
    """Indices of the train (or test) part: per class the first ``ceil(train_fraction * n)`` samples in
    dataset order (``split_seed=None``) or after a shuffle seeded by ``(split_seed, class)``; sorted."""
    train_part, test_part = per_class_split(targets, train_fraction, rounding="ceil", seed=split_seed,
                                            seed_per_class=True)  # ceil: SpikingJelly's split_to_train_test_set
    return (train_part if train else test_part).tolist()


# ------------------------------------------------------------------------------------- raw file formats


def _corrupt(path, problem: str) -> CorruptDatasetFiles:
    return CorruptDatasetFiles(f"{path}: {problem}")


def _aedat3_body_start(data: bytes, path: Path) -> int:
    """The byte after the ``#!END-HEADER`` line of an AEDAT 3.1 file's '#' header lines."""
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line, pos = data[pos:end + 1], end + 1
        if line == b"#!END-HEADER\r\n":
            return pos
    raise _corrupt(path, "no '#!END-HEADER\\r\\n' line: not an AEDAT 3.1 file")


def read_gesture_aedat(path) -> dict:
    """Events of a DVS128 Gesture AEDAT 3.1 file as ``{'t', 'x', 'y', 'p'}`` arrays, read the way
    SpikingJelly's ``load_aedat_v3`` reads it (polarity packets only); raises :class:`CorruptDatasetFiles`."""
    path = Path(path)
    data = path.read_bytes()
    pos = _aedat3_body_start(data, path)
    addresses, stamps = [], []
    while pos < len(data):
        if len(data) - pos < 28:
            raise _corrupt(path, f"truncated: {len(data) - pos} bytes left at byte {pos}, a packet header needs 28")
        ptype, _source, size, _offset, overflow, capacity, _number, _valid = struct.unpack_from("<HHIIIIII", data, pos)
        pos += 28
        if pos + capacity * size > len(data):
            raise _corrupt(path, f"truncated: a packet at byte {pos - 28} announces {capacity} events of "
                                 f"{size} bytes but only {len(data) - pos} bytes follow")
        if ptype == 1:  # polarity events
            if size < 8 or size % 4:
                raise _corrupt(path, f"polarity packet at byte {pos - 28} has event size {size}, expected 8")
            words = np.frombuffer(data, dtype="<u4", count=capacity * size // 4, offset=pos).reshape(capacity, -1)
            addresses.append(words[:, 0])
            stamps.append(words[:, 1].astype(np.int64) | (int(overflow) << 31))
        pos += capacity * size
    address = np.concatenate(addresses) if addresses else np.zeros(0, np.uint32)
    events = {"t": np.concatenate(stamps) if stamps else np.zeros(0, np.int64),
              "x": (address >> 17) & 0x7FFF, "y": (address >> 2) & 0x7FFF, "p": (address >> 1) & 1}
    if address.size == 0:
        raise _corrupt(path, "holds no polarity events")
    if events["x"].max() >= SENSOR_SIZE[1] or events["y"].max() >= SENSOR_SIZE[0]:
        raise _corrupt(path, "event coordinates outside the 128x128 sensor: not a DVS128 recording")
    return events


def read_gesture_labels(path) -> np.ndarray:
    """Rows ``(class 1..11, startTime_usec, endTime_usec)`` of a ``*_labels.csv`` (header row first)."""
    path = Path(path)
    try:
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        rows = np.loadtxt(path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
    except (ValueError, UnicodeDecodeError, IndexError) as err:
        raise _corrupt(path, f"not a 'class,startTime_usec,endTime_usec' csv ({err})") from None
    if not first or first.split(",")[0].strip().isdigit():
        raise _corrupt(path, "the first line must be the header row 'class,startTime_usec,endTime_usec'")
    if rows.shape[1] != 3:
        raise _corrupt(path, f"rows have {rows.shape[1]} columns, expected 3 (class,startTime_usec,endTime_usec)")
    if len(rows) < 2:
        raise _corrupt(path, f"{len(rows)} label row(s); SpikingJelly's reader needs at least 2")
    bad = (rows[:, 0] < 1) | (rows[:, 0] > GESTURE_NUM_CLASSES) | (rows[:, 1] >= rows[:, 2]) | (rows[:, 1] < 0)
    if bad.any():
        raise _corrupt(path, f"row {int(np.argmax(bad)) + 2} needs a class in 1..11 and startTime < endTime")
    return rows


def count_cifar10_dvs_events(path) -> int:
    """Number of events in a CIFAR10-DVS ``.aedat`` ('#' header lines, then big-endian u32 address/timestamp
    pairs); raises :class:`CorruptDatasetFiles` when SpikingJelly could not read it."""
    path = Path(path)
    with open(path, "rb") as file:
        if file.read(1) != b"#":
            raise _corrupt(path, "does not start with '#' header lines: not a CIFAR10-DVS AEDAT 2.0 file")
        file.seek(0)
        while True:  # only the header is read; the events are counted from the file size
            start = file.tell()
            if not file.readline().startswith(b"#"):
                break
        body = path.stat().st_size - start
    if body % 8:
        raise _corrupt(path, f"{body} bytes of events is not a whole number of 8-byte (address, timestamp) pairs: "
                             "truncated")
    if body == 0:
        raise _corrupt(path, "holds no events")
    return body // 8


# ----------------------------------------------------------------------------- the two data sets' raw files


def _listing(paths: Iterable) -> str:
    paths = [str(p) for p in paths]
    shown = "\n".join(f"  {p}" for p in paths[:_MAX_LISTED])
    more = f"\n  ... and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else ""
    return shown + more


def _progress(items, desc: str):
    """A progress bar over many files (:func:`sj_sew.progress.progress_bar`: drawn only on a terminal)."""
    items = list(items)
    return items if len(items) < 50 else progress_bar(items, desc=desc, unit="file")


class _RawFiles:
    """What one data set needs on disk, how to check it, and which SpikingJelly class builds it."""

    title: str
    sj_module: str
    sj_class_name: str
    downloadable = False
    extracts_every_download = False  # whether SpikingJelly extracts every file in download/, not just archives()

    def sj_dataset_module(self):
        """SpikingJelly's module of this data set."""
        return importlib.import_module(self.sj_module)

    def sj_class(self):
        return getattr(self.sj_dataset_module(), self.sj_class_name)

    def archives(self) -> list[tuple[str, str]]:
        """``(file name, url)`` of the archives SpikingJelly extracts from ``download/``."""
        return [(name, url) for name, url, _md5 in self.sj_class().resource_url_md5()]

    def help(self, root: Path) -> str:
        raise NotImplementedError

    def extracted_present(self, extract_root: Path) -> bool:
        raise NotImplementedError

    def expected_samples(self, extract_root: Path) -> list[str]:
        """Sample files (relative to the cache folder) the extracted raw files yield; checks every raw file."""
        raise NotImplementedError

    def check_archive(self, path: Path) -> None:
        raise NotImplementedError

    def covers_every_class(self, samples: Sequence[str]) -> bool:
        """Whether cached sample files (relative names) reach every class folder SpikingJelly expects."""
        raise NotImplementedError

    def build(self, sj_cls, root: Path, train: Optional[bool], T: int, split_by: str):
        raise NotImplementedError

    def labels(self, sj_classes: Sequence[str]) -> tuple[list[int], list[str]]:
        """Our label of each SpikingJelly target index, and our class names in label order."""
        raise NotImplementedError


class _GestureFiles(_RawFiles):
    title = "DVS128 Gesture"
    sj_module = "spikingjelly.datasets.dvs128_gesture"
    sj_class_name = "DVS128Gesture"
    archive = "DvsGesture.tar.gz"
    trial_lists = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}

    def archives(self):
        # SpikingJelly also lists gesture_mapping.csv, LICENSE.txt and README.txt, but extracts only this one
        return [(name, url) for name, url in super().archives() if name == self.archive]

    def help(self, root: Path) -> str:
        url = dict(self.archives()).get(self.archive, "IBM's DVS Gesture page")
        d = root / "extract" / "DvsGesture"
        return (f"DVS128 Gesture has no automatic download. Get {self.archive} from {url} and put either\n"
                f"  {root / 'download' / self.archive}\n"
                f"or its extracted files\n"
                f"  {d}/trials_to_train.txt and trials_to_test.txt (one userXX_<lighting>.aedat per line)\n"
                f"  {d}/userXX_<lighting>.aedat and userXX_<lighting>_labels.csv for every trial listed")

    def extracted_present(self, extract_root: Path) -> bool:
        return (extract_root / "DvsGesture").is_dir()

    def _trials(self, folder: Path) -> dict[str, list[str]]:
        missing = [folder / name for name in self.trial_lists.values() if not (folder / name).is_file()]
        if missing:
            raise MissingDatasetFiles(f"{self.title}: missing\n{_listing(missing)}")
        trials = {}
        for split, name in self.trial_lists.items():
            try:
                lines = (folder / name).read_text().splitlines()
            except UnicodeDecodeError:
                raise _corrupt(folder / name, "not a text file of trial names") from None
            trials[split] = [line.strip() for line in lines if line.strip()]
            if not trials[split]:
                raise _corrupt(folder / name, "lists no trials")
        return trials

    def expected_samples(self, extract_root: Path) -> list[str]:
        folder = extract_root / "DvsGesture"
        trials = self._trials(folder)
        needed = [(split, name) for split, names in trials.items() for name in names]
        missing = [p for _, name in needed
                   for p in (folder / name, folder / f"{Path(name).stem}_labels.csv") if not p.is_file()]
        if missing:
            raise MissingDatasetFiles(f"{self.title}: the trial lists name files that are missing:\n"
                                      f"{_listing(missing)}")
        samples, problems = [], []
        seen = {split: set() for split in trials}
        for split, name in _progress(needed, "checking DVS128 Gesture files"):
            stem = Path(name).stem
            try:
                rows = read_gesture_labels(folder / f"{stem}_labels.csv")
                read_gesture_aedat(folder / name)
            except CorruptDatasetFiles as err:
                problems.append(str(err))
                continue
            count = defaultdict(int)
            for label in rows[:, 0] - 1:
                samples.append(f"{split}/{label}/{stem}_{count[label]}.npz")
                count[label] += 1
                seen[split].add(int(label) + 1)
        if problems:
            raise CorruptDatasetFiles(f"{self.title}: unreadable raw files (replace them with the original ones):\n"
                                      + _listing(problems))
        absent = {split: sorted(set(range(1, GESTURE_NUM_CLASSES + 1)) - s) for split, s in seen.items()}
        if any(absent.values()):
            raise CorruptDatasetFiles(
                f"{self.title}: every class 1..11 needs a labelled window in the train trials and in the test "
                f"trials; without one, class(es) {absent['train']} (train) and {absent['test']} (test) in "
                f"{folder}/*_labels.csv")
        return samples

    def check_archive(self, path: Path) -> None:
        try:
            with tarfile.open(path) as tar:
                names = set(tar.getnames())
        except (tarfile.TarError, OSError, EOFError) as err:
            raise _corrupt(path, f"cannot be read as a .tar.gz ({err}); download it again") from None
        wanted = {f"DvsGesture/{name}" for name in self.trial_lists.values()}
        if not wanted <= names:
            raise _corrupt(path, f"does not contain {sorted(wanted - names)}: not the DVS Gesture archive")

    def covers_every_class(self, samples):
        folders = {tuple(name.split("/")[:2]) for name in samples}
        return all((split, str(k)) in folders for split in self.trial_lists for k in range(GESTURE_NUM_CLASSES))

    def build(self, sj_cls, root, train, T, split_by):
        return sj_cls(str(root), train=train, data_type="frame", frames_number=T, split_by=split_by)

    def labels(self, sj_classes):
        # SpikingJelly's folders are '0'..'10', sorted as strings; the folder name is the csv class minus one
        return [int(name) for name in sj_classes], [str(k) for k in range(GESTURE_NUM_CLASSES)]


class _Cifar10DvsFiles(_RawFiles):
    title = "CIFAR10-DVS"
    sj_module = "spikingjelly.datasets.cifar10_dvs"
    sj_class_name = "CIFAR10DVS"
    downloadable = True
    extracts_every_download = True

    def help(self, root: Path) -> str:
        archives = self.archives()
        return (f"CIFAR10-DVS: put either\n"
                f"  the ten class zips in {root / 'download'}: {', '.join(name for name, _ in archives)}\n"
                f"  (SpikingJelly's sources, e.g. {archives[0][0]} from {archives[0][1]})\n"
                f"or their extracted files\n"
                f"  {root / 'extract'}/<class>/cifar10_<class>_<i>.aedat for the classes "
                f"{', '.join(CIFAR10_DVS_CLASSES)}\n"
                f"or pass allow_download=True to let SpikingJelly download the zips")

    def extracted_present(self, extract_root: Path) -> bool:
        return extract_root.is_dir() and any(extract_root.iterdir())

    def expected_samples(self, extract_root: Path) -> list[str]:
        missing = [extract_root / name for name in CIFAR10_DVS_CLASSES if not (extract_root / name).is_dir()]
        if missing:
            raise MissingDatasetFiles(f"{self.title}: missing class folders\n{_listing(missing)}")
        extra = sorted(p for p in extract_root.iterdir() if p.name not in CIFAR10_DVS_CLASSES)
        if extra:  # SpikingJelly turns every entry of extract/ into a class
            raise CorruptDatasetFiles(f"{self.title}: {extract_root} may hold only the ten class folders; "
                                      f"move these away:\n{_listing(extra)}")
        files = [p for name in CIFAR10_DVS_CLASSES for p in sorted((extract_root / name).iterdir())]
        strays = [p for p in files if p.suffix != ".aedat" or not p.is_file()]
        if strays:
            raise CorruptDatasetFiles(f"{self.title}: class folders may hold only .aedat files; "
                                      f"move these away:\n{_listing(strays)}")
        empty = [extract_root / name for name in CIFAR10_DVS_CLASSES if not any((extract_root / name).iterdir())]
        if empty:
            raise MissingDatasetFiles(f"{self.title}: no cifar10_<class>_<i>.aedat files in\n{_listing(empty)}")
        problems = []
        for path in _progress(files, "checking CIFAR10-DVS files"):
            try:
                count_cifar10_dvs_events(path)
            except CorruptDatasetFiles as err:
                problems.append(str(err))
        if problems:
            raise CorruptDatasetFiles(f"{self.title}: unreadable raw files (replace them with the original ones):\n"
                                      + _listing(problems))
        return [f"{p.parent.name}/{p.stem}.npz" for p in files]

    def check_archive(self, path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise _corrupt(path, f"cannot be read as a zip ({err}); download it again") from None
        if not any(name.endswith(".aedat") for name in names):
            raise _corrupt(path, "contains no .aedat files: not a CIFAR10-DVS class archive")

    def covers_every_class(self, samples):
        return {name.split("/")[0] for name in samples} == set(CIFAR10_DVS_CLASSES)

    def build(self, sj_cls, root, train, T, split_by):
        return sj_cls(str(root), data_type="frame", frames_number=T, split_by=split_by)

    def labels(self, sj_classes):
        return [CIFAR10_DVS_CLASSES.index(name) for name in sj_classes], list(CIFAR10_DVS_CLASSES)


_GESTURE = _GestureFiles()
_CIFAR10_DVS = _Cifar10DvsFiles()


# ------------------------------------------------------------------------------------------ caches


class _Cache:
    """A folder SpikingJelly fills with one ``.npz`` per sample, and our record that it finished."""

    def __init__(self, path: Path):
        self.path = path
        self.stamp = path.with_name(path.name + _STAMP_SUFFIX)

    def files(self) -> set[str]:
        if not self.path.is_dir():
            return set()
        return {p.relative_to(self.path).as_posix() for p in self.path.rglob("*.npz")}

    def recorded(self) -> Optional[list[str]]:
        """The recorded sample list if the stamp exists and the folder still holds exactly those files."""
        try:
            listed = json.loads(self.stamp.read_text())["samples"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return listed if self.files() == set(listed) else None

    def holds(self, expected: Sequence[str]) -> bool:
        """Whether the folder holds exactly ``expected``, each a readable npz."""
        return self.files() == set(expected) and not self.unreadable(expected)

    def unreadable(self, names: Iterable[str]) -> list[str]:
        bad = []
        for name in names:
            try:
                with zipfile.ZipFile(self.path / name) as archive:
                    archive.namelist()
            except (zipfile.BadZipFile, OSError):
                bad.append(name)
        return bad

    def record(self, samples: Sequence[str]) -> None:
        self.stamp.write_text(json.dumps({"samples": sorted(samples)}))

    def discard(self) -> None:
        if self.stamp.exists():
            self.stamp.unlink()
        marker = self.path.with_name(self.path.name + _BUILDING_SUFFIX)
        if marker.exists():
            marker.unlink()
        if self.path.exists():
            shutil.rmtree(self.path)


def _frame_caches(root: Path) -> list[_Cache]:
    """Every frames folder SpikingJelly derives from ``events_np``."""
    names = {p.name for p in root.glob("frames_number_*_split_by_*")} | {p.name for p in root.glob("duration_*")}
    names = {n[: -len(_STAMP_SUFFIX)] if n.endswith(_STAMP_SUFFIX) else n for n in names}
    names = {n[: -len(_BUILDING_SUFFIX)] if n.endswith(_BUILDING_SUFFIX) else n for n in names}
    return [_Cache(root / n) for n in sorted(names)]


def _clear_unfinished_builds(root: Path) -> None:
    """Remove what an interrupted or failed build left: 2.x ``<folder>.building`` markers with their folders
    (and, for ``events_np``, every frames folder derived from it) and our own half-done extraction."""
    for marker in sorted(root.glob("*" + _BUILDING_SUFFIX)):
        cache = _Cache(root / marker.name[: -len(_BUILDING_SUFFIX)])
        warnings.warn(f"removing {cache.path}: a previous build did not finish", stacklevel=3)
        cache.discard()
        if cache.path.name == "events_np":
            for frames in _frame_caches(root):
                frames.discard()
    if (root / _EXTRACT_IN_PROGRESS).exists():
        shutil.rmtree(root / _EXTRACT_IN_PROGRESS)


# ------------------------------------------------------------------------------------- the load itself


def _check_args(train, T, split_by) -> None:
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int (frames per sample), got {T!r}")
    if split_by not in SPLIT_BY_CHOICES:
        raise ValueError(f"split_by must be one of {SPLIT_BY_CHOICES}, got {split_by!r}")


def _offline_class(sj_cls):
    """SpikingJelly's class with nothing to download or MD5-check: the raw files were found and checked here."""
    return type(f"Offline{sj_cls.__name__}", (sj_cls,),
                {"resource_url_md5": staticmethod(lambda: []), "downloadable": staticmethod(lambda: False)})


def _prepare_raw(raw: _RawFiles, root: Path, allow_download: bool) -> Optional[list[str]]:
    """Make sure ``root/extract`` holds checked raw files (extracting ``download/`` archives if that is what is
    there) and return the sample list they yield; ``None`` when SpikingJelly is to download them itself."""
    extract_root, download_root = root / "extract", root / "download"
    if raw.extracted_present(extract_root):
        try:
            return raw.expected_samples(extract_root)
        except MissingDatasetFiles as err:
            raise MissingDatasetFiles(f"{err}\n{extract_root} is incomplete: complete it, or delete it to "
                                      f"extract again from {download_root}.\n{raw.help(root)}") from None
    archives = [download_root / name for name, _url in raw.archives()]
    if archives and all(p.is_file() for p in archives):
        return _extract_archives(raw, root, archives)
    if allow_download and raw.downloadable:
        return None
    present = [p.name for p in archives if p.is_file()]
    have = f" ({download_root} has only {present})" if present else ""
    raise MissingDatasetFiles(f"{raw.title}: no raw files under {root}{have}.\n{raw.help(root)}")


def _extract_archives(raw: _RawFiles, root: Path, archives: Sequence[Path]) -> list[str]:
    """Check the ``download/`` archives, extract them to ``root/extract`` (through a temporary folder, so that an
    interrupted extraction leaves nothing there) and return the sample list the extracted files yield."""
    extract_root, download_root = root / "extract", root / "download"
    extras = sorted(set(download_root.iterdir()) - set(archives)) if raw.extracts_every_download else []
    if extras:
        raise CorruptDatasetFiles(f"{raw.title}: {download_root} may hold only {[p.name for p in archives]}; "
                                  f"move these away:\n{_listing(extras)}")
    for path in archives:
        raw.check_archive(path)
    if extract_root.exists():
        if any(extract_root.iterdir()):
            raise CorruptDatasetFiles(f"{raw.title}: {extract_root} holds files that are not the data set's "
                                      f"layout; move them away so {download_root} can be extracted there.\n"
                                      f"{raw.help(root)}")
        extract_root.rmdir()
    partial = root / _EXTRACT_IN_PROGRESS
    partial.mkdir()
    try:
        raw.sj_class().extract_downloaded_files(download_root, partial)
        samples = raw.expected_samples(partial)
    except Exception as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise CorruptDatasetFiles(f"{raw.title}: the archives in {download_root} did not extract to the "
                                  f"expected files ({err})\n{raw.help(root)}") from err
    partial.rename(extract_root)
    return samples


def _missing_samples_error(raw: _RawFiles, cache: _Cache, expected: Sequence[str], split_by: str,
                           cause: Optional[Exception] = None):
    absent = sorted(set(expected) - cache.files()) + cache.unreadable(sorted(set(expected) & cache.files()))
    hint = (" With split_by='time' SpikingJelly fails on a sample when one of its T time windows holds no "
            "event; use split_by='number' or a smaller T." if split_by == "time" and cache.path.name != "events_np"
            else " Its reader failed on the raw files behind them (see its log above); replace those files.")
    said = f"\nSpikingJelly's error: {cause!r}." if cause is not None else ""  # the hint is the usual cause, not proof
    return CorruptDatasetFiles(f"{raw.title}: SpikingJelly could not build {len(absent)} sample(s) of {cache.path}:"
                               f"\n{_listing(absent)}{said}\n{hint.strip()} The partial cache was removed.")


def _adopt_without_raw_files(raw: _RawFiles, events: _Cache) -> Optional[list[str]]:
    """Accept an ``events_np`` built without sj_sew whose raw files are gone, if it covers every class and
    every file reads; its completeness cannot be checked, so say so."""
    names = sorted(events.files())
    if not names or not raw.covers_every_class(names) or events.unreadable(names):
        return None
    warnings.warn(f"using {events.path} although its raw files are absent: it was not built by sj_sew, so it "
                  f"cannot be checked for completeness ({len(names)} samples)", stacklevel=5)  # the public loader
    return names


class _Load:
    """The steps of one :func:`_load`: the data set's raw files, its two caches (``events_np`` and the frames
    folder of this ``T`` and ``split_by``) and SpikingJelly's build between them."""

    def __init__(self, raw: _RawFiles, root: Path, train: Optional[bool], T: int, split_by: str):
        self.raw, self.root, self.train, self.T, self.split_by = raw, root, train, T, split_by
        self.events = _Cache(root / "events_np")
        self.frames = _Cache(root / f"frames_number_{T}_split_by_{split_by}")

    def expected_samples(self, allow_download: bool) -> tuple[Optional[list[str]], type]:
        """The samples the build must yield (``None``: SpikingJelly downloads the raw files first) and the
        SpikingJelly class that builds them; removes an ``events_np`` (and its frames) that does not match."""
        expected = self.events.recorded()
        if expected is not None:
            return expected, _offline_class(self.raw.sj_class())
        expected = self._raw_or_adopted_samples(allow_download)
        if self.events.path.exists() and (expected is None or not self.events.holds(expected)):
            self.events.discard()
            for stale in _frame_caches(self.root):
                stale.discard()
        (self.root / "download").mkdir(exist_ok=True)  # SpikingJelly then only checks it, against an empty list
        if expected is None:
            return None, self.raw.sj_class()  # allowed to download
        return expected, _offline_class(self.raw.sj_class())

    def _raw_or_adopted_samples(self, allow_download: bool) -> Optional[list[str]]:
        try:
            return _prepare_raw(self.raw, self.root, allow_download)
        except MissingDatasetFiles:
            adopted = _adopt_without_raw_files(self.raw, self.events)
            if adopted is None:
                raise
            return adopted

    def discard_stale_frames(self, expected: Optional[list[str]]) -> None:
        if self.frames.path.exists() and (expected is None or self.frames.recorded() is None
                                          and not self.frames.holds(expected)):
            self.frames.discard()

    def build(self, sj_cls, expected: Optional[list[str]]):
        """SpikingJelly's data set object; on failure the caches it left are removed and one clear error raised."""
        events_was_done = self.events.path.exists()
        try:
            with numpy2_fromstring_fix(self.raw.sj_dataset_module()):
                return self.raw.build(sj_cls, self.root, self.train, self.T, self.split_by)
        except Exception as err:
            error = self._build_error(err, expected)
            if not events_was_done:
                self.events.discard()
            self.frames.discard()
            if isinstance(err, DatasetFilesError):
                raise
            raise error from err

    def _build_error(self, err: Exception, expected: Optional[list[str]]) -> CorruptDatasetFiles:
        # 2.x re-raises the first failed sample after building the others: name them all when we can
        failed = [cache for cache in (self.events, self.frames) if expected is not None and cache.path.exists()
                  and not cache.holds(expected)]
        if failed:
            return _missing_samples_error(self.raw, failed[0], expected, self.split_by, err)
        return CorruptDatasetFiles(f"{self.raw.title}: SpikingJelly failed to build {self.root} ({err!r}); the "
                                   f"partial cache was removed.\n{self.raw.help(self.root)}")

    def check_and_record(self, expected: Sequence[str]) -> None:
        """Record each cache as finished once it holds exactly ``expected``; remove it and raise otherwise."""
        for cache in (self.events, self.frames):
            recorded = cache.recorded()
            if recorded is not None and set(recorded) == set(expected):
                continue
            if not cache.holds(expected):
                error = _missing_samples_error(self.raw, cache, expected, self.split_by)
                self.frames.discard()
                if cache is self.events:
                    self.events.discard()
                raise error
            cache.record(expected)

    def dataset(self, built) -> DVSFrames:
        """SpikingJelly's samples under our labels, without the SpikingJelly object."""
        label_of, classes = self.raw.labels(built.classes)
        samples = [(str(path), label_of[target]) for path, target in built.samples]
        return DVSFrames(samples, built.loader, classes)


def _load(raw: _RawFiles, root, train: Optional[bool], T: int, split_by: str, allow_download: bool) -> DVSFrames:
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    _clear_unfinished_builds(root)
    load = _Load(raw, root, train, T, split_by)
    expected, sj_cls = load.expected_samples(allow_download)
    load.discard_stale_frames(expected)
    built = load.build(sj_cls, expected)
    if expected is None:  # SpikingJelly downloaded the raw files
        expected = raw.expected_samples(root / "extract")
    load.check_and_record(expected)
    return load.dataset(built)
