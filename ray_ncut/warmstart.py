"""Spectral warm start: cluster a small sample exactly, then distill it into the head.

The relaxed cut loss is non-convex; from a random start the head often settles on
a wrong cut (a straight-line split of two rings, merged digit classes). Spectral
clustering of a sample of a few thousand rows finds the low cut reliably and
cheaply; cross-entropy on its labels puts the head next to that solution, and the
cut loss then refines it on minibatch subgraphs. All label-free. No Ray.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .affinity import sparse_knn_graph
from .config import GraphConfig, TrainConfig
from .metrics import normalized_cut

__all__ = ["spectral_labels", "distill", "warm_start"]


def spectral_labels(X: np.ndarray, n_clusters: int, graph: GraphConfig, seed: int) -> np.ndarray:
    """Spectral clustering of X (n, d) on the system's kNN heat-kernel graph; (n,) int labels.

    The graph uses the same kernel as the training loss, so the warm start and the
    fine-tuning optimise the same cut. The spectral embedding is rounded to labels
    two ways (QR pivoting, k-means) and the labelling with the lower normalized cut
    on the graph is kept: label-free, and neither rounding wins everywhere
    (measured Ncut, QR vs k-means: MNIST-5k 0.70 vs 0.60).
    """
    from sklearn.cluster import k_means
    from sklearn.cluster._spectral import cluster_qr
    from sklearn.manifold import spectral_embedding

    W = sparse_knn_graph(X, graph.n_neighbors, graph.sigma, graph.local_scaling, graph.scale_neighbor)
    with warnings.catch_warnings():
        # Well-separated clusters *are* disconnected components of a kNN graph.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        maps = spectral_embedding(W, n_components=n_clusters, drop_first=False, random_state=seed)  # (n, k)
    candidates = [cluster_qr(maps), k_means(maps, n_clusters, n_init=10, random_state=seed)[1]]
    return min(candidates, key=lambda labels: normalized_cut(W, labels)).astype(np.int64)


def distill(head, X: torch.Tensor, labels: torch.Tensor, train: TrainConfig, generator: torch.Generator) -> list[dict]:
    """Fit ``head`` to ``labels`` with cross-entropy for ``train.distill_steps`` Adam steps.

    X is (n, d) scaled features on the head's device, labels (n,) int64 there too.
    Returns the curve (``{"step", "distill_ce"}`` per step; steps are negative so
    that the cut-loss steps that follow start at 0).
    """
    opt = torch.optim.Adam(head.parameters(), lr=train.learning_rate)
    n, b = X.shape[0], min(train.batch_size, X.shape[0])
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
               Z: torch.Tensor | None = None) -> list[dict]:
    """Distill spectral clustering of ``train.init_sample`` random rows of X (n, d) into ``head``.

    With a learned embedding Z (n, e), the spectral graph is built on Z (the head
    still reads X). Does nothing (returns ``[]``) for ``init="random"`` or
    ``distill_steps=0``.
    """
    if train.init != "spectral" or train.distill_steps == 0:
        return []
    idx = torch.randperm(X.shape[0], generator=generator)[: train.init_sample].to(X.device)
    sample = X[idx]
    on = sample if Z is None else Z[idx]
    labels = spectral_labels(on.cpu().numpy(), head.config.n_clusters, graph, seed)
    return distill(head, sample, torch.as_tensor(labels, device=X.device), train, generator)
