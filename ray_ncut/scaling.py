"""Feature scaling learnt from the data, with streaming statistics.

The statistics are sums (count, sum, sum of squares), so they follow the same
``partial -> merge -> finalize`` pattern as the metrics: a Ray Data pass over a
corpus of any size computes them shard by shard without loading it whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SCALINGS

# "auto" scaling compares rows by direction ("l2") only when there are at least
# AUTO_L2_MIN_DIM features and they share one scale: no non-constant feature's
# standard deviation exceeds AUTO_SHARED_SCALE times the median one (pixels,
# embeddings, counts in one unit). Anything else (tables in mixed units, and
# low-dimensional data, where a row's norm is a large part of what it says) is
# standardised. Measured on bench/quality.py's sets: the ratio is 1.1-3.1 for the
# images and embeddings, 6.3 to 7,800 for the tables of 16+ features. A limit: the
# median is the typical scale, so a table with more than half of its columns in the
# larger of two units reads as sharing one scale.
AUTO_L2_MIN_DIM = 16
AUTO_SHARED_SCALE = 4.0

__all__ = ["MomentSums", "moments_partial", "merge_moments", "FeatureScaler", "auto_mode"]


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


def auto_mode(std: np.ndarray) -> str:
    """``"l2"`` or ``"standard"`` from the per-feature standard deviations (d,); see AUTO_SHARED_SCALE."""
    varying = std[std > 1e-9 * max(float(std.max()), 1e-300)]
    if len(std) < AUTO_L2_MIN_DIM or len(varying) == 0:
        return "standard"
    return "l2" if varying.max() <= AUTO_SHARED_SCALE * np.median(varying) else "standard"


@dataclass
class FeatureScaler:
    """Maps raw features to the space the head is trained in.

    mode
        ``"auto"`` (resolved when fitted, :func:`auto_mode`): ``"l2"`` for 16 or more
        features that share one scale (pixels, embeddings: the direction carries the
        class), ``"standard"`` otherwise (tables in mixed units, coordinates);
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
        mean = sums.total / sums.count
        std = np.sqrt(np.maximum(sums.total_sq / sums.count - mean * mean, 0.0))
        if mode == "auto":
            mode = auto_mode(std)
        if mode != "standard":
            return cls(mode)
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
