"""The validation split: held out of a training set per class, so that model selection never sees the test
split."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

#: The validation split is the same for every run seed (a property of the data, not of the run).
VALIDATION_SPLIT_SEED = 0


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
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        k = 0 if idx.size < 2 else min(idx.size - 1, max(1, int(round(fraction * idx.size))))
        val_idx += idx[:k].tolist()
        train_idx += idx[k:].tolist()
    train_idx, val_idx = sorted(train_idx), sorted(val_idx)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ValueError(f"a validation fraction of {fraction} of {len(labels)} training samples leaves "
                         f"{len(train_idx)} to train and {len(val_idx)} to validate; change --val-fraction "
                         "(0 turns the validation split off)")
    return Subset(dataset, train_idx), Subset(dataset, val_idx)
