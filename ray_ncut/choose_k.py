"""The number of clusters, chosen label-free: the relative eigengap of the sample graph. No Ray.

On the graph the warm start uses (``warm_neighbors`` neighbours, on the learned code
when there is one), k clusters that the graph separates well give k eigenvalues of
the normalized Laplacian near 0 and a jump after the k-th (von Luxburg, "A tutorial
on spectral clustering", section 8.3). The jump is measured as a ratio,
``(lambda_{k+1} + eps) / (lambda_k + eps)``: the absolute gap ``lambda_{k+1} - lambda_k``
grows with k on curved manifolds (a ring's eigenvalues grow like k^2), and chose k=50
on two rings (measured; docs/quality.md). ``eps = 1e-4`` keeps eigenvalues that are
zero up to the solver's precision (disconnected clusters) from dividing noise by noise;
1e-5 chose the same k on every set of the suite, 1e-3 and above traded rings and moons
for tables. Two guards, both the warm start's own: rows of graph components smaller
than one neighbourhood are set aside first (each such component would add an
eigenvalue of exactly 0, and a cluster), and k stops at the number of
one-neighbourhood clusters the sample can hold.
"""

from __future__ import annotations

import numpy as np

from .config import DEFAULT_K_RANGE, GraphConfig, check_k_bounds
from .knn import sparse_knn_graph
from .warmstart import graph_components, outside_small_components, top_eigenpairs

__all__ = ["DEFAULT_K_RANGE", "check_k_range", "choose_k"]

EIGEN_FLOOR = 1e-4  # eps of the ratio: below it, eigenvalues of the normalized Laplacian count as zero
# The eigenvalues are compared down to EIGEN_FLOOR, so they are solved two decades below it (the warm
# start's looser warmstart.EMBEDDING_TOL changed the choice on 7 blobs searched in 3..5: 3, not 5).
EIGENVALUE_TOL = 1e-6


def check_k_range(k_range, n_rows: int, flag: str = "k_range") -> tuple[int, int]:
    """``(k_min, k_max)`` as ints, or ValueError naming the value: 2 <= min <= max <= rows."""
    k_min, k_max = check_k_bounds(k_range, flag)
    if k_max > n_rows:
        raise ValueError(f"{flag}={k_min},{k_max}: MAX should be <= the number of rows, {n_rows}")
    return k_min, k_max


def choose_k(X: np.ndarray, graph: GraphConfig, k_range: tuple[int, int], seed: int) -> dict:
    """Choose k for the rows X (n, d) (the scaled sample, or its learned code).

    Returns the evidence: ``k`` (the choice), ``range`` (as asked), ``searched`` (the
    range after the size guard), ``gaps`` ({k: relative eigengap after the k-th
    eigenvalue}), ``laplacian_eigenvalues`` (the smallest, ascending), ``margin`` (how far
    the chosen gap is above the runner-up, as a share of it: 0 = a tie), ``set_aside``
    rows, ``at_edge`` (the choice is an end of the searched range that could be moved)
    and a one-line ``reason``.
    """
    k_min, k_max = k_range
    nn = graph.warm_neighbors
    W = sparse_knn_graph(X, nn, graph.sigma, graph.local_scaling, graph.scale_neighbor)
    core = outside_small_components(graph_components(W), nn, k_min)  # (n,) bool
    if not core.all():
        W = W[core][:, core]
    n = W.shape[0]
    top = max(k_min, min(k_max, n // nn))  # every cluster at least one neighbourhood
    mu, _, _ = top_eigenpairs(W, top + 1, seed, tol=EIGENVALUE_TOL)  # (top + 1,) descending
    lam = np.clip(1.0 - mu, 0.0, None)  # the normalized Laplacian's smallest eigenvalues, ascending
    gaps = {k: float((lam[k] + EIGEN_FLOOR) / (lam[k - 1] + EIGEN_FLOOR)) for k in range(k_min, top + 1)}
    ranked = sorted(gaps, key=gaps.get, reverse=True)
    k = ranked[0]
    runner_up = gaps[ranked[1]] if len(ranked) > 1 else 0.0
    margin = (gaps[k] - runner_up) / gaps[k] if gaps[k] > 0 else 0.0
    at_edge = len(ranked) > 1 and ((k == k_min and k_min > 2) or k == top)
    reason = (f"k={k}: largest relative eigengap of the {nn}-neighbour sample graph for k in {k_min}..{top} "
              f"(x{gaps[k]:.3g}; runner-up k={ranked[1] if len(ranked) > 1 else k} x{runner_up:.3g}, margin {margin:.0%})")
    if top < k_max:
        reason += f"; k above {top} not searched: clusters of at least {nn} of {n} sample rows"
    if at_edge:
        reason += f"; k is at the edge of the searched range {k_min}..{top}: widen --k-range to look further"
    return {"k": int(k), "method": "eigengap", "range": [k_min, k_max], "searched": [k_min, top],
            "gaps": {str(j): round(g, 6) for j, g in gaps.items()}, "laplacian_eigenvalues": [round(float(v), 7) for v in lam],
            "margin": round(float(margin), 4), "set_aside": int((~core).sum()), "at_edge": bool(at_edge),
            "reason": reason}
