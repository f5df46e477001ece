"""Datasets that work offline: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

__all__ = ["FASHION_MNIST_DIR", "fashion_mnist"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def fashion_mnist(split: str, root: Path = FASHION_MNIST_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [n, 1, 28, 28] float in [0, 1], labels [n] int64)`` of the ``train`` (60,000) or
    ``test`` (10,000) split."""
    if split not in _FILES:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', not {split!r}")
    img_f, lab_f = (Path(root) / f for f in _FILES[split])
    if not img_f.exists():
        raise FileNotFoundError(f"Fashion-MNIST is not installed ({img_f} missing): run "
                                "'apt-get install -y dataset-fashion-mnist' (or 'make test')")
    x = torch.from_numpy(_idx(img_f, 16).reshape(-1, 1, 28, 28).copy()).float() / 255.0
    y = torch.from_numpy(_idx(lab_f, 8).astype(np.int64))
    return x, y
