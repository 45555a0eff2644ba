"""Data sets for sj_sew: one registry for the embedded event set, static images and the DVS sets.

    from sj_sew.data import build_dataset, dataset_info, time_first_collate
    train = build_dataset("events", train=True, T=4)      # items ([T, 2, 16, 16], label)
    loader = DataLoader(train, batch_size=32, collate_fn=time_first_collate)  # batches [T, N, 2, 16, 16]

Sequence items are ``[T, C, H, W]``; static items ``[C, H, W]`` (build the model with ``T`` for those).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from .dvs import DatasetFilesError
from .transforms import RandomTemporalDelete, integrate_by_count, random_temporal_delete, time_first_collate


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set (defaults; ``input_size`` is the side of a square input)."""

    in_channels: int
    num_classes: int
    input_size: int
    sequence: bool
    default_T: int | None = None
    needs_root: bool = False  # the files must be given (``root``); nothing is embedded or downloaded


class DataError(ValueError):
    """A split that would train or test on nothing: empty, or (train) a single class. The message names the
    data set and the split."""


_DATASETS: dict[str, tuple[Callable[..., Dataset], DatasetInfo]] = {}
_OPTIONS: dict[str, Callable[[], Sequence[str]] | Sequence[str] | None] = {}


def register_dataset(name: str, info: DatasetInfo, options: Callable[[], Sequence[str]] | Sequence[str] | None = None):
    """Register ``build(train, root, T, **options) -> Dataset`` under ``name``. ``options`` are the option
    names the builder takes (or a function returning them, called on first use); None: read them off
    ``build``'s signature (any, if it takes ``**options``)."""

    def wrap(fn):
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered")
        _DATASETS[name] = (fn, info)
        _OPTIONS[name] = options
        return fn

    return wrap


def dataset_options(name: str) -> list[str] | None:
    """The option names ``build_dataset(name, ..., **options)`` takes (``--data-option KEY=VALUE``); None
    where the builder takes any."""
    build, _ = _entry(name)
    options = _OPTIONS[name]
    if callable(options):
        options = options()
    if options is None:
        params = inspect.signature(build).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
        options = [k for k in params if k not in ("train", "root", "T")]
    return sorted(options)


def check_split(dataset: Dataset, name: str, train: bool) -> Dataset:
    """``dataset`` if it can be trained or tested on; :class:`DataError` naming the data set and the split if
    it is empty, or (train split) holds fewer than two classes where its labels can be read without loading
    its items."""
    split = "train" if train else "test"
    if len(dataset) == 0:
        raise DataError(f"the {split} split of data set {name!r} is empty: its files hold too few samples per "
                        "class for the split (check the data root and its options)")
    labels = None
    for attr in ("targets", "labels"):
        labels = getattr(dataset, attr, None)
        if labels is not None:
            break
    if labels is None and hasattr(dataset, "tensors") and len(dataset.tensors) > 1:
        labels = dataset.tensors[1]
    if train and labels is not None:
        classes = np.unique(np.asarray(labels))
        if len(classes) < 2:
            raise DataError(f"the train split of data set {name!r} holds {len(dataset)} samples of "
                            f"{len(classes)} class: nothing to learn to classify")
    return dataset


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def _entry(name: str) -> tuple[Callable[..., Dataset], DatasetInfo]:
    try:
        return _DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; valid: {list_datasets()}") from None


def dataset_info(name: str) -> DatasetInfo:
    """in_channels, num_classes, input_size, sequence (and the default T of sequence sets)."""
    return _entry(name)[1]


def build_dataset(name: str, train: bool, root=None, T: int | None = None, **options) -> Dataset:
    """The train or test part of data set ``name`` (see :func:`list_datasets`). ``T`` is the number of
    frames of sequence sets (default: the set's own); static sets ignore it. ``options`` go to the builder
    (e.g. ``source='fashion_mnist'`` for ``events``, ``download=True`` for ``cifar10``)."""
    build, info = _entry(name)
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError(f"train must be True (the training split) or False (the test split), got {train!r}")
    if info.sequence:
        T = info.default_T if T is None else T
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int for the sequence data set {name!r}, got {T!r}")
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid)) if valid is not None else []
    if unknown:
        raise TypeError(f"data set {name!r} takes no option {unknown}; valid: {valid or 'none'}")
    return check_split(build(train=train, root=root, T=T, **options), name, train)


def _events_options() -> list[str]:
    from .embedded import SensorConfig

    return ["source", "per_class", "train_fraction", "split_seed", *SensorConfig.__dataclass_fields__]


@register_dataset("events", DatasetInfo(2, 10, 16, True, 4), options=_events_options)
def _events(train, root, T, **options):
    from .embedded import EmbeddedEventSet

    return EmbeddedEventSet(train=train, T=T, root=root, **options)


def _fashion_events_options() -> list[str]:
    return [o for o in _events_options() if o != "source"]


@register_dataset("fashion_events", DatasetInfo(2, 10, 34, True, 4), options=_fashion_events_options)
def _fashion_events(train, root, T, **options):
    """Fashion-MNIST seen by the emulated event sensor the N-MNIST way (34x34 sensor, 28x28 images, three
    saccades): harder than the digits of ``events`` and far from its ceiling."""
    from .embedded import EmbeddedEventSet

    return EmbeddedEventSet(train=train, T=T, root=root, source="fashion_mnist", **options)


@register_dataset("motion_events", DatasetInfo(2, 8, 32, True, 16),
                  options=("per_class", "sensor_size", "seed", "train_fraction", "split_seed"))
def _motion_events(train, root, T, **options):
    """A digit sweeping across the emulated event sensor horizontally, vertically and diagonally; the 8 classes
    are the directions of the three sweeps: the frames in time carry the class, their sum does not."""
    from .temporal import MotionEventSet

    return MotionEventSet(train=train, T=T, **options)


@register_dataset("digits", DatasetInfo(1, 10, 8, False), options=("train_fraction", "split_seed"))
def _digits(train, root, T, **options):
    from .static import digits

    return digits(train, root, **options)


@register_dataset("fashion_mnist", DatasetInfo(1, 10, 28, False), options=())
def _fashion_mnist(train, root, T, **options):
    from .static import fashion_mnist

    return fashion_mnist(train, root, **options)


@register_dataset("cifar10", DatasetInfo(3, 10, 32, False, needs_root=True), options=("download",))
def _cifar10(train, root, T, **options):
    from .static import cifar10

    return cifar10(train, root, **options)


@register_dataset("imagenet", DatasetInfo(3, 1000, 224, False, needs_root=True), options=())
def _imagenet(train, root, T, **options):
    from .static import imagenet

    return imagenet(train, root, **options)


@register_dataset("dvs128_gesture", DatasetInfo(2, 11, 128, True, 16, needs_root=True),
                  options=("split_by", "allow_download"))
def _dvs128_gesture(train, root, T, **options):
    from .dvs import dvs128_gesture

    return dvs128_gesture(root, train, T, **options)


@register_dataset("cifar10_dvs", DatasetInfo(2, 10, 128, True, 16, needs_root=True),
                  options=("split_by", "allow_download", "split_seed"))
def _cifar10_dvs(train, root, T, **options):
    from .dvs import cifar10_dvs

    return cifar10_dvs(root, train, T, **options)


__all__ = ["build_dataset", "dataset_info", "dataset_options", "list_datasets", "register_dataset", "DatasetInfo",
           "DataError", "DatasetFilesError", "check_split",
           "time_first_collate", "random_temporal_delete", "RandomTemporalDelete", "integrate_by_count"]
