"""Affinity graphs inside a minibatch: kNN heat kernel, sparsified and symmetrised.

Pure torch, no Ray. Every function here takes an already-validated batch ``x`` of
shape (B, d) and returns a dense (B, B) affinity ``W`` that is symmetric,
non-negative and has a zero diagonal -- the notation of ``shared/papers/README.md``.
Dense is the right representation at minibatch size (B ~ 1000): the loss needs
``W @ Y`` and the (B, B) distance matrix exists anyway for the kNN search.
"""

from __future__ import annotations

import torch

__all__ = ["squared_distances", "knn_affinity", "heat_kernel", "median_knn_sigma"]


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances, (B, d) -> (B, B), clamped at zero."""
    sq = (x * x).sum(1)  # (B,)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)  # (B, B)
    return d2.clamp_min_(0.0)


def median_knn_sigma(knn_d2: torch.Tensor, scale_neighbor: int) -> torch.Tensor:
    """Global bandwidth: sigma^2 = median squared distance to the ``scale_neighbor``-th neighbour.

    ``knn_d2`` is (B, s) sorted ascending; the column used is clipped to s.
    Returns sigma (a 0-d tensor), never zero (duplicate points would make it so).
    """
    col = min(scale_neighbor, knn_d2.shape[1]) - 1
    sigma2 = knn_d2[:, col].median()
    return sigma2.clamp_min(1e-12).sqrt()


def knn_affinity(
    x: torch.Tensor,
    n_neighbors: int = 10,
    sigma: float | str = "auto",
    local_scaling: bool = False,
    scale_neighbor: int = 7,
) -> torch.Tensor:
    """Heat-kernel affinity restricted to each point's ``n_neighbors`` nearest neighbours.

    Parameters
    ----------
    x : Tensor of shape (B, d)
        Batch of (scaled) feature vectors.
    n_neighbors : int
        s, the number of largest affinities kept per row before symmetrising.
    sigma : float or "auto"
        Kernel bandwidth. ``"auto"`` sets sigma^2 to the median squared distance to
        the ``scale_neighbor``-th neighbour inside the batch, so no user has to
        guess sigma for their feature scale.
    local_scaling : bool
        Self-tuning kernel (Zelnik-Manor & Perona): ``exp(-d_ij^2 / (2 s_i s_j))`` with
        s_i the distance from i to its ``scale_neighbor``-th neighbour. Overrides ``sigma``.
    scale_neighbor : int
        Which neighbour sets the bandwidth (7 in the self-tuning paper).

    Returns
    -------
    W : Tensor of shape (B, B)
        ``(A + A^T) / 2`` where A keeps the s nearest entries of each row: symmetric,
        non-negative, zero diagonal. The averaged form (not max) is the one the
        sharded cut metrics in :mod:`ray_ncut.metrics` decompose edge by edge.
    """
    B = x.shape[0]
    s = min(n_neighbors, B - 1)
    d2 = squared_distances(x)  # (B, B)
    d2.fill_diagonal_(float("inf"))
    knn_d2, knn_idx = torch.topk(d2, s, dim=1, largest=False)  # (B, s), ascending
    weights = heat_kernel(knn_d2, knn_idx, sigma, local_scaling, scale_neighbor)  # (B, s)
    A = torch.zeros(B, B, dtype=x.dtype, device=x.device)
    A.scatter_(1, knn_idx, weights)
    return 0.5 * (A + A.T)


def heat_kernel(
    knn_d2: torch.Tensor,
    knn_idx: torch.Tensor,
    sigma: float | str = "auto",
    local_scaling: bool = False,
    scale_neighbor: int = 7,
) -> torch.Tensor:
    """Heat-kernel weights of each point's nearest neighbours.

    Shared by the minibatch affinity and by graphs built with an index over a
    whole sample or corpus, so that every graph in the system uses one kernel.

    Parameters
    ----------
    knn_d2 : Tensor of shape (n, s)
        Squared distances to the s nearest neighbours (self excluded), ascending.
    knn_idx : LongTensor of shape (n, s)
        Their row indices (used by local scaling).
    sigma, local_scaling, scale_neighbor
        As in :func:`knn_affinity`.

    Returns
    -------
    Tensor of shape (n, s), the weights ``exp(-d^2 / (2 sigma^2))`` or, with local
    scaling, ``exp(-d^2 / (2 s_i s_j))``.
    """
    if local_scaling:
        col = min(scale_neighbor, knn_d2.shape[1]) - 1
        local = knn_d2[:, col].clamp_min(1e-12).sqrt()  # (n,)
        denom = 2.0 * local[:, None] * local[knn_idx]  # (n, s)
    else:
        sig = median_knn_sigma(knn_d2, scale_neighbor) if sigma == "auto" else torch.as_tensor(sigma)
        denom = 2.0 * sig * sig
    return torch.exp(-knn_d2 / denom)
