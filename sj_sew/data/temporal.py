"""Motion events: an emulated event set in the style of DVS128 Gesture whose classes differ only in the DIRECTION
of motion, so that the frames in time carry the class and their sum does not.

A real image (a scikit-learn handwritten digit drawn at random for every sample, turned into one of its 8 mirror
images and rotations at random, independent of its class) sweeps three times across the field of the emulated
event sensor of :mod:`sj_sew.data.embedded` (the same log-intensity events, threshold mismatch and noise:
:func:`~sj_sew.data.embedded.sense_events`): horizontally, vertically and diagonally, each time entering and
leaving the field. A class is the direction of each sweep (right or left, down or up, down-right or up-left): 8
classes. Since every mirror image and rotation of the object is as likely, a pixel sees the same rises and falls
whichever way the object passes, so the events summed over time look alike for all classes (a linear readout of
the summed frames is near chance); which side of the object lights up first, frame after frame, tells the
direction.

Per sample, drawn from ``seed``: the digit, its mirroring, rotation and brightness (0.6 to 1), each sweep's offset
across its axis (+-1/4 of the side) and along it (+-2 pixels), and a smooth random variation of the speed (so the
sweeps do not fall on fixed frames). The events are integrated into T frames by event count (SpikingJelly's
``split_by='number'``). Deterministic for a seed, cached in memory per setting; train and test are a fixed
per-class split.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from .embedded import EventStreams, SensorConfig, frames_by_count, resize_images, sense_events, source_images
from .split import per_class_split

#: the three sweeps of every sample, in this order: (y, x) unit vectors of the axis and of its perpendicular
AXES = {"horizontal": ((0.0, 1.0), (1.0, 0.0)), "vertical": ((1.0, 0.0), (0.0, 1.0)),
        "diagonal": ((math.sqrt(0.5), math.sqrt(0.5)), (math.sqrt(0.5), -math.sqrt(0.5)))}
#: class -> the direction of each sweep along its axis (+1: right, down, down-right; -1: the opposite)
CLASSES = tuple(itertools.product((1, -1), repeat=len(AXES)))
SENSOR_SIZES = (16, 128)  # smallest and largest side allowed


@dataclass(frozen=True)
class MotionConfig:
    """The scene and its sampling. Lengths are fractions of the sensor's side; times in microseconds."""

    sensor_size: int = 32
    per_class: int = 200
    object_fraction: float = 0.375  # the digit's side (12 pixels on 32)
    steps: int = 144  # sensor readouts of the whole motion (three sweeps)
    motion_us: int = 1_500_000
    warp: float = 0.7  # amplitude of the speed variation (0: constant speed; < 1 keeps the motion monotone)
    seed: int = 0

    def check(self) -> None:
        lo, hi = SENSOR_SIZES
        if isinstance(self.sensor_size, bool) or not isinstance(self.sensor_size, int) or not lo <= self.sensor_size <= hi:
            raise ValueError(f"sensor_size must be an int in [{lo}, {hi}], got {self.sensor_size!r}")
        if isinstance(self.per_class, bool) or not isinstance(self.per_class, int) or self.per_class < 2:
            raise ValueError(f"per_class must be an int >= 2 (samples of each class), got {self.per_class!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not isinstance(self.steps, int) or self.steps < 8:
            raise ValueError(f"steps must be an int >= 8 (readouts of the motion), got {self.steps!r}")


def _paths(labels: np.ndarray, config: MotionConfig, side: int, rng: np.random.Generator) -> np.ndarray:
    """(y, x) centre of every sample's object at every readout: [N, steps + 1, 2] in sensor pixels. Three straight
    sweeps (:data:`AXES`), each from outside the field to outside the other side, in the class's directions,
    each at a random offset across its axis (+-1/4 of the side), with a speed that varies smoothly and differently
    in every sample (a random monotone time warp of the whole motion)."""
    n, size, sweeps = len(labels), config.sensor_size, len(AXES)
    t = np.linspace(0, 1, config.steps + 1)[None]
    a, phase = rng.uniform(-config.warp, config.warp, (n, 1)), rng.uniform(0, 2 * math.pi, (n, 1))
    u = t + a * (np.sin(2 * math.pi * t + phase) - np.sin(phase)) / (2 * math.pi)  # monotone for |a| <= 1
    k = np.minimum((u * sweeps).astype(int), sweeps - 1)  # [N, steps + 1]: the sweep under way
    sign = np.array(CLASSES, dtype=np.float64)[labels]  # [N, sweeps]
    length = math.sqrt(2) * (size + side) + 8  # the whole object outside the field at both ends, any axis
    shift = np.take_along_axis(rng.uniform(-2, 2, (n, sweeps)), k, 1)  # no fixed sub-pixel phase per class
    along = np.take_along_axis(sign, k, 1) * (u * sweeps - k - 0.5) * length + shift
    across = np.take_along_axis(rng.uniform(-size / 4, size / 4, (n, sweeps)), k, 1)
    axis, perp = (np.array([AXES[name][j] for name in AXES])[k] for j in (0, 1))  # [N, steps + 1, 2]
    return size / 2 + along[..., None] * axis + across[..., None] * perp


def _views(objects: torch.Tensor, paths: np.ndarray, size: int):
    """The sensor's [N, size, size] view at each readout: each object drawn (bilinear) centred on its path point
    over a dark field."""
    side = objects.shape[-1]
    pixel = torch.arange(size, dtype=torch.float64) + 0.5
    for step in range(paths.shape[1]):
        cy, cx = (torch.from_numpy(paths[:, step, k])[:, None] for k in (0, 1))
        gy = 2 * (pixel[None] - cy + side / 2) / side - 1  # [N, size]: object coordinates, grid_sample's [-1, 1]
        gx = 2 * (pixel[None] - cx + side / 2) / side - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1).float()
        yield torch.nn.functional.grid_sample(objects, grid, mode="bilinear", padding_mode="zeros",
                                              align_corners=False)[:, 0].clamp(0, 1).numpy()


@lru_cache(maxsize=4)
def motion_streams(config: MotionConfig) -> tuple[EventStreams, np.ndarray]:
    """(event streams, labels) of ``config.per_class`` samples of every class, class-major."""
    config.check()
    rng = np.random.default_rng([config.seed, 1])
    labels = np.repeat(np.arange(len(CLASSES)), config.per_class)
    digits, _ = source_images("digits", None)
    side = max(4, round(config.object_fraction * config.sensor_size))
    chosen = digits[rng.integers(0, len(digits), labels.size)]
    # any of the 8 mirror images and rotations of the square as likely: the object favours no direction
    flips = rng.random((labels.size, 3)) < 0.5
    chosen = np.where(flips[:, :1, None], chosen[:, ::-1], chosen)
    chosen = np.where(flips[:, 1:2, None], chosen[:, :, ::-1], chosen)
    chosen = np.where(flips[:, 2:, None], chosen.transpose(0, 2, 1), chosen)
    objects = torch.from_numpy(resize_images(chosen, side) * rng.uniform(0.6, 1.0, (labels.size, 1, 1)).astype(np.float32))
    paths = _paths(labels, config, side, rng)
    sensor = SensorConfig(sensor_size=config.sensor_size, seed=config.seed)
    streams = sense_events(_views(objects[:, None], paths, config.sensor_size), labels.size, sensor,
                           config.motion_us // config.steps)
    return streams, labels


@lru_cache(maxsize=8)
def _frames(config: MotionConfig, T: int) -> np.ndarray:
    return frames_by_count(motion_streams(config)[0], T, config.sensor_size)


class MotionEventSet(Dataset):
    """The train or test part of the motion event set (module docstring) as frames.

    Items are ``(frames, label)``, frames float32 ``[T, 2, sensor_size, sensor_size]`` of event counts (channel 0:
    OFF, 1: ON). ``per_class`` samples of each of the 8 classes (:data:`CLASSES`) are made and split
    ``train_fraction`` / rest per class by ``split_seed``; ``seed`` draws the scenes and the sensor.
    """

    def __init__(self, train: bool = True, T: int = 16, per_class: int = 200, sensor_size: int = 32, seed: int = 0,
                 train_fraction: float = 0.75, split_seed: int = 0):
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
        self.config = MotionConfig(sensor_size=sensor_size, per_class=per_class, seed=seed)
        self.config.check()
        self.T, self.train = T, train
        self.streams, labels = motion_streams(self.config)
        train_idx, test_idx = per_class_split(labels, train_fraction, rounding="round", seed=split_seed)
        self.indices = train_idx if train else test_idx
        self.labels = labels[self.indices]
        self.frames = _frames(self.config, T)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.frames[self.indices[i]].astype(np.float32)), int(self.labels[i])

    def events(self, i: int) -> dict:
        """Item i's raw events ``{'t', 'x', 'y', 'p'}`` (time-ordered)."""
        return self.streams.sample(int(self.indices[i]))
