"""Built-in data sets, so every command runs with no data of the user's.

``builtin:NAME?key=value&...`` names one:

=================  ==========================================================
rings              two concentric noisy circles, 2-D, 2 clusters (``n``, ``noise``)
moons              two interleaved half-moons, 2-D, 2 clusters (``n``, ``noise``)
blobs              Gaussian mixture (``n``, ``d``, ``k``, ``std``)
digits             scikit-learn's 1,797 8x8 digits, 64-D, 10 classes
fashion-mnist      70,000 28x28 images, 784-D, 10 classes (Debian ``dataset-fashion-mnist``)
=================  ==========================================================

Synthetic sets of any size are generated in fixed-size *chunks*, each from its own
seed, so a row's features depend only on ``(seed, row index)``: a Ray read task
can generate its chunk alone and every run sees the same data. All take ``seed``.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np

__all__ = ["BuiltinSpec", "parse_builtin", "builtin_chunks", "load_builtin", "BUILTIN_NAMES", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CHUNK_ROWS = 100_000
# The real sets are loaded whole (and cached per process) and served in smaller
# chunks, so that a Ray job spreads their 70k rows over several tasks.
REAL_CHUNK_ROWS = 10_000
BUILTIN_NAMES = ("rings", "moons", "blobs", "digits", "fashion-mnist")
_SYNTHETIC = ("rings", "moons", "blobs")
_DEFAULTS = {
    "rings": {"n": 10_000, "noise": 0.05},
    "moons": {"n": 10_000, "noise": 0.05},
    "blobs": {"n": 10_000, "d": 16, "k": 10, "std": 1.0},
}


@dataclass
class BuiltinSpec:
    name: str
    params: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        if self.name in _SYNTHETIC:
            return int(self.params["n"])
        return {"digits": 1797, "fashion-mnist": 70_000}[self.name]

    @property
    def chunk_rows(self) -> int:
        return CHUNK_ROWS if self.name in _SYNTHETIC else REAL_CHUNK_ROWS

    @property
    def n_classes(self) -> int:
        return int(self.params["k"]) if self.name == "blobs" else {"rings": 2, "moons": 2}.get(self.name, 10)

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"builtin:{self.name}" + (f"?{query}" if query else "")


def parse_builtin(uri: str) -> BuiltinSpec:
    """``"builtin:rings?n=1000000"`` -> ``BuiltinSpec("rings", {"n": 1000000, "noise": 0.05, "seed": 0})``."""
    body = uri[len("builtin:") :] if uri.startswith("builtin:") else uri
    name, _, query = body.partition("?")
    if name not in BUILTIN_NAMES:
        raise ValueError(f"unknown built-in data set {name!r}; choose one of {', '.join(BUILTIN_NAMES)}")
    params = {"seed": 0, **_DEFAULTS.get(name, {})}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in params:
            raise ValueError(f"builtin:{name} has no parameter {key!r}; it takes {', '.join(sorted(params))}")
        try:
            params[key] = type(params[key])(float(value)) if isinstance(params[key], int) else float(value)
        except ValueError:
            raise ValueError(f"builtin:{name} parameter {key}={value!r} is not a number") from None
    for key in ("n", "d", "k"):
        if key in params and params[key] < (2 if key == "k" else 1):
            raise ValueError(f"builtin:{name} parameter {key}={params[key]} is too small")
    return BuiltinSpec(name, params)


def _rings(rng, n, noise):
    y = rng.integers(0, 2, n)
    theta = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(y == 0, 1.0, 0.5)
    X = np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1) + rng.normal(0, noise, (n, 2))
    return X, y


def _moons(rng, n, noise):
    y = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    X = np.where(
        y[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    ) + rng.normal(0, noise, (n, 2))
    return X, y


def _blob_centres(params) -> np.ndarray:
    rng = np.random.default_rng([int(params["seed"]), 7])
    # Centres spread so that clusters of unit std overlap little but not zero in d dims.
    return rng.normal(0, 4.0, (int(params["k"]), int(params["d"])))


def _blobs(rng, n, params, centres):
    y = rng.integers(0, len(centres), n)
    X = centres[y] + rng.normal(0, params["std"], (n, centres.shape[1]))
    return X, y


def builtin_chunks(spec: BuiltinSpec, chunk_rows: int | None = None):
    """Yield ``(start_row, X, y)`` chunks of ``chunk_rows`` rows (default ``spec.chunk_rows``)
    covering the data set in row order.

    Synthetic chunks are generated independently (chunk i from seed ``(seed, i)``),
    so any subset of chunks can be generated on its own; X is float32 (rows, d),
    y int64 (rows,). Chunks of the real sets are read-only views of a cached array.
    """
    chunk_rows = chunk_rows or spec.chunk_rows
    if spec.name not in _SYNTHETIC:
        X, y = _load_real(spec.name)
        for start in range(0, len(X), chunk_rows):
            yield start, X[start : start + chunk_rows], y[start : start + chunk_rows]
        return
    n = spec.n_rows
    centres = _blob_centres(spec.params) if spec.name == "blobs" else None
    for i, start in enumerate(range(0, n, chunk_rows)):
        yield start, *synthetic_chunk(spec, i, chunk_rows, centres)


def synthetic_chunk(spec: BuiltinSpec, index: int, chunk_rows: int = CHUNK_ROWS, centres=None):
    """The ``index``-th chunk of a synthetic data set: ``(X float32, y int64)``."""
    start = index * chunk_rows
    rows = min(chunk_rows, spec.n_rows - start)
    rng = np.random.default_rng([int(spec.params["seed"]), index])
    p = spec.params
    if spec.name == "rings":
        X, y = _rings(rng, rows, p["noise"])
    elif spec.name == "moons":
        X, y = _moons(rng, rows, p["noise"])
    else:
        X, y = _blobs(rng, rows, p, _blob_centres(p) if centres is None else centres)
    return X.astype(np.float32), y.astype(np.int64)


def load_builtin(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole data set in memory: ``(X (n, d) float32, y (n,) int64)``."""
    chunks = list(builtin_chunks(parse_builtin(uri)))
    return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks])


@functools.lru_cache(maxsize=2)
def _load_real(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Loaded once per process (a Ray worker serves many chunks); read-only, as it is shared."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, y = X.astype(np.float32), y.astype(np.int64)
    else:
        X, y = _load_fashion_mnist()
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 images (train then test), pixels 0-255 as float32, flattened to 784."""
    files = [f"{part}-{kind}-idx{nd}-ubyte.gz" for part in ("train", "t10k") for kind, nd in (("images", 3), ("labels", 1))]
    missing = [f for f in files if not os.path.exists(os.path.join(FASHION_MNIST_DIR, f))]
    if missing:
        raise ValueError(
            f"builtin:fashion-mnist needs the Debian package dataset-fashion-mnist "
            f"({os.path.join(FASHION_MNIST_DIR, missing[0])} not found); "
            f"install it with: sudo apt-get install dataset-fashion-mnist"
        )
    arrays = [_read_idx(os.path.join(FASHION_MNIST_DIR, f)) for f in files]
    X = np.concatenate([arrays[0], arrays[2]]).reshape(-1, 784).astype(np.float32)
    y = np.concatenate([arrays[1], arrays[3]]).astype(np.int64)
    return X, y
