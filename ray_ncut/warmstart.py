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

__all__ = ["spectral_labels", "distill", "warm_start"]


def spectral_labels(X: np.ndarray, n_clusters: int, graph: GraphConfig, seed: int) -> np.ndarray:
    """Spectral clustering of X (n, d) on the system's kNN heat-kernel graph; (n,) int labels.

    The graph uses the same kernel as the training loss, so the warm start and the
    fine-tuning optimise the same cut.
    """
    from sklearn.cluster import spectral_clustering

    W = sparse_knn_graph(X, graph.n_neighbors, graph.sigma, graph.local_scaling, graph.scale_neighbor)
    with warnings.catch_warnings():
        # Well-separated clusters *are* disconnected components of a kNN graph.
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return spectral_clustering(W, n_clusters=n_clusters, assign_labels="cluster_qr", random_state=seed)


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


def warm_start(head, X: torch.Tensor, graph: GraphConfig, train: TrainConfig, seed: int, generator) -> list[dict]:
    """Distill spectral clustering of ``train.init_sample`` random rows of X (n, d) into ``head``.

    Does nothing (returns ``[]``) for ``init="random"`` or ``distill_steps=0``.
    """
    if train.init != "spectral" or train.distill_steps == 0:
        return []
    idx = torch.randperm(X.shape[0], generator=generator)[: train.init_sample]
    sample = X[idx.to(X.device)]
    labels = spectral_labels(sample.cpu().numpy(), head.config.n_clusters, graph, seed)
    return distill(head, sample, torch.as_tensor(labels, device=X.device), train, generator)
