"""One training step, and a loop over any iterable of minibatches. No Ray.

The same functions serve the in-memory estimator (batches drawn from an array),
the Ray Train worker loop (batches drawn from a worker's shard, the head wrapped
in DDP) and the unit tests (a Python list of tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from .affinity import knn_affinity
from .config import GraphConfig, TrainConfig
from .losses import CUT_LOSSES, cnc_loss, kcl_loss

__all__ = [
    "Constraints",
    "make_optimizer",
    "batch_loss",
    "train_step",
    "fit_head",
    "random_batches",
    "neighbour_batches",
    "training_batches",
    "gumbel_tau",
    "subgraph_ncut",
    "LabelsSettled",
]


@dataclass
class Constraints:
    """Pairwise constraints for the KCL term: the constrained rows and the pairs among them.

    ``X`` (c, d) holds the (scaled) features of every row that appears in a pair;
    ``first``/``second`` (p,) index into it; ``similar`` (p,) is True for must-link,
    False for cannot-link. Kept apart from the minibatches so that every step sees
    some pairs however rare the constrained rows are in the data.
    """

    X: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    similar: torch.Tensor

    def __len__(self) -> int:
        return int(self.first.shape[0])

    def to(self, device) -> "Constraints":
        return Constraints(self.X.to(device), self.first.to(device), self.second.to(device), self.similar.to(device))

    def sample(self, n_pairs: int, generator: torch.Generator):
        """Up to ``n_pairs`` random pairs: the rows they touch (u, d) and the pairs re-indexed into them."""
        pick = torch.randperm(len(self), generator=generator)[:n_pairs].to(self.first.device)
        first, second = self.first[pick], self.second[pick]
        rows, inverse = torch.unique(torch.cat([first, second]), return_inverse=True)
        return self.X[rows], inverse[: len(pick)], inverse[len(pick):], self.similar[pick]


# Constraint pairs drawn per training step for the KCL term.
KCL_PAIRS_PER_STEP = 256


def make_optimizer(head: torch.nn.Module, train: TrainConfig):
    """Adam with a cosine learning-rate schedule over ``train.steps`` steps."""
    opt = torch.optim.Adam(head.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=train.steps)
    return opt, sched


def gumbel_tau(step: int, train: TrainConfig) -> float:
    """Gumbel-softmax temperature, annealed geometrically from tau_start to tau_end."""
    frac = min(step / max(train.steps - 1, 1), 1.0)
    return train.tau_start * (train.tau_end / train.tau_start) ** frac


# Logits more than this below their row's maximum are raised to it before the softmax. At large
# k most of a softmax row is otherwise far below 1e-30, and products of such values underflow to
# subnormal floats, which x86 CPUs compute 50-100x slower (measured: one NeuNcut step at
# B = 3,000, k = 1,000, forward and backward, 5.7 s against 0.25 s; torch.set_flush_denormal
# does not reach torch's worker threads). exp(-20) = 2e-9: a probability that low moves no
# loss term by more than k times that, and its gradient was as small.
LOGIT_RANGE = 20.0


def soft_assignments(logits: torch.Tensor) -> torch.Tensor:
    """Y (B, k): the softmax of ``logits`` (B, k), each floored at its row's maximum minus
    ``LOGIT_RANGE`` (the floor carries no gradient)."""
    floor = logits.max(dim=1, keepdim=True).values.detach() - LOGIT_RANGE  # (B, 1)
    return torch.softmax(torch.maximum(logits, floor), dim=1)


def batch_affinity(x: torch.Tensor, graph: GraphConfig) -> torch.Tensor:
    with torch.no_grad():
        return knn_affinity(x, graph.n_neighbors, graph.sigma, graph.local_scaling, graph.scale_neighbor)


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A minibatch is the head's input ``x`` (B, d), or ``(x, z)`` where ``z`` (B, e) is a
    learned embedding of the same rows that the affinity is built on instead of x."""
    if isinstance(batch, (tuple, list)):
        return batch[0], batch[1]
    return batch, batch


def batch_loss(head, batch, graph: GraphConfig, train: TrainConfig, step: int):
    """Loss of one minibatch subgraph: affinity of the batch (B, B), then the chosen cut loss.

    CNC trains through a Gumbel softmax (its paper's head); NeuNcut/NeuRcut through
    the plain softmax. Returns ``(loss, terms)``.
    """
    x, z = split_batch(batch)
    W = batch_affinity(z, graph)  # (B, B)
    logits = head(x)  # (B, k)
    if train.loss == "cnc":
        Y = F.gumbel_softmax(logits, tau=gumbel_tau(step, train), hard=False)
    else:
        Y = soft_assignments(logits)
    return CUT_LOSSES[train.loss](Y, W, train.gamma)


def constraint_loss(head, constraints: Constraints, generator: torch.Generator) -> torch.Tensor:
    """KCL loss of a random draw of constraint pairs under the head's soft assignments."""
    rows, first, second, similar = constraints.sample(KCL_PAIRS_PER_STEP, generator)
    return kcl_loss(soft_assignments(head(rows)), first, second, similar)


def train_step(head, optimizer, scheduler, batch, graph: GraphConfig, train: TrainConfig, step: int,
               constraints: Constraints | None = None, generator: torch.Generator | None = None) -> dict:
    """One Adam step on a minibatch (plus ``kcl_weight`` x KCL on constraint pairs, if any);
    returns the loss terms as floats."""
    optimizer.zero_grad(set_to_none=True)
    loss, terms = batch_loss(head, batch, graph, train, step)
    if constraints is not None and len(constraints):
        kcl = constraint_loss(head, constraints, generator)
        loss = loss + train.kcl_weight * kcl
        terms["kcl"] = kcl.item()
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
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    until: Callable[[object, int], bool] | None = None,
) -> list[dict]:
    """Train ``head`` on each batch of ``batches`` in turn; returns the training curve.

    ``optimizer``/``scheduler`` may be passed in (to resume); otherwise fresh ones
    are made. ``on_step`` sees every step's terms (progress, checkpoints).
    ``constraints`` adds the KCL term, its pairs drawn with ``generator``.
    ``until(head, step)``, if given, ends training early when it returns True (:class:`LabelsSettled`).
    """
    if optimizer is None:
        optimizer, scheduler = make_optimizer(head, train)
    if constraints is not None and generator is None:
        generator = torch.Generator().manual_seed(start_step)
    head.train()
    curve = []
    for step, batch in enumerate(batches, start=start_step):
        terms = train_step(head, optimizer, scheduler, batch, graph, train, step, constraints, generator)
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"loss became {terms['loss']} at step {step}; lower learning_rate or gamma")
        curve.append(terms)
        if on_step is not None:
            on_step(terms)
        if until is not None and until(head, step):
            break
    head.eval()
    return curve


class LabelsSettled:
    """``until`` for :func:`fit_head`: True once the head's hard labels of ``probe`` (m, d) have
    moved on fewer than ``share`` of the rows over each of the last ``checks`` windows of
    ``every`` steps. The cut loss refines a warm-started partition; once it stops moving
    rows, the remaining steps cost time and change nothing (measured, issue 26). The first
    window starts at the first call (the warm start's labels after one step), so a partition
    the cut loss leaves alone stops after ``checks`` windows, not one more.

    In-process only: Ray Train workers would each have to reach the same verdict.
    """

    def __init__(self, probe: torch.Tensor, every: int = 25, share: float = 0.002, checks: int = 2):
        self.probe, self.every, self.share, self.checks = probe, every, share, checks
        self.last: torch.Tensor | None = None
        self.quiet = 0
        self.stopped_at: int | None = None

    @torch.no_grad()
    def __call__(self, head, step: int) -> bool:
        if self.last is None:  # the first call: the labels the first window is measured from
            self.last = head(self.probe).argmax(1)
            return False
        if (step + 1) % self.every:
            return False
        labels = head(self.probe).argmax(1)
        moved = float((labels != self.last).float().mean())
        self.last = labels
        self.quiet = self.quiet + 1 if moved < self.share else 0
        if self.quiet >= self.checks:
            self.stopped_at = step + 1
        return self.stopped_at is not None


def random_batches(X: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator,
                   Z: torch.Tensor | None = None) -> Iterator:
    """``steps`` minibatches of ``batch_size`` distinct rows of X, drawn uniformly;
    ``(X[idx], Z[idx])`` pairs when an embedding Z (n, e) of the rows is given."""
    n = X.shape[0]
    b = min(batch_size, n)
    for _ in range(steps):
        idx = torch.randperm(n, generator=generator)[:b].to(X.device)
        yield X[idx] if Z is None else (X[idx], Z[idx])


def neighbour_batches(X: torch.Tensor, neighbours: torch.Tensor, batch_size: int, per_anchor: int, steps: int,
                      generator: torch.Generator, Z: torch.Tensor | None = None) -> Iterator:
    """``steps`` minibatches of random anchors plus ``per_anchor`` of each anchor's neighbours.

    ``neighbours`` (n, s) is the sample's neighbour table. A uniform minibatch of
    1,000 rows from 10^5 holds few true neighbours, so its kNN subgraph is a coarser
    graph than the sample's; measured on MNIST-5k, fine-tuning on such subgraphs
    moved the head away from the sample graph's low cut (Ncut 0.70), while batches
    of 250 anchors + 3 neighbours each kept it (0.65). Rows may repeat across
    anchors; each batch holds distinct rows (at most ``batch_size``).
    """
    n, s = neighbours.shape
    per = min(per_anchor, s)
    anchors = max(1, min(batch_size // (1 + per), n))
    for _ in range(steps):
        a = torch.randperm(n, generator=generator)[:anchors]  # (m,)
        cols = torch.randperm(s, generator=generator)[:per]
        idx = torch.unique(torch.cat([a, neighbours[a][:, cols].reshape(-1)])).to(X.device)
        yield X[idx] if Z is None else (X[idx], Z[idx])


def training_batches(X: torch.Tensor, train: TrainConfig, steps: int, generator: torch.Generator,
                     Z: torch.Tensor | None = None, neighbours: torch.Tensor | None = None) -> Iterator:
    """The minibatches ``train`` asks for: neighbourhood batches when a neighbour table is given
    and ``train.batch_neighbors > 0``, uniform ones otherwise."""
    if neighbours is not None and train.batch_neighbors > 0:
        return neighbour_batches(X, neighbours, train.batch_size, train.batch_neighbors, steps, generator, Z)
    return random_batches(X, train.batch_size, steps, generator, Z)


@torch.no_grad()
def subgraph_ncut(head, X: torch.Tensor, graph: GraphConfig, batch_size: int, n_batches: int, generator,
                  Z: torch.Tensor | None = None) -> float:
    """Mean discrete normalized cut of the head's hard labels on random minibatch subgraphs.

    Label-free model selection: among restarts, the head with the lowest cut wins.
    A partition into fewer parts has a lower cut, so each cluster left empty in a
    subgraph is charged 1, the largest term one cluster can contribute
    (cut_l <= vol_l). CNC's expected cut of a one-hot assignment *is* the discrete
    Ncut, so it is reused.
    """
    k = head.config.n_clusters
    cuts = []
    for batch in random_batches(X, batch_size, n_batches, generator, Z):
        x, z = split_batch(batch)
        W = batch_affinity(z, graph)
        onehot = F.one_hot(head(x).argmax(1), k).to(x.dtype)  # (B, k)
        empty = int((onehot.sum(0) == 0).sum())
        cuts.append(cnc_loss(onehot, W)[0].item() + empty)
    return float(sum(cuts) / len(cuts))
