"""One training step, and a loop over any iterable of minibatches. No Ray.

The same functions serve the in-memory estimator (batches drawn from an array),
the Ray Train worker loop (batches drawn from a worker's shard, the head wrapped
in DDP) and the unit tests (a Python list of tensors).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from .affinity import knn_affinity
from .config import GraphConfig, TrainConfig
from .losses import CUT_LOSSES, cnc_loss

__all__ = [
    "make_optimizer",
    "batch_loss",
    "train_step",
    "fit_head",
    "random_batches",
    "gumbel_tau",
    "subgraph_ncut",
]


def make_optimizer(head: torch.nn.Module, train: TrainConfig):
    """Adam with a cosine learning-rate schedule over ``train.steps`` steps."""
    opt = torch.optim.Adam(head.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=train.steps)
    return opt, sched


def gumbel_tau(step: int, train: TrainConfig) -> float:
    """Gumbel-softmax temperature, annealed geometrically from tau_start to tau_end."""
    frac = min(step / max(train.steps - 1, 1), 1.0)
    return train.tau_start * (train.tau_end / train.tau_start) ** frac


def batch_affinity(x: torch.Tensor, graph: GraphConfig) -> torch.Tensor:
    with torch.no_grad():
        return knn_affinity(x, graph.n_neighbors, graph.sigma, graph.local_scaling, graph.scale_neighbor)


def batch_loss(head, x: torch.Tensor, graph: GraphConfig, train: TrainConfig, step: int):
    """Loss of one minibatch subgraph: affinity of ``x`` (B, d), then the chosen cut loss.

    CNC trains through a Gumbel softmax (its paper's head); NeuNcut/NeuRcut through
    the plain softmax. Returns ``(loss, terms)``.
    """
    W = batch_affinity(x, graph)  # (B, B)
    logits = head(x)  # (B, k)
    if train.loss == "cnc":
        Y = F.gumbel_softmax(logits, tau=gumbel_tau(step, train), hard=False)
    else:
        Y = torch.softmax(logits, dim=1)
    return CUT_LOSSES[train.loss](Y, W, train.gamma)


def train_step(head, optimizer, scheduler, x, graph: GraphConfig, train: TrainConfig, step: int) -> dict:
    """One Adam step on the minibatch ``x``; returns the loss terms as floats."""
    optimizer.zero_grad(set_to_none=True)
    loss, terms = batch_loss(head, x, graph, train, step)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return {"step": step, "loss": loss.item(), **terms}


def fit_head(
    head,
    batches: Iterable[torch.Tensor],
    graph: GraphConfig,
    train: TrainConfig,
    start_step: int = 0,
    optimizer=None,
    scheduler=None,
    on_step: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``head`` on each batch of ``batches`` in turn; returns the training curve.

    ``optimizer``/``scheduler`` may be passed in (to resume); otherwise fresh ones
    are made. ``on_step`` sees every step's terms (progress, checkpoints).
    """
    if optimizer is None:
        optimizer, scheduler = make_optimizer(head, train)
    head.train()
    curve = []
    for step, x in enumerate(batches, start=start_step):
        terms = train_step(head, optimizer, scheduler, x, graph, train, step)
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"loss became {terms['loss']} at step {step}; lower learning_rate or gamma")
        curve.append(terms)
        if on_step is not None:
            on_step(terms)
    head.eval()
    return curve


def random_batches(X: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` minibatches of ``batch_size`` distinct rows of X, drawn uniformly."""
    n = X.shape[0]
    b = min(batch_size, n)
    for _ in range(steps):
        idx = torch.randperm(n, generator=generator)[:b].to(X.device)
        yield X[idx]


@torch.no_grad()
def subgraph_ncut(head, X: torch.Tensor, graph: GraphConfig, batch_size: int, n_batches: int, generator) -> float:
    """Mean discrete normalized cut of the head's hard labels on random minibatch subgraphs.

    Label-free model selection: among restarts, the head with the lowest cut wins.
    A partition into fewer parts has a lower cut, so each cluster left empty in a
    subgraph is charged 1, the largest term one cluster can contribute
    (cut_l <= vol_l). CNC's expected cut of a one-hot assignment *is* the discrete
    Ncut, so it is reused.
    """
    k = head.config.n_clusters
    cuts = []
    for x in random_batches(X, batch_size, n_batches, generator):
        W = batch_affinity(x, graph)
        onehot = F.one_hot(head(x).argmax(1), k).to(x.dtype)  # (B, k)
        empty = int((onehot.sum(0) == 0).sum())
        cuts.append(cnc_loss(onehot, W)[0].item() + empty)
    return float(sum(cuts) / len(cuts))
