"""Learned affinity: a Siamese embedding trained on kNN pairs (CNC / SpectralNet recipe). No Ray.

Positives are each point and one of its ``n_neighbors`` nearest neighbours in the
scaled input; negatives are random pairs (almost always from different clusters
when k is not tiny). The contrastive loss pulls positives together and pushes
negatives at least ``margin`` apart. The cut head then still maps *input features*
to clusters; only its minibatch affinities are built on the embedding, so a
trained head needs no embedding at prediction time.

Wide inputs (784 pixels, 384-D text embeddings; :meth:`SiameseConfig.input_components`)
are first projected on the sample's leading principal components, the network and its kNN positives
work on those, and the projection is then folded into the network's first layer, so the
trained network still reads the scaled features (:class:`Projection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import SiameseConfig
from .knn import neighbour_table
from .nn import forward_rows, mlp

__all__ = ["SiameseConfig", "Projection", "siamese_inputs", "reading_features", "train_siamese", "siamese_steps",
           "new_siamese", "embed"]


@dataclass
class Projection:
    """``x -> (x - mean) @ basis``: rows (n, d) onto their leading principal components (n, p)."""

    mean: torch.Tensor  # (1, d)
    basis: torch.Tensor  # (d, p), orthonormal columns, largest variance first

    @classmethod
    def fit(cls, X: torch.Tensor, components: int) -> "Projection":
        """The first ``components`` principal axes of X (n, d), from its d x d covariance in float64."""
        centred = X.to(torch.float64, copy=True)  # (n, d): one copy, centred in place (100,000 x 784: 0.6 GB)
        mean = centred.mean(0, keepdim=True)
        centred -= mean
        _, axes = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
        return cls(mean.to(X.dtype), axes[:, -components:].flip(1).to(X.dtype).contiguous())

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return (X - self.mean) @ self.basis

    def fold(self, net: torch.nn.Sequential) -> torch.nn.Sequential:
        """``net`` (reading p projected inputs) as a network reading the d features: its first
        layer ``W z + b`` becomes ``(W basis^T) x + (b - W basis^T mean)``."""
        first = net[0]
        weight = first.weight.detach() @ self.basis.T  # (h, d)
        folded = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(weight.device)
        with torch.no_grad():
            folded.weight.copy_(weight)
            folded.bias.copy_(first.bias.detach() - (self.mean @ weight.T).squeeze(0))
        net[0] = folded
        return net


def siamese_inputs(X: torch.Tensor, config: SiameseConfig, n_clusters: int) -> tuple[torch.Tensor, Projection | None]:
    """What the network trains on for the scaled sample X (n, d) and ``n_clusters`` clusters: X
    itself, or its projection (n, p) on p = :meth:`SiameseConfig.input_components` principal
    components (the kNN positives are then found among them, and each step reads p inputs)."""
    p = config.input_components(X.shape[1], n_clusters)
    if p == 0:
        return X, None
    projection = Projection.fit(X, p)
    return projection(X), projection


def reading_features(net: torch.nn.Sequential, projection: Projection | None) -> torch.nn.Sequential:
    """``net``, trained on :func:`siamese_inputs`' rows, as a network reading the scaled features
    (the projection folded into its first layer), in eval mode."""
    return (net if projection is None else projection.fold(net)).eval()


def contrastive_loss(za, zp, zn, margin: float) -> torch.Tensor:
    """Hadsell et al.: ``|za - zp|^2`` for positives, ``max(0, margin - |za - zn|)^2`` for negatives."""
    pos = ((za - zp) ** 2).sum(1)
    neg = torch.relu(margin - (za - zn).norm(dim=1)) ** 2
    return pos.mean() + neg.mean()


def siamese_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor, neighbours: torch.Tensor,
                  config: SiameseConfig, steps: int, gen: torch.Generator, batch_size: int | None = None) -> float:
    """``steps`` contrastive steps on the scaled sample X (n, d); returns the last loss.

    ``neighbours`` (n, s) indexes X. ``net`` may be wrapped in DDP: each Ray Train
    worker draws its own anchors (its own ``gen``) from the whole sample and DDP
    averages the gradients, so ``batch_size`` is then the per-worker share.
    """
    n, s = neighbours.shape
    b = min(batch_size or config.batch_size, n)
    net.train()
    loss = torch.zeros(())
    for _ in range(steps):
        anchor = torch.randint(0, n, (b,), generator=gen).to(X.device)
        positive = neighbours[anchor, torch.randint(0, s, (b,), generator=gen).to(X.device)]
        negative = torch.randint(0, n, (b,), generator=gen).to(X.device)
        # One pass over the 3b rows, not three of b: the same maths (the MLP has no batch statistics)
        # in a third of the parallel regions, each of which wakes sleeping OpenMP threads (ray_ncut/
        # threads.py): 13-17% less time a step on 2 cores (2026-12-06).
        za, zp, zn = net(X[torch.cat([anchor, positive, negative])]).split(b)  # (b, dim) each
        loss = contrastive_loss(za, zp, zn, config.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item()


def new_siamese(input_dim: int, config: SiameseConfig, seed: int, device="cpu") -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The embedding network (seeded) on ``device`` and its optimiser."""
    torch.manual_seed(seed)
    net = mlp(input_dim, tuple(config.hidden), config.dim).to(device)
    return net, torch.optim.Adam(net.parameters(), lr=config.learning_rate)


def train_siamese(X: torch.Tensor, config: SiameseConfig, seed: int, n_clusters: int,
                  neighbours: torch.Tensor | None = None) -> torch.nn.Module:
    """Train the embedding on the scaled sample X (n, d) for ``n_clusters`` clusters (the largest
    searched when k is chosen) in this process; returns the network in eval mode.

    ``neighbours`` (n, s) is the sample's neighbour table if already known (unused when the
    inputs are projected: the positives are then found among the components). The Ray job
    trains the same network with Ray Train (:func:`ray_ncut.ray.train.run_embedding_training`).
    """
    inputs, projection = siamese_inputs(X, config, n_clusters)  # (n, d) or (n, p)
    if neighbours is None or projection is not None:
        neighbours = torch.from_numpy(neighbour_table(inputs.cpu().numpy(), config.n_neighbors))
    net, opt = new_siamese(inputs.shape[1], config, seed, X.device)
    siamese_steps(net, opt, inputs, neighbours[:, : config.n_neighbors].to(X.device), config, config.steps,
                  torch.Generator().manual_seed(seed))
    return reading_features(net, projection)


@torch.no_grad()
def embed(net: torch.nn.Module, X: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Embedding of X (n, d) -> (n, dim), ``chunk`` rows at a time (default :func:`forward_rows`)."""
    chunk = chunk or forward_rows(X.device)
    return torch.cat([net(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)])
