"""Clustering metrics written as ``partial -> merge -> finalize``.

Pure numpy/scipy, no Ray. Every metric here is a function of sums over rows (a
contingency table) or over edges (per-cluster cut and volume), so it can be
computed on any number of shards and reduced *exactly*: ``merge`` is addition.

Typical use, one shard at a time::

    part = None
    for y_true, y_pred in shards:
        part = merge_contingency(part, contingency_partial(y_true, y_pred))
    scores = clustering_scores(part)        # {"acc", "nmi", "ari", "n"}

One-shot helpers (:func:`accuracy`, :func:`nmi`, :func:`ari`, :func:`normalized_cut`)
call the same code on a single shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import comb

__all__ = [
    "Contingency",
    "contingency_partial",
    "merge_contingency",
    "clustering_scores",
    "accuracy",
    "nmi",
    "ari",
    "CutSums",
    "cut_partial",
    "merge_cut",
    "cut_scores",
    "normalized_cut",
    "ratio_cut",
]


# --------------------------------------------------------------------------- contingency


@dataclass
class Contingency:
    """Counts ``table[i, j]`` of rows with class ``classes[i]`` and cluster ``clusters[j]``."""

    classes: np.ndarray  # (C,) sorted unique ground-truth values
    clusters: np.ndarray  # (K,) sorted unique cluster ids
    table: np.ndarray  # (C, K) int64

    @property
    def n(self) -> int:
        return int(self.table.sum())


def contingency_partial(y_true, y_pred) -> Contingency:
    """Contingency table of one shard. Labels may be any sortable values (ints, strings)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} and {y_pred.shape}")
    classes, ci = np.unique(y_true, return_inverse=True)
    clusters, ki = np.unique(y_pred, return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    np.add.at(table, (ci, ki), 1)
    return Contingency(classes, clusters, table)


def _embed(values: np.ndarray, into: np.ndarray) -> np.ndarray:
    return np.searchsorted(into, values)


def merge_contingency(a: Contingency | None, b: Contingency | None) -> Contingency | None:
    """Sum of two contingency tables over the union of their classes and clusters."""
    if a is None or b is None:
        return b if a is None else a
    classes = np.union1d(a.classes, b.classes)
    clusters = np.union1d(a.clusters, b.clusters)
    table = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    for part in (a, b):
        rows, cols = _embed(part.classes, classes), _embed(part.clusters, clusters)
        table[np.ix_(rows, cols)] += part.table
    return Contingency(classes, clusters, table)


def _entropy(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def _acc(table: np.ndarray) -> float:
    # Best one-to-one map between clusters and classes (Hungarian, maximising matches).
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def _nmi(table: np.ndarray) -> float:
    # Arithmetic-mean normalisation, scikit-learn's default.
    n = table.sum()
    a, b = table.sum(1), table.sum(0)
    h_true, h_pred = _entropy(a, n), _entropy(b, n)
    if h_true == 0.0 or h_pred == 0.0:
        return 1.0 if h_true == h_pred else 0.0
    nz = table > 0
    pij = table[nz] / n
    mi = float((pij * (np.log(table[nz] * n) - np.log(np.outer(a, b)[nz]))).sum())
    return max(mi, 0.0) / (0.5 * (h_true + h_pred))


def _ari(table: np.ndarray) -> float:
    n = table.sum()
    sum_cells = comb(table, 2).sum()
    sum_a, sum_b = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = sum_a * sum_b / comb(n, 2) if n > 1 else 0.0
    max_index = 0.5 * (sum_a + sum_b)
    if max_index == expected:  # both labellings trivial (one cluster, or all singletons)
        return 1.0
    return float((sum_cells - expected) / (max_index - expected))


def clustering_scores(part: Contingency) -> dict:
    """ACC, NMI and ARI from a (merged) contingency table, plus the row count."""
    t = part.table
    return {"acc": _acc(t), "nmi": _nmi(t), "ari": _ari(t), "n": part.n}


def accuracy(y_true, y_pred) -> float:
    """Clustering accuracy under the best cluster-to-class matching."""
    return _acc(contingency_partial(y_true, y_pred).table)


def nmi(y_true, y_pred) -> float:
    """Normalized mutual information (arithmetic normalisation)."""
    return _nmi(contingency_partial(y_true, y_pred).table)


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index."""
    return _ari(contingency_partial(y_true, y_pred).table)


# --------------------------------------------------------------------------- graph cuts


@dataclass
class CutSums:
    """Per-cluster sums over a graph: ``cut[l]`` (weight leaving cluster l),
    ``volume[l]`` (sum of degrees in l) and ``size[l]`` (nodes in l), each (k,)."""

    cut: np.ndarray
    volume: np.ndarray
    size: np.ndarray


def cut_partial(src_cluster, dst_cluster, weight, node_cluster, n_clusters: int) -> CutSums:
    """Cut, volume and size sums of one shard of a graph.

    The graph is given as *directed* edges ``src -> dst`` with weights A; its
    symmetric form is ``W = (A + A^T) / 2`` (the form :func:`ray_ncut.affinity.knn_affinity`
    builds). Under W each directed edge adds ``w/2`` to the volume of both end
    clusters and, when they differ, ``w/2`` to both clusters' cuts. A shard may
    therefore hold any subset of the edges and any subset of the nodes, as long as
    every edge and every node is in exactly one shard.

    Parameters
    ----------
    src_cluster, dst_cluster : int arrays of shape (E,)
        Cluster of each edge's two ends.
    weight : float array of shape (E,)
    node_cluster : int array of shape (N,)
        Cluster of each node of this shard (for the sizes used by the ratio cut).
    n_clusters : int
        k; cluster ids are in ``[0, k)``.
    """
    src = np.asarray(src_cluster, dtype=np.int64)
    dst = np.asarray(dst_cluster, dtype=np.int64)
    half = 0.5 * np.asarray(weight, dtype=np.float64)
    volume = np.bincount(src, half, n_clusters) + np.bincount(dst, half, n_clusters)
    crossing = src != dst
    cut = np.bincount(src[crossing], half[crossing], n_clusters) + np.bincount(
        dst[crossing], half[crossing], n_clusters
    )
    size = np.bincount(np.asarray(node_cluster, dtype=np.int64), minlength=n_clusters).astype(np.float64)
    return CutSums(cut, volume, size)


def merge_cut(a: CutSums | None, b: CutSums | None) -> CutSums | None:
    """Sum of two shards' cut sums."""
    if a is None or b is None:
        return b if a is None else a
    return CutSums(a.cut + b.cut, a.volume + b.volume, a.size + b.size)


def cut_scores(part: CutSums) -> dict:
    """Normalized cut ``sum_l cut_l / vol_l`` and ratio cut ``sum_l cut_l / |S_l|``.

    Empty clusters (volume or size zero) contribute nothing, as in the discrete
    definition where only the non-empty parts of the partition are summed.
    """
    vol_ok, size_ok = part.volume > 0, part.size > 0
    ncut = float((part.cut[vol_ok] / part.volume[vol_ok]).sum())
    rcut = float((part.cut[size_ok] / part.size[size_ok]).sum())
    return {"ncut": ncut, "rcut": rcut, "cluster_sizes": part.size.astype(np.int64).tolist()}


def _graph_cut_sums(W, labels) -> CutSums:
    import scipy.sparse as sp

    labels = np.asarray(labels, dtype=np.int64)
    coo = sp.coo_matrix(W)
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    return cut_partial(labels[coo.row], labels[coo.col], coo.data, labels, n_clusters)


def normalized_cut(W, labels) -> float:
    """Normalized cut of a hard labelling on a graph W (dense or scipy sparse, (n, n)).

    W is symmetrised as ``(W + W^T) / 2``; for an already symmetric W that is W itself.
    """
    return cut_scores(_graph_cut_sums(W, labels))["ncut"]


def ratio_cut(W, labels) -> float:
    """Ratio cut of a hard labelling on a graph W; see :func:`normalized_cut`."""
    return cut_scores(_graph_cut_sums(W, labels))["rcut"]
