"""Per-class splits of a data set's indices: the one place that cuts each class into two parts (the validation
split of a run, the embedded sets' train/test split, CIFAR10-DVS's 90/10 split)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

#: The validation split is the same for every run seed (a property of the data, not of the run).
VALIDATION_SPLIT_SEED = 0

#: How the size of each class's first part, ``fraction * n``, becomes a whole number of samples:
#: ``'round'``: Python's round (half to even), as the embedded sets and the validation split always did;
#: ``'ceil'``: upwards, SpikingJelly's ``split_to_train_test_set`` (CIFAR10-DVS).
ROUNDINGS = {"round": lambda x: int(round(x)), "ceil": math.ceil}


def per_class_split(labels: Sequence[int], fraction: float, *, rounding: str, seed: int | None = 0,
                    seed_per_class: bool = False, per_class: int | None = None,
                    keep_both: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(first part, rest) of the indices of ``labels``, both sorted: of each class, in label order, the first
    ``fraction * n`` of its ``n`` samples (rounded as ``rounding`` says, see :data:`ROUNDINGS`) go to the first
    part, the others to the rest.

    Each class's samples are taken in data set order (``seed=None``) or after a seeded shuffle: one generator
    seeded by ``seed`` shuffles every class in turn, or, with ``seed_per_class``, each class its own generator
    seeded by ``(seed, class)`` (independent of the other classes' sizes). ``per_class`` keeps only the first
    that many samples of each class (after the shuffle). ``keep_both``: a class of two or more samples puts at
    least one in each part, a class of one sample goes to the rest."""
    if not 0 < fraction < 1:
        raise ValueError(f"the fraction must be in (0, 1), got {fraction}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; valid: {list(ROUNDINGS)}")
    labels = np.asarray(labels, dtype=np.int64)
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class must be a positive int (samples kept of each class) or None, got {per_class!r}")
    shared = np.random.default_rng(seed) if seed is not None and not seed_per_class else None
    first, rest = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if seed is not None:
            rng = np.random.default_rng([seed, int(c)]) if seed_per_class else shared
            idx = idx[rng.permutation(idx.size)]
        idx = idx[:per_class]
        k = ROUNDINGS[rounding](fraction * idx.size)
        if keep_both:
            k = 0 if idx.size < 2 else min(idx.size - 1, max(1, k))
        first.append(idx[:k])
        rest.append(idx[k:])
    if not first:  # no samples at all
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(rest))


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Every item's class label, read from the data set's label array where it has one (``targets``,
    ``labels``, a TensorDataset's second tensor), else item by item."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) == 2:
        return tensors[1].numpy().astype(np.int64)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def validation_split(dataset: Dataset, fraction: float, seed: int = VALIDATION_SPLIT_SEED) -> tuple[Subset, Subset]:
    """(train, validation) subsets of ``dataset``: ``fraction`` of each class (rounded, at least one sample of
    every class that has two), chosen by a seeded permutation, goes to validation. Raises ValueError if
    either part would be empty."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    labels = dataset_labels(dataset)
    val_idx, train_idx = per_class_split(labels, fraction, rounding="round", seed=seed, keep_both=True)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ValueError(f"a validation fraction of {fraction} of {len(labels)} training samples leaves "
                         f"{len(train_idx)} to train and {len(val_idx)} to validate; change --val-fraction "
                         "(0 turns the validation split off)")
    return Subset(dataset, train_idx.tolist()), Subset(dataset, val_idx.tolist())
