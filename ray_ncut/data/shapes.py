"""Shape benchmarks generated here: the kinds of set on which clusterers are judged by shape.

Each generator returns ``(X (n, d) float32, y (n,) int64)``; rows of uniform background
noise, where a set has them, are labelled ``NOISE`` (-1) and are not a cluster: score a
clustering on ``y >= 0`` only, with ``k = y.max() + 1``. Seeded, so every run sees the same
rows. Used by ``bench/quality.py``'s shape suite and by the tests that check that a clean
shape is never split in two.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NOISE", "SHAPES", "make_shape", "crossing_lines", "spirals", "blobs_on_noise", "two_densities",
           "nested_circles_3d", "ball_in_shell"]

NOISE = -1


def _with_noise(rng, X, y, share: float):
    """Add ``share`` of len(X) uniform rows over X's bounding box (10% margin), labelled NOISE."""
    m = int(round(share * len(X)))
    if m == 0:
        return X, y
    lo, hi = X.min(0), X.max(0)
    pad = 0.1 * (hi - lo)
    noise = rng.uniform(lo - pad, hi + pad, (m, X.shape[1]))
    return np.vstack([X, noise]), np.concatenate([y, np.full(m, NOISE)])


def _done(X, y):
    return np.asarray(X, np.float32), np.asarray(y, np.int64)


def crossing_lines(n: int = 2000, k: int = 2, width: float = 0.02, noise: float = 0.0, seed: int = 0):
    """``k`` unit-length segments through the origin at evenly spread angles (an X for k = 2),
    Gaussian thickness ``width``; the clusters touch where the lines cross."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    angle = np.pi / 4 + np.pi * y / k
    t = rng.uniform(-0.5, 0.5, n)
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], 1) + rng.normal(0, width, (n, 2))
    return _done(*_with_noise(rng, X, y, noise))


def spirals(n: int = 2000, k: int = 2, turns: float = 1.5, width: float = 0.03, noise: float = 0.0, seed: int = 0):
    """``k`` interleaved arms of an Archimedean spiral, ``turns`` turns each, starting away from the
    centre so that arms do not meet; Gaussian thickness ``width`` (the arms are 1/k apart)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    t = np.sqrt(rng.uniform(0.04, 1.0, n))  # uniform along the arm's length, roughly
    theta = 2 * np.pi * turns * t + 2 * np.pi * y / k
    X = np.stack([t * np.cos(theta), t * np.sin(theta)], 1) + rng.normal(0, width, (n, 2))
    return _done(*_with_noise(rng, X, y, noise))


def blobs_on_noise(n: int = 2000, k: int = 4, std: float = 0.05, noise: float = 0.25, seed: int = 0):
    """``k`` Gaussian blobs on a 3x3 grid of the unit square over uniform background noise."""
    rng = np.random.default_rng(seed)
    centres = (np.stack(np.meshgrid(np.arange(3), np.arange(3)), -1).reshape(-1, 2)[rng.permutation(9)[:k]] + 0.5) / 3
    y = rng.integers(0, k, n)
    X = centres[y] + rng.normal(0, std, (n, 2))
    return _done(*_with_noise(rng, X, y, noise))


def two_densities(n: int = 2000, seed: int = 0):
    """A dense small Gaussian (std 0.1, 70% of rows) beside a wide sparse one (std 0.5), 2-D;
    k-means and mixtures separate them, a kNN graph of one bandwidth is tempted to split the sparse one."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(np.int64)
    X = np.where(y[:, None] == 0, rng.normal(0, 0.1, (n, 2)), rng.normal(0, 0.5, (n, 2)) + [1.6, 0.0])
    return _done(X, y)


def nested_circles_3d(n: int = 2000, width: float = 0.05, seed: int = 0):
    """Two interlocked rings in 3-D (a chain's links): ring 0 in the xy-plane at the origin,
    ring 1 in the xz-plane through ring 0's rim."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = rng.uniform(0, 2 * np.pi, n)
    ring0 = np.stack([np.cos(a), np.sin(a), np.zeros(n)], 1)
    ring1 = np.stack([1 + np.cos(a), np.zeros(n), np.sin(a)], 1)
    X = np.where(y[:, None] == 0, ring0, ring1) + rng.normal(0, width, (n, 3))
    return _done(X, y)


def ball_in_shell(n: int = 2000, seed: int = 0):
    """A dense ball (radius 0.3) inside a spherical shell (radius 1, thickness 0.1), 3-D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = np.where(y == 0, 0.3 * rng.uniform(size=n) ** (1 / 3), 1 + rng.normal(0, 0.05, n))
    return _done(direction * radius[:, None], y)


SHAPES = {
    "crossing-lines": lambda seed=0: crossing_lines(seed=seed),
    "crossing-lines-noise": lambda seed=0: crossing_lines(noise=0.05, seed=seed),
    "three-lines": lambda seed=0: crossing_lines(k=3, seed=seed),
    "spirals": lambda seed=0: spirals(seed=seed),
    "spirals-noise": lambda seed=0: spirals(noise=0.05, seed=seed),
    "three-spirals": lambda seed=0: spirals(k=3, turns=1.0, seed=seed),
    "blobs-on-noise": lambda seed=0: blobs_on_noise(seed=seed),
    "two-densities": lambda seed=0: two_densities(seed=seed),
    "chain-links-3d": lambda seed=0: nested_circles_3d(seed=seed),
    "ball-in-shell-3d": lambda seed=0: ball_in_shell(seed=seed),
}


def make_shape(name: str, seed: int = 0):
    """``(X, y)`` of the shape set ``name`` (one of :data:`SHAPES`)."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape set {name!r}; choose one of {', '.join(SHAPES)}")
    return SHAPES[name](seed=seed)
