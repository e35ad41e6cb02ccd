"""Spectral warm start: cluster a small sample exactly, then distill it into the head.

The relaxed cut loss is non-convex; from a random start the head often settles on
a wrong cut (a straight-line split of two rings, merged digit classes). Spectral
clustering of a sample of a few thousand rows finds the low cut reliably and
cheaply; cross-entropy on its labels puts the head next to that solution, and the
cut loss then refines it on minibatch subgraphs. Several candidate partitions are
made and one is chosen by the cut with a minimum cluster size
(:func:`spectral_labels`). All label-free. No Ray.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import BATCH_ROWS_PER_CLUSTER, GraphConfig, TrainConfig
from .knn import heat_kernel_graph, nearest, sparse_knn_graph
from .metrics import normalized_cut

__all__ = ["top_eigenpairs", "spectral_embedding", "graph_components", "outside_small_components", "outside_sparse_regions",
           "candidate_partitions", "kmeans_labels", "EMBEDDING_TOL", "SPECTRAL_MAX_K", "ONE_GRAPH_MIN_K",
           "choose_partition", "min_cluster_rows", "WarmCandidates", "warm_candidates", "spectral_labels",
           "DISTILL_BATCH_ROWS", "distill_batch_size", "distill", "warm_start"]


# LOBPCG's residual tolerance for the warm start's embeddings. Their eigenvectors are only rounded
# into clusters, so they need not be exact (choosing k compares eigenvalues and solves tighter):
# 1e-4 against 1e-6 (2026-12-06, seed 0, 41 suite sets) gave the same warm-start labels on 36,
# warm-start ACC within 0.003 on four more and +0.026 on one, in 45% fewer iterations (k = 100:
# 7 s against 11 s); end to end, seeds 0-2, the README's sets moved by -0.004 to +0.002.
EMBEDDING_TOL = 1e-4


def top_eigenpairs(W, count: int, seed: int, tol: float = EMBEDDING_TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (descending) of ``D^-1/2 W D^-1/2`` for W (n, n), their
    eigenvectors (n, count), and ``D^-1/2`` (n,). Eigenvalue ``mu`` of it is ``1 - lambda`` of
    the normalized Laplacian.

    LOBPCG with a block of count + 4 random vectors: well-separated clusters are
    disconnected components whose eigenvalue 1 repeats, and single-vector Lanczos
    (ARPACK ``eigsh``) finds one vector of a repeated eigenvalue: measured, it missed
    one of two rings. Nor shift-invert ARPACK (scikit-learn's choice), which stalled
    for minutes on a table with duplicate rows. Small graphs are solved densely; ``tol``
    is LOBPCG's residual tolerance.
    """
    from scipy.sparse import diags
    from scipy.sparse.linalg import lobpcg

    n = W.shape[0]
    inv_sqrt = 1.0 / np.sqrt(np.maximum(np.asarray(W.sum(1)).ravel(), 1e-12))  # (n,)
    M = diags(inv_sqrt) @ W @ diags(inv_sqrt)
    block = count + 4
    if n <= max(500, 5 * block):
        values, vectors = np.linalg.eigh(M.toarray())
    else:
        start = np.random.default_rng(seed).normal(size=(n, block))
        with warnings.catch_warnings():  # a tolerance not reached still leaves a usable embedding
            warnings.simplefilter("ignore", UserWarning)
            values, vectors = lobpcg(M, start, largest=True, tol=tol, maxiter=500)
    order = np.argsort(values, kind="stable")[::-1][:count]
    return values[order], vectors[:, order], inv_sqrt


def spectral_embedding(W, n_clusters: int, seed: int) -> np.ndarray:
    """The first ``n_clusters`` eigenvectors of the random-walk Laplacian of W (n, n), as (n, k):
    the top eigenvectors of ``D^-1/2 W D^-1/2`` (:func:`top_eigenpairs`) mapped back by ``D^-1/2``."""
    _, vectors, inv_sqrt = top_eigenpairs(W, n_clusters, seed)
    return vectors * inv_sqrt[:, None]


def min_cluster_rows(n_rows: int, n_clusters: int, n_neighbors: int) -> int:
    """Smallest cluster a warm start may keep: one neighbourhood of the graph.

    A group of fewer rows than each row's neighbour count cannot be told apart from
    noise by that graph, yet it often is a loose fragment (outliers, duplicate rows)
    with a near-zero cut. Capped at half the average cluster size for tiny samples.
    """
    return max(1, min(int(n_neighbors), n_rows // (2 * n_clusters)))


# The eigensolver's block of k + 4 vectors costs O(n k^2) a step (measured, 2 cores: LOBPCG 10 s
# a graph at k = 300 on 5,000 rows; 40x that at k = 1,000 on 20,000). Above SPECTRAL_MAX_K clusters
# the candidates are k-means alone; above ONE_GRAPH_MIN_K, the spectral ones use one graph.
SPECTRAL_MAX_K = 300
ONE_GRAPH_MIN_K = 100


def candidate_partitions(X: np.ndarray, graphs: dict, n_clusters: int, seed: int) -> dict:
    """Label-free partitions of X (n, d) to choose the warm start from, ``{name: (n,) labels}``.

    For each graph in ``graphs`` (``{neighbours: W (n, n)}``), its spectral embedding
    rounded three ways (k-means on it, k-means on its unit-length rows as Ng-Jordan-Weiss,
    QR pivoting); and k-means on X itself. None of them wins on every set: a sparser
    graph keeps small real clusters a denser one merges, a denser one does not fall
    apart, and k-means is the right answer where the graph is weak. Above
    ``ONE_GRAPH_MIN_K`` clusters the spectral candidates use the denser graph only; above
    ``SPECTRAL_MAX_K``, k-means alone.
    """
    from sklearn.cluster._spectral import cluster_qr

    found = {"kmeans": kmeans_labels(X, n_clusters, seed)}
    if n_clusters > SPECTRAL_MAX_K:
        return found
    for neighbours, W in graphs.items():
        maps = spectral_embedding(W, n_clusters, seed)  # (n, k)
        unit = maps / np.maximum(np.linalg.norm(maps, axis=1, keepdims=True), 1e-12)
        found[f"spectral{neighbours}+kmeans"] = kmeans_labels(maps, n_clusters, seed)
        found[f"spectral{neighbours}+njw"] = kmeans_labels(unit, n_clusters, seed)
        found[f"spectral{neighbours}+qr"] = cluster_qr(maps)
    return found


def kmeans_labels(X: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """(n,) k-means labels of X (n, d), scikit-learn's k-means++: 10 starts up to ONE_GRAPH_MIN_K
    clusters, one above, where a start costs O(n k log k) (faiss's random seeding instead: ACC 0.84
    against 0.99 at k = 300 on separated blobs)."""
    from sklearn.cluster import k_means

    return k_means(X, n_clusters, n_init=10 if n_clusters <= ONE_GRAPH_MIN_K else 1, random_state=seed)[1]


def choose_partition(W, candidates: dict, n_clusters: int, min_rows: int) -> tuple[str, dict]:
    """The candidate with the lowest normalized cut on W among those whose every cluster has at
    least ``min_rows`` rows (the one whose smallest cluster is largest if none has).

    Modularity, which prefers even clusters, chose better on balanced image sets and split the
    large classes of uneven ones (MNIST with classes 13:1: 0.594 against 0.720; docs/quality.md,
    ``bench/warm_start_choice.py``), so the cut alone decides.

    Returns ``(name, scores)`` with each candidate's ``ncut`` and ``smallest`` cluster. (Sizes
    count the rows of W only: counting the set-aside rows that would join a cluster made a
    valid cluster of a few kept rows of background noise; measured, four blobs on noise.)
    """
    scores = {}
    for name, labels in candidates.items():
        sizes = np.bincount(labels, minlength=n_clusters)
        scores[name] = {"ncut": float(normalized_cut(W, labels)), "smallest": int(sizes.min())}
    valid = [name for name in candidates if scores[name]["smallest"] >= min_rows]
    if valid:
        return min(valid, key=lambda name: scores[name]["ncut"]), scores
    return max(candidates, key=lambda name: scores[name]["smallest"]), scores


@dataclass
class WarmCandidates:
    """The warm start's candidates for a sample of n rows, before one is chosen."""

    core: np.ndarray  # (n,) bool: rows the candidates label; the rest were set aside
    nearest_core: np.ndarray  # (n - core.sum(),) the core row (index into the core rows) each set-aside row joins
    W: object  # (n_core, n_core) sparse: the denser graph every candidate is scored on
    min_rows: int  # smallest cluster a candidate may have (:func:`min_cluster_rows`)
    partitions: dict  # {name: (n_core,) labels}, :func:`candidate_partitions`

    def labels(self, name: str) -> np.ndarray:
        """(n,) the candidate ``name`` over every row, set-aside rows in their nearest core row's cluster."""
        labels = np.empty(len(self.core), dtype=np.int64)
        labels[self.core] = self.partitions[name]
        labels[~self.core] = self.partitions[name][self.nearest_core]
        return labels


def warm_candidates(X: np.ndarray, n_clusters: int, graph: GraphConfig, seed: int) -> WarmCandidates:
    """The candidates :func:`spectral_labels` chooses from, for X (n, d): rows of graph
    components smaller than :func:`min_cluster_rows`, or in sparse regions
    (:func:`outside_sparse_regions`), are set aside first; the rest are partitioned
    (:func:`candidate_partitions`) on the graphs with ``n_neighbors`` and ``warm_neighbors``
    neighbours (the latter alone above ``ONE_GRAPH_MIN_K`` clusters)."""
    def knn(rows, nn):
        return sparse_knn_graph(rows, nn, graph.sigma, graph.local_scaling, graph.scale_neighbor)

    min_rows = min_cluster_rows(len(X), n_clusters, graph.warm_neighbors)
    d2, idx = nearest(X, graph.warm_neighbors, "exact")  # (n, s): one search for the graph and the density
    W = heat_kernel_graph(d2, idx, graph.sigma, graph.local_scaling, graph.scale_neighbor)
    component = graph_components(W)
    reach = np.sqrt(np.maximum(d2[:, -1], 0.0))  # (n,) distance to the farthest of the s neighbours
    core = outside_small_components(component, min_rows, n_clusters) & outside_sparse_regions(reach, component)
    Xc = X[core]
    neighbour_counts = {graph.n_neighbors, graph.warm_neighbors} if n_clusters <= ONE_GRAPH_MIN_K \
        else {graph.warm_neighbors}
    graphs = {nn: W if nn == graph.warm_neighbors and core.all() else knn(Xc, nn) for nn in sorted(neighbour_counts)}
    return WarmCandidates(core, _nearest_rows(Xc, X[~core]), graphs[graph.warm_neighbors], min_rows,
                          candidate_partitions(Xc, graphs, n_clusters, seed))


def spectral_labels(X: np.ndarray, n_clusters: int, graph: GraphConfig, seed: int,
                    evidence: dict | None = None) -> np.ndarray:
    """Warm-start labels (n,) for X (n, d): the chosen one of :func:`warm_candidates`.

    The graphs use the same kernel as the training loss, so the warm start and the
    fine-tuning optimise the same cut; candidates come from the graphs with
    ``n_neighbors`` and ``warm_neighbors`` neighbours and are scored on the latter (the
    sparser one alone falls apart into islands; the denser one alone merged a true
    cluster of 1% of rows on the imbalanced set). Choosing by the lowest cut alone picks loose
    fragments of a few rows (measured: a 2-row cluster on a 569-row table, Ncut 0.002
    against k-means' 0.059 and ACC 0.63 against 0.91), so candidates with a cluster
    smaller than :func:`min_cluster_rows` are passed over, and rows of graph components
    smaller than that, or in sparse regions, are set aside before the candidates are made
    and join their nearest kept row's cluster. ``evidence``, if given, receives the choice
    and every candidate's scores.
    """
    found = warm_candidates(X, n_clusters, graph, seed)
    chosen, scores = choose_partition(found.W, found.partitions, n_clusters, found.min_rows)
    if evidence is not None:
        evidence.update({"chosen": chosen, "min_rows": found.min_rows, "set_aside": int((~found.core).sum()),
                         "candidates": scores})
    return found.labels(chosen)


def _nearest_rows(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(m,) index of the nearest of ``rows`` (n, d) to each of ``queries`` (m, d)."""
    if len(queries) == 0:
        return np.zeros(0, dtype=np.int64)
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=1).fit(rows).kneighbors(queries, return_distance=False)[:, 0]


# A row is in a sparse region when its distance to its n-th neighbour is this many robust
# standard deviations (1.4826 MAD) above the median of its graph component, on a log scale, and
# at least SPARSE_MIN_RATIO times that median: a small real cluster is sparser than a large one
# by its size alone (40 rows beside 1,500 in 8-D: 2.1x the distance, all of it lost at 2x) and
# must be kept, while background noise is 2.5-5x (median, 2-D shapes). Sparse rows are background
# noise only while they are a minority, at most SPARSE_MAX_SHARE of the component.
SPARSE_MADS = 3.0
SPARSE_MIN_RATIO = 3.0
SPARSE_MAX_SHARE = 0.25


def outside_sparse_regions(reach: np.ndarray, component: np.ndarray) -> np.ndarray:
    """(n,) bool: rows not in a region far sparser than the typical row of their connected
    component, given each row's distance to its n-th neighbour ``reach`` (n,) and its
    ``component`` (n,) of the kNN graph with n neighbours.

    Uniform background noise between clusters links them in the kNN graph and, being a
    region of weak edges, is itself cheap to cut off: measured on 2-D shapes, spectral
    clustering made a cluster of noise and merged two blobs (ACC 0.77 against k-means'
    1.00), and two spirals with 5% noise were not told apart (0.61). Such rows are set
    aside like small components. Density is compared within a component, because noise
    only harms where it links clusters, and a separate small cluster is sparse by its
    size alone. A sparse majority is no background: when more than SPARSE_MAX_SHARE of a
    component's rows look sparse (a wide cluster beside a dense one), none of them is.
    """
    radius = np.log(np.maximum(reach, 1e-12))  # (n,) log distance to the n-th neighbour
    kept = np.ones(len(reach), dtype=bool)
    for c in np.unique(component):
        rows = component == c
        centre = np.median(radius[rows])
        spread = 1.4826 * np.median(np.abs(radius[rows] - centre))
        sparse = rows & (radius > centre + max(SPARSE_MADS * spread, np.log(SPARSE_MIN_RATIO)))
        if sparse.sum() <= SPARSE_MAX_SHARE * rows.sum():
            kept &= ~sparse
    return kept


def graph_components(W) -> np.ndarray:
    """(n,) int: the connected component of each row of the symmetric graph W (n, n)."""
    from scipy.sparse.csgraph import connected_components

    return connected_components(W, directed=False)[1]


def outside_small_components(component: np.ndarray, min_rows: int, n_clusters: int) -> np.ndarray:
    """(n,) bool: rows not in a connected component (``component`` (n,), of the kNN graph) of
    fewer than ``min_rows`` rows. Such a component (outliers, a clump of duplicates) has a cut of
    zero, so every candidate would make it a cluster; it is set aside and joins its nearest cluster."""
    sizes = np.bincount(component)
    core = sizes[component] >= min_rows
    n = len(component)
    return core if core.sum() >= max(2 * n_clusters, n // 2) else np.ones(n, dtype=bool)


# Rows per distillation step. Its cross-entropy is a sum over rows with no pairwise term, so
# unlike the cut loss it needs no subgraph of neighbourhoods: 512 rows (3 a cluster at large k,
# never more than the cut's batch) fit the warm start as well as the cut's 1,000 in three quarters
# of the time (4.4 against 6.0 ms a step, 2 cores). Measured over the suite, seeds 0-2: within
# 0.005 ACC on every set; 256 rows lost 0.008-0.010 on two texture tables (docs/quality.md).
DISTILL_BATCH_ROWS = 512


def distill_batch_size(train: TrainConfig, n_clusters: int) -> int:
    """Rows per distillation step: ``DISTILL_BATCH_ROWS``, at least ``BATCH_ROWS_PER_CLUSTER``
    a cluster, at most the cut's ``train.batch_size``."""
    return min(train.batch_size, max(DISTILL_BATCH_ROWS, BATCH_ROWS_PER_CLUSTER * n_clusters))


def distill(head, X: torch.Tensor, labels: torch.Tensor, train: TrainConfig, generator: torch.Generator) -> list[dict]:
    """Fit ``head`` to ``labels`` with cross-entropy for ``train.distill_steps`` Adam steps
    of :func:`distill_batch_size` random rows.

    X is (n, d) scaled features on the head's device, labels (n,) int64 there too.
    Returns the curve (``{"step", "distill_ce"}`` per step; steps are negative so
    that the cut-loss steps that follow start at 0). Every step is run: stopping once the
    head reproduced 99% (or 99.9%) of the labels left it less sharp, and the cut loss then
    moved it off them (measured: wine 0.944 against 0.972, two spirals on noise 0.96 against 1.00).
    """
    opt = torch.optim.Adam(head.parameters(), lr=train.learning_rate)
    n, b = X.shape[0], min(distill_batch_size(train, head.config.n_clusters), X.shape[0])
    head.train()
    curve = []
    for i in range(train.distill_steps):
        idx = torch.randperm(n, generator=generator)[:b].to(X.device)
        opt.zero_grad(set_to_none=True)
        ce = F.cross_entropy(head(X[idx]), labels[idx])
        ce.backward()
        opt.step()
        curve.append({"step": i - train.distill_steps, "distill_ce": ce.item()})
    head.eval()
    return curve


def warm_start(head, X: torch.Tensor, graph: GraphConfig, train: TrainConfig, seed: int, generator,
               Z: torch.Tensor | None = None, evidence: dict | None = None) -> list[dict]:
    """Distill the warm-start labels (:func:`spectral_labels`) of ``train.init_sample`` random rows
    of X (n, d) into ``head``; ``evidence`` receives how they were chosen.

    With a learned embedding Z (n, e), the spectral graph is built on Z (the head
    still reads X). Does nothing (returns ``[]``) for ``init="random"`` or
    ``distill_steps=0``.
    """
    if train.init != "spectral" or train.distill_steps == 0:
        return []
    idx = torch.randperm(X.shape[0], generator=generator)[: train.init_sample].to(X.device)
    sample = X[idx]
    on = sample if Z is None else Z[idx]
    labels = spectral_labels(on.cpu().numpy(), head.config.n_clusters, graph, seed, evidence)
    return distill(head, sample, torch.as_tensor(labels, device=X.device), train, generator)
