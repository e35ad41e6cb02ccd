"""Everything before the cut loss, shared by the in-memory estimator and the Ray job. No Ray.

On the scaled training sample: resolve ``affinity="auto"``, train the Siamese
embedding (if chosen; the Ray job trains it with Ray Train and passes it in),
warm-start the head, choose gamma (if ``"auto"``) and describe the kernel bandwidth.
The result carries the numbers the run's config records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .autotune import describe_sigma, search_gamma
from .choose_k import choose_k
from .config import BATCH_ROWS_PER_CLUSTER, GraphConfig, TrainConfig
from .knn import neighbour_table
from .model import CutHead, HeadConfig
from .siamese import SiameseConfig, embed, train_siamese
from .warmstart import warm_start

__all__ = ["Prepared", "prepare_training", "resolve_affinity", "sized_for_k",
           "WARM_ROWS_PER_CLUSTER", "BATCH_ROWS_PER_CLUSTER"]

# Batches over which the auto bandwidth is described in the config.
_SIGMA_BATCHES = 8

# What grows with k (issue 27): the warm start clusters at least this many sample rows per
# cluster (the fixed 5,000 left 5 a cluster at k = 1,000, under one neighbourhood), and each
# minibatch holds at least BATCH_ROWS_PER_CLUSTER rows per cluster (config.py).
WARM_ROWS_PER_CLUSTER = 20


def sized_for_k(train: TrainConfig, n_clusters: int) -> TrainConfig:
    """``train`` with ``init_sample`` and ``batch_size`` raised to the per-cluster floors above (never
    lowered: the defaults hold up to k = 250 and 333)."""
    return replace(train, init_sample=max(train.init_sample, WARM_ROWS_PER_CLUSTER * n_clusters),
                   batch_size=max(train.batch_size, BATCH_ROWS_PER_CLUSTER * n_clusters))


def resolve_affinity(graph: GraphConfig, scaling_mode: str) -> tuple[GraphConfig, dict | None]:
    """``affinity="auto"`` -> ``"siamese"`` where rows are compared by direction (``scaling_mode
    == "l2"``: 16+ features on one shared scale), else ``"knn"``; returns the graph config with
    the affinity resolved and the record of the choice (None when it was given).

    The rule is the scaling rule's own split (docs/quality.md): on the suite's five sets
    with shared-scale features the learned code scored at or above the kNN graph on the
    raw features on every one (MNIST-5k +0.12, digits +0.08, text embeddings +0.03, mean of
    3 seeds), while on tables it lost up to 0.04 as often as it won.
    """
    if graph.affinity != "auto":
        return graph, None
    chosen = "siamese" if scaling_mode == "l2" else "knn"
    reason = "rows compared by direction: 16+ features on one shared scale" if chosen == "siamese" else \
        "features standardised: a table, or fewer than 16 features"
    return replace(graph, affinity=chosen), {"chosen": chosen, "scaling": scaling_mode, "reason": reason}


def _choose_k(rows: torch.Tensor, graph: GraphConfig, k_range, sample: int, seed: int) -> dict:
    """k chosen on a seeded random subset of ``sample`` rows of ``rows`` (n, e)."""
    pick = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:sample]
    return choose_k(rows[pick.to(rows.device)].cpu().numpy(), graph, k_range, seed)


@dataclass
class Prepared:
    head: CutHead
    train: TrainConfig  # with gamma resolved to a number
    Z: torch.Tensor | None  # (n, e) embedding the affinities use, or None
    neighbours: torch.Tensor | None  # (n, s) the sample's neighbour table, or None
    warm_curve: list = field(default_factory=list)
    auto: dict = field(default_factory=dict)  # gamma search, sigma, siamese settings


def prepare_training(X: torch.Tensor, head_config: HeadConfig, graph: GraphConfig, train: TrainConfig,
                     gamma: float | str, seed: int, siamese: SiameseConfig | None = None,
                     batch_neighbours: bool = True, embedding: torch.Tensor | None = None,
                     k_range: tuple[int, int] | None = None) -> Prepared:
    """Warm-started head, resolved gamma and optional embedding for the scaled sample X (n, d).

    ``graph.affinity`` must be resolved (:func:`resolve_affinity`). ``train.gamma`` is
    ignored when ``gamma == "auto"``; otherwise ``gamma`` is used. ``batch_neighbours``:
    also return the sample's neighbour table for neighbourhood minibatches (the Ray
    job's workers build theirs on their own shards instead). ``embedding`` (n, e): the
    Siamese code of X when it was trained elsewhere (the Ray job); else it is trained here.
    ``k_range`` (min, max): choose k label-free (:func:`ray_ncut.choose_k.choose_k`) on up to
    ``train.init_sample`` rows of the code or of X; ``head_config.n_clusters`` is then replaced.
    """
    if graph.affinity not in ("knn", "siamese"):
        raise ValueError(f"affinity={graph.affinity!r} should be resolved to 'knn' or 'siamese' first")
    auto = {}
    Z = None
    siamese = siamese or SiameseConfig(n_neighbors=graph.n_neighbors)
    learn = graph.affinity == "siamese" and embedding is None
    k_most = head_config.n_clusters if k_range is None else k_range[1]
    projected_to = siamese.input_components(X.shape[1], k_most)  # 0: the code reads the features themselves
    want_table = (batch_neighbours and train.batch_neighbors > 0) or (learn and not projected_to)
    neighbours = torch.from_numpy(neighbour_table(X.cpu().numpy(), graph.n_neighbors)).to(X.device) if want_table else None
    if graph.affinity == "siamese":
        learned = embedding if embedding is not None else embed(train_siamese(X, siamese, seed, k_most, neighbours), X)
        Z = learned.to(X.device)  # (n, e)
        auto["siamese"] = {**siamese.to_dict(), "trained_on_components": projected_to}
    if k_range is not None:
        auto["k"] = _choose_k(X if Z is None else Z, graph, k_range, train.init_sample, seed)
        head_config = replace(head_config, n_clusters=auto["k"]["k"])
    train = sized_for_k(train, head_config.n_clusters)
    torch.manual_seed(seed)
    head = CutHead(head_config).to(X.device)
    if gamma == "auto":
        found = search_gamma(head, X, graph, train, seed, Z)  # from the random start, before warm-up
        auto["gamma"] = found.to_dict()
        gamma = found.gamma
    train = replace(train, gamma=float(gamma))
    gen = torch.Generator().manual_seed(seed)
    chosen = {}
    warm_curve = warm_start(head, X, graph, train, seed, gen, Z, chosen)
    if chosen:
        auto["warm_start"] = chosen
    auto["sigma"] = describe_sigma(X, graph, train.batch_size, _SIGMA_BATCHES, seed, Z)
    return Prepared(head, train, Z, neighbours if batch_neighbours else None, warm_curve, auto)
