"""Label-free choices of the penalty weight gamma and the kernel bandwidth sigma. No Ray.

gamma follows the NeuNcut paper's rule (section 4.6): train briefly from a random
start with a very large gamma and record the smallest orthogonality penalty
reached, which is the floor of that term; then lower gamma step by step and keep
the smallest gamma whose penalty still comes down to the floor. The probes start
from a random head, as in the paper: a warm-started head is already nearly
orthogonal at every gamma, so it cannot tell them apart. Below it the head buys a lower cut
by giving up orthogonality, which is how clusters collapse; above it the cut term
is weighed less than it could be. Nothing here looks at labels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch

from .affinity import squared_distances
from .config import GraphConfig, TrainConfig
from .engine import fit_head, random_batches, split_batch

__all__ = ["GAMMA_GRID", "GammaSearch", "search_gamma", "describe_sigma"]

# Squared-penalty scale: 1000 is "very large" (assignments go hard within tens of
# steps); 0.1 collapses digits to fewer clusters. Steps of sqrt(10).
GAMMA_GRID = (1000.0, 316.0, 100.0, 31.6, 10.0, 3.16, 1.0, 0.316, 0.1)
PROBE_STEPS = 200
# The penalty is read as a running mean over this many steps (one batch is noisy).
SMOOTHING = 10
# "At the floor": within 10% + 0.05 of it. Measured on digits (3 seeds): the
# floor itself is 0.18-1.06 depending on the start; the penalty's minimum moves by
# a few hundredths per grid step down to gamma ~3, then jumps (x1.5-6) where
# clusters start to merge.
RELATIVE_TOLERANCE = 0.1
ABSOLUTE_TOLERANCE = 0.05


@dataclass
class GammaSearch:
    """What :func:`search_gamma` tried and chose; goes into the run's config as is."""

    gamma: float
    grid: list = field(default_factory=list)
    orth_min: list = field(default_factory=list)
    cut_min: list = field(default_factory=list)
    floor: float = 0.0
    probe_steps: int = PROBE_STEPS
    rule: str = "NeuNcut 4.6: smallest gamma whose min orthogonality penalty stays at the floor set by the largest gamma"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _smoothed_min(values: list[float]) -> float:
    w = min(SMOOTHING, len(values))
    return min(sum(values[i : i + w]) / w for i in range(len(values) - w + 1))


def search_gamma(head, X: torch.Tensor, graph: GraphConfig, train: TrainConfig, seed: int,
                 Z: torch.Tensor | None = None, grid=GAMMA_GRID, probe_steps: int = PROBE_STEPS) -> GammaSearch:
    """Pick gamma on the scaled sample X (n, d), probing copies of the random ``head`` (left untouched).

    Each gamma of ``grid`` (descending) trains a copy of the head for ``probe_steps``
    steps on the same uniform minibatches (the paper's setting); the search stops at the first gamma whose
    smoothed minimum penalty rises above the floor and returns the one before it.
    """
    probe = replace(train, steps=probe_steps)
    result = GammaSearch(gamma=float(grid[0]), probe_steps=probe_steps)
    for g in grid:
        trial = copy.deepcopy(head)
        gen = torch.Generator().manual_seed(seed)
        curve = fit_head(trial, random_batches(X, train.batch_size, probe_steps, gen, Z), graph, replace(probe, gamma=g))
        orth = _smoothed_min([t["orth"] for t in curve])
        result.grid.append(g)
        result.orth_min.append(orth)
        result.cut_min.append(_smoothed_min([t["cut"] for t in curve]))
        if len(result.grid) == 1:
            result.floor = orth
        elif orth > result.floor * (1 + RELATIVE_TOLERANCE) + ABSOLUTE_TOLERANCE or not math.isfinite(orth):
            break
        result.gamma = float(g)
    return result


@torch.no_grad()
def describe_sigma(X: torch.Tensor, graph: GraphConfig, batch_size: int, n_batches: int, seed: int,
                   Z: torch.Tensor | None = None) -> dict:
    """The bandwidth the kernel uses, as a number for the run's config.

    With ``sigma="auto"`` each minibatch sets sigma to the median distance to its
    ``scale_neighbor``-th neighbour; this reports the median (and range) of that
    value over ``n_batches`` random batches. With local scaling, the per-point
    scales' median and range. A fixed sigma is reported as given.
    """
    if graph.sigma != "auto" and not graph.local_scaling:
        return {"mode": "fixed", "sigma": float(graph.sigma)}
    gen = torch.Generator().manual_seed(seed)
    values = []
    for batch in random_batches(X, batch_size, n_batches, gen, Z):
        _, z = split_batch(batch)
        d2 = squared_distances(z).fill_diagonal_(float("inf"))
        col = min(graph.scale_neighbor, z.shape[0] - 1)
        kth = torch.kthvalue(d2, col, dim=1).values.sqrt()  # (B,) distance to the scale neighbour
        values.append(kth if graph.local_scaling else kth.median()[None])
    v = torch.cat(values)
    mode = "local" if graph.local_scaling else "auto"
    rule = f"distance to neighbour {graph.scale_neighbor} within each batch of {batch_size}"
    return {"mode": mode, "rule": rule, "sigma": float(v.median()), "min": float(v.min()), "max": float(v.max())}
