"""Datasets that work offline: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and
scikit-learn's bundled 8x8 digits (a fast fixture for tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

__all__ = ["FASHION_MNIST_DIR", "digits", "fashion_mnist"]

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


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as ``(images [n, 1, 8, 8] in [0, 1], labels)``: a
    fixed split of 1,597 ``train`` and 200 ``test`` images (every 9th image from 4 on is in test,
    the rest in train, so both splits cover all writers)."""
    if split not in ("train", "test"):
        raise ValueError(f"Digits split must be 'train' or 'test', not {split!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("scikit-learn is not installed: run 'pip install scikit-learn' (or 'make test')") from None
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    test = torch.zeros(len(y), dtype=torch.bool)
    test[4::9] = True
    test = test if split == "test" else ~test
    return x[test], y[test]
