"""The IDX file format of MNIST and Fashion-MNIST (gzip-compressed), and the Fashion-MNIST files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_IMAGES_MAGIC, _LABELS_MAGIC = 0x803, 0x801


def _idx_bytes(path: Path, magic: int, kind: str) -> bytes:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path} is not an IDX {kind} file")
    return data


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image file (MNIST format, gzip) as uint8 [N, H, W]."""
    data = _idx_bytes(path, _IMAGES_MAGIC, "image")
    n, h, w = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, h, w)


def read_idx_labels(path: Path) -> np.ndarray:
    """An IDX label file (MNIST format, gzip) as int64 [N]."""
    data = _idx_bytes(path, _LABELS_MAGIC, "label")
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def fashion_mnist_arrays(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 70000 Fashion-MNIST images (uint8 [N, 28, 28]) and labels, train files first, from the
    ``*-ubyte.gz`` files in ``root`` (default: Debian's /usr/share/datasets/fashion-mnist)."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    names = [f"{s}-{k}-ubyte.gz" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST files {missing} not found in {root}; on Debian/Ubuntu: "
                                "apt-get install dataset-fashion-mnist (or pass root=<dir with the *-ubyte.gz files>)")
    images = np.concatenate([read_idx_images(root / names[0]), read_idx_images(root / names[2])])
    labels = np.concatenate([read_idx_labels(root / names[1]), read_idx_labels(root / names[3])])
    return images, labels
