"""Static image data sets: scikit-learn digits and Fashion-MNIST (offline), CIFAR-10 and ImageNet (user files).

Nothing here downloads unless the caller passes ``download=True`` (CIFAR-10 only; ImageNet never downloads).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .idx import fashion_mnist_arrays
from .split import per_class_split

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def digits(train: bool, root=None, train_fraction: float = 0.75, split_seed: int = 0) -> Dataset:
    """scikit-learn's 1797 handwritten digits as ``[1, 8, 8]`` images in [0, 1]; a fixed per-class split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    train_idx, test_idx = per_class_split(d.target, train_fraction, rounding="round", seed=split_seed)
    idx = train_idx if train else test_idx
    images = torch.from_numpy(d.images[idx].astype(np.float32) / 16.0).unsqueeze(1)
    return TensorDataset(images, torch.from_numpy(d.target[idx].astype(np.int64)))


def fashion_mnist(train: bool, root=None) -> Dataset:
    """Fashion-MNIST (60000 train / 10000 test) as ``[1, 28, 28]`` images in [0, 1], from the IDX files
    in ``root`` (default: Debian's /usr/share/datasets/fashion-mnist)."""
    images, labels = fashion_mnist_arrays(root)
    part = slice(0, 60000) if train else slice(60000, None)
    x = torch.from_numpy(images[part]).unsqueeze(1)
    return _ScaledUint8(x, torch.from_numpy(labels[part]))


class _ScaledUint8(Dataset):
    """uint8 images kept as they are (small in memory), scaled to float in [0, 1] per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float() / 255.0, int(self.labels[i])


def _require_root(name: str, root, layout: str) -> Path:
    if root is None:
        raise ValueError(f"the {name} data set needs root=<directory> (--data-root); expected layout: {layout}")
    return Path(root)


def cifar10(train: bool, root=None, download: bool = False) -> Dataset:
    """torchvision CIFAR-10 from ``root`` (the ``cifar-10-batches-py`` folder inside it); downloads only with
    ``download=True``. Train: random crop 32 with padding 4, horizontal flip; both normalised."""
    from torchvision import datasets, transforms

    root = _require_root("cifar10", root, "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}")
    normalise = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if train else []
    try:
        return datasets.CIFAR10(str(root), train=train, transform=transforms.Compose(augment + normalise),
                                download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(f"CIFAR-10 not found in {root} (expected {root}/cifar-10-batches-py/...); put the "
                                "extracted python version there, or pass download=True (--download) to fetch it") from e


def imagenet_transform(train: bool):
    """The SEW paper's ImageNet preprocessing: train RandomResizedCrop(224) + flip, test Resize(256) +
    CenterCrop(224); both normalised with the ImageNet mean and std."""
    from torchvision import transforms

    if train:
        steps = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def imagenet(train: bool, root=None) -> Dataset:
    """ImageNet (or any class-per-folder image set) from ``root/train`` and ``root/val`` via torchvision's
    ImageFolder; never downloads."""
    from torchvision import datasets

    root = _require_root("imagenet", root, "<root>/{train,val}/<class>/*.JPEG")
    split = root / ("train" if train else "val")
    if not split.is_dir():
        raise FileNotFoundError(f"ImageNet folder {split} not found; expected <root>/train/<class>/*.JPEG "
                                "and <root>/val/<class>/*.JPEG (val sorted into class folders)")
    return datasets.ImageFolder(str(split), transform=imagenet_transform(train))
