"""Tiny raw DVS128 Gesture and CIFAR10-DVS files in their exact on-disk formats, with the answers.

DVS128 Gesture (IBM): ``extract/DvsGesture/`` with ``trials_to_{train,test}.txt`` and per trial an AEDAT 3.1
``.aedat`` ('#' header lines ending ``#!END-HEADER\\r\\n``; packets of a 28-byte little-endian header
``<HHIIIIII`` = type, source, event size, ts offset, ts overflow, capacity, number, valid, then per event u32
``(x<<17)|(y<<2)|(p<<1)`` and u32 timestamp) plus ``<trial>_labels.csv`` (header row, then
``class(1..11),startTime_usec,endTime_usec``).
CIFAR10-DVS: ``extract/<class>/cifar10_<class>_<i>.aedat``: '#' header lines, then big-endian u32
(address, timestamp) pairs, address = ``(y<<8)|(x<<1)|p``. SpikingJelly shows such an event at
column ``127 - y``, row ``127 - x`` with polarity ``1 - p``.
"""
from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Sample:
    """One expected sample: its label, and its events in time order as SpikingJelly will store them
    (``x`` column, ``y`` row, ``p`` channel)."""

    label: int
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


@dataclass
class RawSet:
    """What was written: expected samples per split (``'train'``/``'test'``, or ``'all'`` for CIFAR10-DVS)
    keyed by ``<folder>/<stem>`` of the sample file SpikingJelly makes (see :func:`sample_key`), and the raw files."""

    samples: dict = field(default_factory=dict)
    files: list = field(default_factory=list)


def frames_of(sample: Sample, T: int) -> np.ndarray:
    """The ``[T, 2, 128, 128]`` frames of ``sample`` split by event number: frame ``j`` holds events
    ``[j*(N//T), (j+1)*(N//T))``, the last frame also the remainder."""
    n = len(sample.x)
    frames = np.zeros((T, 2, 128, 128), np.float32)
    step = n // T
    for j in range(T):
        stop = n if j == T - 1 else (j + 1) * step
        sl = slice(j * step, stop)
        np.add.at(frames[j], (sample.p[sl], sample.y[sl], sample.x[sl]), 1)
    return frames


def sample_key(path) -> str:
    """``<class folder>/<file stem>`` of a cached sample file, the key of :attr:`RawSet.samples`."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}"


# ------------------------------------------------------------------------------------ DVS128 Gesture


def gesture_aedat_bytes(t, x, y, p, packet_events: int = 7, special_packet: bool = True) -> bytes:
    """An AEDAT 3.1 file: header, a special-event packet (type 0, skipped by readers) and polarity packets."""
    out = io.BytesIO()
    for line in (b"#!AER-DAT3.1\r\n", b"#Format: RAW\r\n", b"#Source 1: DVS128\r\n",
                 b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n", b"#!END-HEADER\r\n"):
        out.write(line)
    if special_packet:
        out.write(struct.pack("<HHIIIIII", 0, 1, 8, 4, 0, 1, 1, 1))
        out.write(struct.pack("<II", 0x12345678, int(t[0]) if len(t) else 0))
    for start in range(0, len(t), packet_events):
        sl = slice(start, start + packet_events)
        n = len(t[sl])
        out.write(struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n))
        words = np.empty((n, 2), "<u4")
        words[:, 0] = (np.asarray(x[sl], np.uint32) << 17) | (np.asarray(y[sl], np.uint32) << 2) \
            | (np.asarray(p[sl], np.uint32) << 1)
        words[:, 1] = t[sl]
        out.write(words.tobytes())
    return out.getvalue()


def write_gesture(root, trials: dict, seed: int = 0, events_per_window=(5, 12), as_archive: bool = False) -> RawSet:
    """Write DVS128 Gesture raw files under ``root``.

    ``trials`` maps ``'train'``/``'test'`` to ``{trial_name: [class, ...]}`` (classes 1..11, one window each,
    in time order). Events also fall between windows (they belong to no sample). With ``as_archive`` the
    files go into ``download/DvsGesture.tar.gz`` instead of ``extract/DvsGesture/``.
    """
    rng = np.random.default_rng(seed)
    raw = RawSet(samples={"train": {}, "test": {}})
    files = {}
    for split, by_trial in trials.items():
        files[f"trials_to_{split}.txt"] = "".join(f"{name}.aedat\n" for name in by_trial).encode()
        for name, classes in by_trial.items():
            t_all, x_all, y_all, p_all = [], [], [], []
            rows = ["class,startTime_usec,endTime_usec"]
            clock = 1000
            count = {}
            for cls in classes:
                n_gap = int(rng.integers(1, 4))  # events outside any window
                t_all.append(clock + np.arange(n_gap))
                x_all.append(rng.integers(0, 128, n_gap)), y_all.append(rng.integers(0, 128, n_gap))
                p_all.append(rng.integers(0, 2, n_gap))
                clock += n_gap + 10
                n = int(rng.integers(*events_per_window))
                t = clock + np.sort(rng.choice(5000, n, replace=False))
                x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
                rows.append(f"{cls},{clock},{clock + 5000}")
                t_all.append(t), x_all.append(x), y_all.append(y), p_all.append(p)
                k = count.get(cls, 0)
                count[cls] = k + 1
                raw.samples[split][f"{cls - 1}/{name}_{k}"] = Sample(cls - 1, x, y, p)
                clock += 5000 + 50
            t, x, y, p = (np.concatenate(a) for a in (t_all, x_all, y_all, p_all))
            files[f"{name}.aedat"] = gesture_aedat_bytes(t, x, y, p)
            files[f"{name}_labels.csv"] = ("\n".join(rows) + "\n").encode()
    root = Path(root)
    if as_archive:
        (root / "download").mkdir(parents=True, exist_ok=True)
        path = root / "download" / "DvsGesture.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"DvsGesture/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        raw.files = [path]
    else:
        folder = root / "extract" / "DvsGesture"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
            raw.files.append(folder / name)
    return raw


def every_class_trials(train_trials: int = 1, test_trials: int = 1, repeat_class: int = 8) -> dict:
    """Trial plans covering all 11 classes in each split; ``repeat_class`` appears twice in each trial
    (as in the real user26 files), so the sample suffixes _0/_1 and labels 10 ('11') are exercised."""
    classes = list(range(1, 12))
    plan = {"train": {}, "test": {}}
    for split, n in (("train", train_trials), ("test", test_trials)):
        for i in range(n):
            plan[split][f"user{(1 if split == 'train' else 24) + i:02d}_fluorescent"] = classes + [repeat_class]
    return plan


# --------------------------------------------------------------------------------------- CIFAR10-DVS


def cifar10_dvs_aedat_bytes(t, x_raw, y_raw, p_raw) -> bytes:
    """A CIFAR10-DVS (jAER AEDAT 2.0) file: '#' header lines, then big-endian (address, timestamp) u32 pairs."""
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# Data format is int32 address, " \
             b"int32 timestamp (8 bytes total), repeated for each event\r\n# Timestamps tick is 1 us\r\n"
    words = np.empty((len(t), 2), ">u4")
    x_raw, y_raw, p_raw = (np.asarray(a, np.uint32) for a in (x_raw, y_raw, p_raw))
    words[:, 0] = (y_raw << 8) | (x_raw << 1) | p_raw
    words[:, 1] = t
    return header + words.tobytes()


def write_cifar10_dvs(root, per_class: int = 3, seed: int = 0, events=(4, 10), as_archives: bool = False) -> RawSet:
    """``per_class`` recordings of each class under ``root/extract/<class>/`` (or as ``download/<class>.zip``)."""
    rng = np.random.default_rng(seed)
    raw = RawSet(samples={"all": {}})
    root = Path(root)
    for label, cls in enumerate(CIFAR10_DVS_CLASSES):
        members = {}
        for i in range(per_class):
            n = int(rng.integers(*events))
            t = np.sort(rng.choice(100000, n, replace=False))
            xr, yr, pr = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            members[f"{cls}/cifar10_{cls}_{i}.aedat"] = cifar10_dvs_aedat_bytes(t, xr, yr, pr)
            raw.samples["all"][f"{cls}/cifar10_{cls}_{i}"] = Sample(label, 127 - yr, 127 - xr, 1 - pr)
        if as_archives:
            (root / "download").mkdir(parents=True, exist_ok=True)
            path = root / "download" / f"{cls}.zip"
            with zipfile.ZipFile(path, "w") as archive:
                for name, data in members.items():
                    archive.writestr(name, data)
            raw.files.append(path)
        else:
            for name, data in members.items():
                path = root / "extract" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                raw.files.append(path)
    return raw
