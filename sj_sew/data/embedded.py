"""The embedded event data set: real images seen by an EMULATED event camera, no download.

This follows the recipe of N-MNIST (Orchard et al., 2015), where a real DVS sensor on a pan-tilt unit made
three saccades in front of MNIST digits on a monitor. Here the sensor is emulated, not recorded:

1. Each real image (scikit-learn's handwritten digits, upsampled; or Fashion-MNIST) sits in the middle of
   a ``sensor_size`` x ``sensor_size`` dark field and moves along N-MNIST's triangular saccade path
   (three saccades, sub-pixel bilinear motion).
2. Every pixel compares its log intensity log(I + eps) with the level it had at its own last event; when
   the change exceeds its contrast threshold it emits an event (t, x, y, p), p = 1 for brighter (ON) and
   0 for darker (OFF), and takes the new level. Thresholds vary per pixel (fixed pattern mismatch) and a
   small rate of background-activity noise events is added, both from a fixed seed.
3. The events are integrated into T frames exactly as SpikingJelly's DVS loaders do with
   ``split_by='number'`` (:func:`~sj_sew.data.transforms.integrate_by_count`).

Everything is deterministic for a seed, takes a few seconds, and is cached in memory per setting. The train
and test sets are a fixed per-class split (``train_fraction`` of each class, chosen by ``split_seed``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from .idx import fashion_mnist_arrays
from .split import per_class_split
from .transforms import frame_index_by_count

SOURCES = ("digits", "fashion_mnist")


@dataclass(frozen=True)
class SensorConfig:
    """The emulated sensor and its motion. Times are in microseconds, like real DVS recordings."""

    sensor_size: int = 16        # pixels per side
    image_size: int = 12         # side of the image on the sensor (the source is resized to it)
    saccade_amplitude: float = 1.5  # pixels
    steps_per_saccade: int = 16  # sensor readouts per saccade
    saccade_us: int = 100_000    # duration of one saccade (N-MNIST: about 100 ms)
    contrast: float = 0.15       # log-intensity change that triggers an event
    contrast_sigma: float = 0.02  # per-pixel threshold mismatch (std)
    noise_rate: float = 0.0005   # background-activity events per pixel per readout
    log_eps: float = 0.1         # log(I + eps), I in [0, 1]
    seed: int = 0


@dataclass
class EventStreams:
    """Events of many samples, concatenated in sample order then time order; sample i owns
    ``[offsets[i], offsets[i + 1])``."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> dict:
        """Sample i's events as SpikingJelly's event dict ``{'t', 'x', 'y', 'p'}``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return {"t": self.t[a:b], "x": self.x[a:b], "y": self.y[a:b], "p": self.p[a:b]}


def saccade_path(config: SensorConfig) -> np.ndarray:
    """(dy, dx) offset of the image at every readout: N-MNIST's triangle (0,0) -> (A, A/2) -> (0, A) -> (0,0)."""
    a = config.saccade_amplitude
    corners = np.array([[0.0, 0.0], [a, a / 2], [0.0, a], [0.0, 0.0]]) - np.array([a / 2, a / 2])
    n = config.steps_per_saccade
    legs = [c0 + (c1 - c0) * (np.arange(n) / n)[:, None] for c0, c1 in zip(corners[:-1], corners[1:])]
    return np.concatenate(legs + [corners[-1:]])


def _padded(images: np.ndarray, config: SensorConfig) -> tuple[np.ndarray, int]:
    """Images on a dark field large enough for every crop of :func:`_view`, and the padding used."""
    n, h, w = images.shape
    pad = int(np.ceil((config.sensor_size - h) / 2 + abs(config.saccade_amplitude))) + 2
    field = np.zeros((n, h + 2 * pad, w + 2 * pad), dtype=np.float32)
    field[:, pad:pad + h, pad:pad + w] = images
    return field, pad


def _view(field: np.ndarray, pad: int, h: int, dy: float, dx: float, size: int) -> np.ndarray:
    """The sensor's [N, size, size] view of the padded images, centred, shifted by (dy, dx) with bilinear
    interpolation."""
    top, left = pad + (h - size) / 2 - dy, pad + (h - size) / 2 - dx
    iy, ix = int(np.floor(top)), int(np.floor(left))
    fy, fx = np.float32(top - iy), np.float32(left - ix)

    def crop(oy, ox):
        return field[:, iy + oy: iy + oy + size, ix + ox: ix + ox + size]

    return ((1 - fy) * ((1 - fx) * crop(0, 0) + fx * crop(0, 1))
            + fy * ((1 - fx) * crop(1, 0) + fx * crop(1, 1)))


def _checked_images(images: np.ndarray, config: SensorConfig) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be [N, H, W] with H == W, got shape {images.shape}")
    if images.shape[1] > config.sensor_size:
        raise ValueError(f"images of side {images.shape[1]} do not fit a sensor of side {config.sensor_size}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("image values must lie in [0, 1]")
    return images


def emulate_events(images: np.ndarray, config: SensorConfig = SensorConfig()) -> EventStreams:
    """Event streams of an emulated DVS making saccades over ``images`` ([N, H, W], values in [0, 1],
    already at ``config.image_size``). Deterministic for ``config.seed``."""
    images = _checked_images(images, config)
    field, pad = _padded(images, config)
    h, size = images.shape[1], config.sensor_size
    views = (_view(field, pad, h, dy, dx, size) for dy, dx in saccade_path(config))
    return sense_events(views, len(images), config, config.saccade_us // config.steps_per_saccade)


def sense_events(views, n: int, config: SensorConfig, dt: int) -> EventStreams:
    """The emulated sensor (module docstring, step 2) watching ``n`` scenes: ``views`` yields, at each readout,
    the ``[n, sensor_size, sensor_size]`` intensities in [0, 1] it sees; the first is the level every pixel
    starts adapted to, readout k happens at ``k * dt`` microseconds. Thresholds and noise come from
    ``config.seed``, so any motion (saccades, :mod:`sj_sew.data.temporal`'s paths) meets the same sensor."""
    rng = np.random.default_rng(config.seed)
    size = config.sensor_size
    threshold = np.maximum(config.contrast + config.contrast_sigma * rng.standard_normal((size, size)),
                           config.contrast / 4).astype(np.float32)
    views = iter(views)
    level = np.log(next(views) + config.log_eps)  # every pixel starts adapted
    parts = []
    for step, view in enumerate(views, start=1):
        now = np.log(view + config.log_eps)
        change = now - level
        fired = np.abs(change) > threshold
        sample, y, x = np.nonzero(fired)
        polarity = change[fired] > 0
        level[fired] = now[fired]
        n_noise = rng.binomial(n * size * size, config.noise_rate)
        ns, ny, nx = np.unravel_index(rng.choice(n * size * size, n_noise, replace=False), (n, size, size))
        parts.append((np.concatenate([sample, ns]), np.concatenate([y, ny]), np.concatenate([x, nx]),
                      np.concatenate([polarity, rng.random(n_noise) < 0.5]), step * dt))
    sample = np.concatenate([q[0] for q in parts])
    order = np.argsort(sample, kind="stable")  # parts are in time order, so each sample stays time-ordered
    t = np.concatenate([np.full(q[0].size, q[4], dtype=np.int64) for q in parts])
    counts = np.bincount(sample, minlength=n)
    return EventStreams(
        t=t[order],
        x=np.concatenate([q[2] for q in parts])[order].astype(np.int16),
        y=np.concatenate([q[1] for q in parts])[order].astype(np.int16),
        p=np.concatenate([q[3] for q in parts])[order].astype(np.int8),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
    )


def frames_by_count(streams: EventStreams, T: int, size: int, chunk: int = 256) -> np.ndarray:
    """All streams integrated into ``[N, T, 2, size, size]`` uint8 event counts, split by event count
    (SpikingJelly's ``split_by='number'``)."""
    counts = streams.counts
    frame = frame_index_by_count(counts, T)
    owner = np.repeat(np.arange(len(streams)), counts)
    out = np.empty((len(streams), T, 2, size, size), dtype=np.uint8)
    per_sample = T * 2 * size * size
    for first in range(0, len(streams), chunk):
        last = min(first + chunk, len(streams))
        a, b = streams.offsets[first], streams.offsets[last]
        flat = ((((owner[a:b] - first) * T + frame[a:b]) * 2 + (streams.p[a:b] != 0)) * size
                + streams.y[a:b].astype(np.int64)) * size + streams.x[a:b].astype(np.int64)
        summed = np.bincount(flat, minlength=(last - first) * per_sample)
        if summed.max(initial=0) > 255:
            raise OverflowError("more than 255 events in one pixel of one frame; use a larger T")
        out[first:last] = summed.reshape(last - first, T, 2, size, size)
    return out


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] images in [0, 1] resized (bilinear) to ``size`` x ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1).numpy()


def source_images(source: str, root) -> tuple[np.ndarray, np.ndarray]:
    """Real images scaled to [0, 1] and labels."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    if source == "fashion_mnist":
        images, labels = fashion_mnist_arrays(root)
        return images.astype(np.float32) / 255.0, labels
    raise ValueError(f"unknown source {source!r}; valid: {list(SOURCES)}")


@lru_cache(maxsize=4)
def _build(source: str, root, config: SensorConfig, per_class, train_fraction: float, split_seed: int):
    images, labels = source_images(source, root)
    train_idx, test_idx = per_class_split(labels, train_fraction, rounding="round", seed=split_seed, per_class=per_class)
    used = np.concatenate([train_idx, test_idx])
    streams = emulate_events(resize_images(images[used], config.image_size), config)
    split = {"train": np.arange(train_idx.size), "test": np.arange(train_idx.size, used.size)}
    return streams, labels[used], split


@lru_cache(maxsize=4)
def _frames(source, root, config, per_class, train_fraction, split_seed, T):
    streams, _, _ = _build(source, root, config, per_class, train_fraction, split_seed)
    return frames_by_count(streams, T, config.sensor_size)


class EmbeddedEventSet(Dataset):
    """Saccade event streams of real images from an emulated DVS (see the module docstring), as frames.

    Items are ``(frames, label)`` with frames float32 ``[T, 2, sensor_size, sensor_size]`` holding event
    counts (channel 0: OFF, 1: ON), the layout of SpikingJelly's DVS frame datasets.

    Args:
        train: the train or the test part of the fixed per-class split.
        T: frames per sample.
        source: ``'digits'`` (scikit-learn, 1797 images, the default) or ``'fashion_mnist'`` (Debian's files).
        root: directory of the Fashion-MNIST ``*-ubyte.gz`` files (default /usr/share/datasets/fashion-mnist).
        per_class: use at most this many images of each class (default: all for digits, 700 for Fashion-MNIST).
        train_fraction, split_seed: the per-class split.
        **sensor: fields of :class:`SensorConfig` (sensor_size, contrast, noise_rate, seed, ...).
    """

    def __init__(self, train: bool = True, T: int = 8, source: str = "digits", root=None,
                 per_class: int | None = None, train_fraction: float = 0.75, split_seed: int = 0, **sensor):
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; valid: {list(SOURCES)}")
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
        unknown = set(sensor) - set(SensorConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}; sensor options: {sorted(SensorConfig.__dataclass_fields__)}")
        if source == "fashion_mnist":
            sensor.setdefault("image_size", 28)
            sensor.setdefault("sensor_size", 34)  # as N-MNIST
            sensor.setdefault("saccade_amplitude", 3.0)
            per_class = 700 if per_class is None else per_class
        self.config = SensorConfig(**sensor)
        self.source, self.T, self.train = source, T, train
        key = (source, None if root is None else str(root), self.config, per_class, train_fraction, split_seed)
        self.streams, labels, split = _build(*key)
        self.indices = split["train" if train else "test"]
        self.labels = labels[self.indices]
        self.frames = _frames(*key, T)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        return torch.from_numpy(self.frames[j].astype(np.float32)), int(self.labels[i])

    def events(self, i: int) -> dict:
        """Item i's raw events ``{'t', 'x', 'y', 'p'}`` (time-ordered)."""
        return self.streams.sample(int(self.indices[i]))
