"""Learned affinity: a Siamese embedding trained on kNN pairs (CNC / SpectralNet recipe). No Ray.

Positives are each point and one of its ``n_neighbors`` nearest neighbours in the
scaled input; negatives are random pairs (almost always from different clusters
when k is not tiny). The contrastive loss pulls positives together and pushes
negatives at least ``margin`` apart. The cut head then still maps *input features*
to clusters; only its minibatch affinities are built on the embedding, so a
trained head needs no embedding at prediction time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .knn import neighbour_table
from .model import mlp

__all__ = ["SiameseConfig", "train_siamese", "embed"]


@dataclass
class SiameseConfig:
    dim: int = 16
    hidden: tuple = (512, 512)
    n_neighbors: int = 10
    steps: int = 1000
    batch_size: int = 512
    learning_rate: float = 1e-3
    margin: float = 1.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "hidden": list(self.hidden)}


def contrastive_loss(za, zp, zn, margin: float) -> torch.Tensor:
    """Hadsell et al.: ``|za - zp|^2`` for positives, ``max(0, margin - |za - zn|)^2`` for negatives."""
    pos = ((za - zp) ** 2).sum(1)
    neg = torch.relu(margin - (za - zn).norm(dim=1)) ** 2
    return pos.mean() + neg.mean()


def train_siamese(X: torch.Tensor, config: SiameseConfig, seed: int, neighbours: torch.Tensor | None = None) -> torch.nn.Module:
    """Train the embedding on the scaled sample X (n, d); returns the network in eval mode.

    ``neighbours`` (n, s) is the sample's neighbour table if already known.
    """
    n = X.shape[0]
    if neighbours is None:
        neighbours = torch.from_numpy(neighbour_table(X.cpu().numpy(), config.n_neighbors))
    nbrs = neighbours[:, : config.n_neighbors].to(X.device)  # (n, s)
    s = nbrs.shape[1]
    torch.manual_seed(seed)
    net = mlp(X.shape[1], tuple(config.hidden), config.dim).to(X.device)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(seed)
    b = min(config.batch_size, n)
    net.train()
    for _ in range(config.steps):
        anchor = torch.randint(0, n, (b,), generator=gen).to(X.device)
        positive = nbrs[anchor, torch.randint(0, s, (b,), generator=gen).to(X.device)]
        negative = torch.randint(0, n, (b,), generator=gen).to(X.device)
        loss = contrastive_loss(net(X[anchor]), net(X[positive]), net(X[negative]), config.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def embed(net: torch.nn.Module, X: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Embedding of X (n, d) -> (n, dim), in chunks."""
    return torch.cat([net(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)])
