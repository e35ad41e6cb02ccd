"""The kNN graphs over a whole sample, and the normalized cut of a labelling on one. No Ray.

Every such graph is the system's one kNN heat-kernel graph (:func:`ray_ncut.affinity.heat_kernel`
on each row's nearest other rows, symmetrised as ``(A + A^T) / 2``), whichever search finds
the neighbours (:func:`nearest`, ``backend``): ``"exact"`` (scikit-learn's exact search: the
warm start's and k selection's graphs of a few thousand rows) or ``"faiss"`` (flat below
``IVF_MIN_ROWS`` rows, IVF above, on the GPU where a GPU build sees one: the metric's graph).
:func:`sparse_knn_graph` returns it as a scipy matrix; :func:`knn_graph` holds it as shards
whose per-cluster cut / volume / size sums (:func:`ray_ncut.metrics.cut_partial`) add up to
exactly the one-shot result. (The minibatch graphs of training are built in torch by
:func:`ray_ncut.affinity.knn_affinity`.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .affinity import heat_kernel, median_knn_sigma
from .metrics import CutSums, cut_partial, cut_scores, merge_cut

__all__ = ["BACKENDS", "nearest", "sparse_knn_graph", "heat_kernel_graph",
           "build_index", "default_metric_sample", "knn_search", "knn_graph",
           "knn_cut", "KnnGraph", "neighbour_table"]

log = logging.getLogger(__name__)

# Above this many indexed rows an IVF index replaces the exact flat one (measured on
# 100k x 2: flat 3.8 s, IVF 0.4 s with recall@10 ~0.99; on 70k x 784: 34 s vs 13 s).
IVF_MIN_ROWS = 20_000
# The metric's graph is built on a sample of at most this many rows, and fewer where
# the exact search would cost more than EXACT_SEARCH_BUDGET multiply-adds (n * n * d):
# about 3 s on 2 cores (measured: 70k x 784 takes 34 s, as long as the rest of a job).
METRIC_SAMPLE_MAX = 100_000
EXACT_SEARCH_BUDGET = 2.5e11
BACKENDS = ("exact", "faiss")


def _gpu_usable(faiss) -> bool:
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001 - a CPU build may lack the symbol entirely
        return False


def build_index(X: np.ndarray, use_gpu: str | bool = "auto"):
    """A faiss L2 index over X (n, d) float32: exact below ``IVF_MIN_ROWS`` rows, IVF above;
    moved to the GPU when a GPU build sees a device, else left on the CPU.

    Returns ``(index, description)``.
    """
    import faiss

    n, d = X.shape
    if n < IVF_MIN_ROWS:
        index, kind = faiss.IndexFlatL2(d), "Flat"
    else:
        nlist = int(4 * np.sqrt(n))
        index, kind = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist), f"IVF{nlist}"
        index.nprobe = 8
    want_gpu = _gpu_usable(faiss) if use_gpu == "auto" else bool(use_gpu)
    if want_gpu:
        try:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            kind += " (GPU)"
        except Exception as e:  # noqa: BLE001 - fall back, loudly
            log.warning("faiss GPU index unavailable (%s); using the CPU index", e)
    if not index.is_trained:
        train = X[np.random.default_rng(0).choice(n, min(n, 256 * index.nlist), replace=False)]
        index.train(train)
    index.add(X)
    return index, kind


def default_metric_sample(n_features: int) -> int:
    """Rows of the uniform sample the metric's kNN graph is built on: 100k for low-dimensional
    data, fewer in high dimensions (17,857 at d=784) so that the exact search stays cheap."""
    return int(min(METRIC_SAMPLE_MAX, (EXACT_SEARCH_BUDGET / max(n_features, 1)) ** 0.5))


def knn_search(index, Q: np.ndarray, query_ids: np.ndarray, n_neighbors: int):
    """Neighbours of the query rows Q (m, d) among the indexed rows, excluding each query itself
    (``query_ids`` are the queries' row numbers in the index). Returns ``(d2, idx)``, each (m, s)."""
    d2, idx = index.search(np.ascontiguousarray(Q, dtype=np.float32), n_neighbors + 1)
    return _drop_self(d2, idx, query_ids, n_neighbors)


def _drop_self(d2: np.ndarray, idx: np.ndarray, query_ids: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Of s + 1 found neighbours, drop the query itself (or, where duplicates hid it, the farthest)."""
    is_self = idx == query_ids[:, None]
    keep = ~is_self
    keep[~is_self.any(1), -1] = False
    m = len(idx)
    return np.maximum(d2[keep].reshape(m, s), 0.0), idx[keep].reshape(m, s)


def nearest(X: np.ndarray, n_neighbors: int, backend: str = "faiss") -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n_neighbors`` nearest other rows of X (n, d): ``(d2, idx)``, each (n, s), squared
    distances ascending. ``backend``: "exact" (scikit-learn) or "faiss" (see the module)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} should be one of {BACKENDS}")
    n = len(X)
    s = min(n_neighbors, n - 1)
    if backend == "faiss":
        X = np.ascontiguousarray(X, dtype=np.float32)
        return knn_search(build_index(X)[0], X, np.arange(n), s)
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=s + 1).fit(X).kneighbors(X)
    return _drop_self(dist.astype(np.float64) ** 2, idx, np.arange(n), s)


def neighbour_table(X: np.ndarray, n_neighbors: int) -> np.ndarray:
    """(n, s) row indices of each row's s nearest other rows of X (n, d); a training sample's
    neighbours, for minibatches of real neighbourhoods and the Siamese positives."""
    return nearest(X, n_neighbors, "faiss")[1].astype(np.int64)


def sparse_knn_graph(X, n_neighbors: int = 10, sigma: float | str = "auto", local_scaling: bool = False,
                     scale_neighbor: int = 7, backend: str = "exact"):
    """The kNN heat-kernel graph of X (n, d) as a symmetric scipy CSR matrix (n, n), ``(A + A^T) / 2``.

    Suits a sample (10^3 - 10^5 rows): the warm start, the choice of k, tests against brute force.
    """
    d2, idx = nearest(X, n_neighbors, backend)
    return heat_kernel_graph(d2, idx, sigma, local_scaling, scale_neighbor)


def heat_kernel_graph(d2: np.ndarray, idx: np.ndarray, sigma: float | str = "auto", local_scaling: bool = False,
                      scale_neighbor: int = 7):
    """:func:`sparse_knn_graph` from neighbours already found (``d2``, ``idx``, each (n, s), as
    :func:`nearest` returns them), for a caller that needs the distances too."""
    import scipy.sparse as sp

    n, s = idx.shape
    weights = heat_kernel(torch.from_numpy(d2.astype(np.float64)), torch.from_numpy(idx), sigma, local_scaling,
                          scale_neighbor).numpy()
    A = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), s), idx.ravel())), shape=(n, n))
    return ((A + A.T) * 0.5).tocsr()


@dataclass
class KnnGraph:
    """The kNN heat-kernel graph of n rows, held as per-shard edge lists.

    ``shards[i] = (rows (m,), idx (m, s), w (m, s))``: the rows of shard i, their
    neighbours and the edge weights. :meth:`cut` scores any labelling of the rows
    on it, shard by shard, so one graph serves several labellings.
    """

    shards: list
    info: dict  # rows, n_neighbors, sigma, index, shards

    def cut(self, cluster: np.ndarray, n_clusters: int) -> dict:
        """Normalized and ratio cut of ``cluster`` (n,): ``{"ncut", "rcut", "cluster_sizes", "graph"}``."""
        total: CutSums | None = None
        for rows, idx, w in self.shards:
            src = np.repeat(cluster[rows], idx.shape[1])
            part = cut_partial(src, cluster[idx.ravel()], w.ravel(), cluster[rows], n_clusters)
            total = merge_cut(total, part)
        return {**cut_scores(total), "graph": dict(self.info)}


def knn_graph(Z: np.ndarray, n_neighbors: int = 10, scale_neighbor: int = 7, n_shards: int = 8,
              use_gpu: str | bool = "auto") -> KnnGraph:
    """The kNN heat-kernel graph of Z (n, d), queried in ``n_shards`` shards.

    sigma is the global automatic bandwidth (median squared distance to the
    ``scale_neighbor``-th neighbour), so every shard weighs its edges alike and the
    per-shard cut sums merge exactly.
    """
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n = len(Z)
    s = min(n_neighbors, n - 1)
    index, kind = build_index(Z, use_gpu)
    parts = np.array_split(np.arange(n), max(1, min(n_shards, n)))
    found = [knn_search(index, Z[rows], rows, s) for rows in parts]
    all_d2 = torch.from_numpy(np.concatenate([d2 for d2, _ in found]).astype(np.float64))  # (n, s)
    sigma = float(median_knn_sigma(all_d2, scale_neighbor))  # the batch graphs' rule, on the whole graph
    shards = [(rows, idx, heat_kernel(torch.from_numpy(d2.astype(np.float64)), torch.from_numpy(idx), sigma).numpy())
              for rows, (d2, idx) in zip(parts, found)]
    return KnnGraph(shards, {"rows": n, "n_neighbors": s, "sigma": sigma, "index": kind, "shards": len(parts)})


def knn_cut(
    Z: np.ndarray,
    cluster: np.ndarray,
    n_clusters: int,
    n_neighbors: int = 10,
    scale_neighbor: int = 7,
    n_shards: int = 8,
    use_gpu: str | bool = "auto",
) -> dict:
    """Normalized and ratio cut of ``cluster`` (n,) on the kNN heat-kernel graph of Z (n, d)
    (:func:`knn_graph`). Returns ``{"ncut", "rcut", "cluster_sizes", "graph": {...}}``."""
    return knn_graph(Z, n_neighbors, scale_neighbor, n_shards, use_gpu).cut(cluster, n_clusters)
