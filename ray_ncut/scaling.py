"""Feature scaling learnt from the data, with streaming statistics.

The statistics are sums (count, sum, sum of squares), so they follow the same
``partial -> merge -> finalize`` pattern as the metrics: a Ray Data pass over a
corpus of any size computes them shard by shard without loading it whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SCALINGS

# "auto" scaling: at and above this many features, rows are compared by direction.
AUTO_L2_MIN_DIM = 16

__all__ = ["MomentSums", "moments_partial", "merge_moments", "FeatureScaler"]


@dataclass
class MomentSums:
    """Per-feature ``count``, ``total`` (sum) and ``total_sq`` (sum of squares), float64."""

    count: int
    total: np.ndarray  # (d,)
    total_sq: np.ndarray  # (d,)


def moments_partial(X: np.ndarray) -> MomentSums:
    X = np.asarray(X, dtype=np.float64)
    return MomentSums(X.shape[0], X.sum(0), (X * X).sum(0))


def merge_moments(a: MomentSums | None, b: MomentSums | None) -> MomentSums | None:
    if a is None or b is None:
        return b if a is None else a
    return MomentSums(a.count + b.count, a.total + b.total, a.total_sq + b.total_sq)


@dataclass
class FeatureScaler:
    """Maps raw features to the space the head is trained in.

    mode
        ``"auto"`` (resolved when fitted): ``"l2"`` for ``d >= 16`` features (pixels,
        embeddings: the direction carries the class), ``"standard"`` below (coordinates);
        ``"standard"``: subtract the mean, divide by the standard deviation
        (constant features are left unscaled); ``"l2"``: divide each row by its
        Euclidean norm (no statistics; the choice for pixel-like features, where
        the direction carries the class); ``"none"``: identity.
    """

    mode: str = "standard"
    mean: list | None = None
    std: list | None = None

    def __post_init__(self):
        if self.mode not in SCALINGS:
            raise ValueError(f"scaling={self.mode!r} should be one of {SCALINGS}")

    @classmethod
    def from_moments(cls, mode: str, sums: MomentSums) -> "FeatureScaler":
        if mode == "auto":
            mode = "l2" if len(sums.total) >= AUTO_L2_MIN_DIM else "standard"
        if mode != "standard":
            return cls(mode)
        mean = sums.total / sums.count
        var = np.maximum(sums.total_sq / sums.count - mean * mean, 0.0)
        std = np.sqrt(var)
        std[std < 1e-12] = 1.0
        return cls(mode, mean.tolist(), std.tolist())

    @classmethod
    def fit(cls, mode: str, X: np.ndarray) -> "FeatureScaler":
        return cls.from_moments(mode, moments_partial(X))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, d) float32."""
        X = np.asarray(X, dtype=np.float32)
        if self.mode == "standard":
            return (X - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.mode == "l2":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            return X / np.maximum(norms, 1e-12)
        return X

    def to_dict(self) -> dict:
        return {"mode": self.mode, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureScaler":
        return cls(d["mode"], d.get("mean"), d.get("std"))
