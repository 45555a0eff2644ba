"""Data sets for sj_sew: one registry for the embedded event set, static images and the DVS sets.

    from sj_sew.data import build_dataset, dataset_info, time_first_collate
    train = build_dataset("events", train=True, T=4)      # items ([T, 2, 16, 16], label)
    loader = DataLoader(train, batch_size=32, collate_fn=time_first_collate)  # batches [T, N, 2, 16, 16]

Sequence items are ``[T, C, H, W]``; static items ``[C, H, W]`` (build the model with ``T`` for those).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch.utils.data import Dataset

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


_DATASETS: dict[str, tuple[Callable[..., Dataset], DatasetInfo]] = {}


def register_dataset(name: str, info: DatasetInfo):
    """Register ``build(train, root, T, **options) -> Dataset`` under ``name``."""

    def wrap(fn):
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered")
        _DATASETS[name] = (fn, info)
        return fn

    return wrap


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
    if info.sequence:
        T = info.default_T if T is None else T
        if not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int for the sequence data set {name!r}, got {T!r}")
    return build(train=train, root=root, T=T, **options)


@register_dataset("events", DatasetInfo(2, 10, 16, True, 4))
def _events(train, root, T, **options):
    from .embedded import EmbeddedEventSet

    return EmbeddedEventSet(train=train, T=T, root=root, **options)


@register_dataset("digits", DatasetInfo(1, 10, 8, False))
def _digits(train, root, T, **options):
    from .static import digits

    return digits(train, root, **options)


@register_dataset("fashion_mnist", DatasetInfo(1, 10, 28, False))
def _fashion_mnist(train, root, T, **options):
    from .static import fashion_mnist

    return fashion_mnist(train, root, **options)


@register_dataset("cifar10", DatasetInfo(3, 10, 32, False, needs_root=True))
def _cifar10(train, root, T, **options):
    from .static import cifar10

    return cifar10(train, root, **options)


@register_dataset("imagenet", DatasetInfo(3, 1000, 224, False, needs_root=True))
def _imagenet(train, root, T, **options):
    from .static import imagenet

    return imagenet(train, root, **options)


@register_dataset("dvs128_gesture", DatasetInfo(2, 11, 128, True, 16, needs_root=True))
def _dvs128_gesture(train, root, T, **options):
    from .dvs import dvs128_gesture

    return dvs128_gesture(root, train, T, **options)


@register_dataset("cifar10_dvs", DatasetInfo(2, 10, 128, True, 16, needs_root=True))
def _cifar10_dvs(train, root, T, **options):
    from .dvs import cifar10_dvs

    return cifar10_dvs(root, train, T, **options)


__all__ = ["build_dataset", "dataset_info", "list_datasets", "register_dataset", "DatasetInfo",
           "time_first_collate", "random_temporal_delete", "RandomTemporalDelete", "integrate_by_count"]
