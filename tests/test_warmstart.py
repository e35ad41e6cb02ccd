"""The warm start's graph and its label-free choice of partition, against brute force and by behaviour."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from ray_ncut import NeuralCut
from ray_ncut.config import GraphConfig, TrainConfig
from ray_ncut.knn import sparse_knn_graph
from ray_ncut.metrics import clustering_scores, contingency_partial
from ray_ncut.model import CutHead, HeadConfig
from ray_ncut.warmstart import (
    choose_partition,
    distill,
    distill_batch_size,
    min_cluster_rows,
    spectral_embedding,
    spectral_labels,
    warm_candidates,
)


def _blobs(sizes, d=10, gap=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(sizes), d))
    centres *= gap / np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(len(sizes), 1)].min()
    y = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[y] + rng.normal(0, 1, (len(y), d))).astype(np.float32), y


@pytest.mark.parametrize("n", [150, 900])  # the dense solver and LOBPCG
def test_spectral_embedding_spans_the_top_eigenvectors_of_the_normalized_affinity(n):
    X, _ = _blobs([n // 3] * 3, gap=3.0)
    W = sparse_knn_graph(X, 10)
    got = spectral_embedding(W, 3, seed=0)  # (n, 3)
    d = np.asarray(W.sum(1)).ravel()
    M = W.toarray() / np.sqrt(d[:, None] * d[None, :])
    want = np.linalg.eigh(M)[1][:, -3:] / np.sqrt(d)[:, None]  # brute force, D^-1/2 U
    project = lambda A: A @ np.linalg.pinv(A)  # noqa: E731 - the subspace, whatever the basis
    np.testing.assert_allclose(project(got), project(want), atol=1e-4)


def test_choice_passes_over_a_partition_with_a_fragment_smaller_than_a_neighbourhood():
    # Two 20-row cliques joined by one edge, and a 3-row clique hanging off the first.
    n = 43
    W = np.zeros((n, n))
    for block in (range(0, 20), range(20, 40), range(40, 43)):
        idx = np.array(block)
        W[np.ix_(idx, idx)] = 1.0
    W[0, 20] = W[20, 0] = 0.5
    W[1, 40] = W[40, 1] = 0.001
    np.fill_diagonal(W, 0)
    W = sp.csr_matrix(W)
    fragment = np.r_[np.zeros(40, int), np.ones(3, int)]  # lowest cut: the 3-row clique alone
    halves = np.r_[np.zeros(20, int), np.ones(20, int), np.zeros(3, int)]
    candidates = {"fragment": fragment, "halves": halves}
    assert choose_partition(W, candidates, 2, min_rows=1)[0] == "fragment"
    name, scores = choose_partition(W, candidates, 2, min_rows=5)
    assert name == "halves"
    assert scores["fragment"]["ncut"] < scores["halves"]["ncut"] and scores["fragment"]["smallest"] == 3
    # None large enough: the one whose smallest cluster is largest
    assert choose_partition(W, candidates, 2, min_rows=30)[0] == "halves"


def test_min_cluster_rows_is_a_neighbourhood_capped_for_tiny_samples():
    assert min_cluster_rows(5000, 10, 20) == 20
    assert min_cluster_rows(100, 10, 20) == 5  # half the average cluster of a 100-row sample
    assert min_cluster_rows(3, 2, 20) == 1


def _acc(y, labels):
    return clustering_scores(contingency_partial(y, labels))["acc"]


def test_outlier_fragment_does_not_become_a_cluster():
    X, y = _blobs([600, 600], gap=6.0)
    rng = np.random.default_rng(1)
    outliers = 40.0 + rng.normal(0, 0.01, (6, X.shape[1]))  # six near-duplicate rows far from everything
    Xo = np.vstack([X, outliers]).astype(np.float32)
    est = NeuralCut(2, random_state=0).fit(Xo)
    labels = est.labels_
    assert est.auto_["warm_start"]["set_aside"] == 6  # a graph component of 6 rows, set aside
    sizes = np.bincount(labels, minlength=2)
    assert sizes.min() >= 0.25 * len(Xo), sizes  # not a 6-row cluster
    assert _acc(y, labels[: len(y)]) >= 0.95


def test_set_aside_rows_join_the_cluster_of_their_nearest_kept_row():
    X, y = _blobs([300, 300], gap=8.0)
    away = X[:300].mean(0) - X[300:].mean(0)
    away *= 25.0 / np.linalg.norm(away)
    far = np.vstack([X[:3] + away, X[300:303] - away])  # three rows beyond each blob, far sparser than it
    Xo = np.vstack([X, far]).astype(np.float32)
    found = warm_candidates(Xo, 2, GraphConfig(), seed=0)
    assert found.core.sum() == 600 and not found.core[600:].any()
    nearest_kept = np.linalg.norm(X[None] - far[:, None], axis=2).argmin(1)  # (6,) brute force
    for name, labels in found.partitions.items():
        assert labels.shape == (600,)
        full = found.labels(name)  # (606,)
        np.testing.assert_array_equal(full[:600], labels)
        np.testing.assert_array_equal(full[600:], labels[nearest_kept])
    evidence = {}
    chosen = spectral_labels(Xo, 2, GraphConfig(), 0, evidence)
    np.testing.assert_array_equal(chosen, found.labels(evidence["chosen"]))
    assert evidence["set_aside"] == 6 and _acc(y, chosen[:600]) == 1.0


def test_a_small_real_cluster_is_kept():
    X, y = _blobs([1500, 150, 40], d=8, gap=8.0)  # the smallest 2.4% of rows
    labels = NeuralCut(3, random_state=0).fit(X).labels_
    table = contingency_partial(y, labels).table
    assert (table.max(1) / table.sum(1)).min() >= 0.95, table  # every true cluster lands (almost) whole
    assert _acc(y, labels) >= 0.98


def test_spectral_embedding_finds_every_component_of_a_repeated_eigenvalue():
    from ray_ncut.data import load_builtin

    X, y = load_builtin("builtin:rings?n=2000&seed=0")  # two rings: two components, eigenvalue 1 twice
    W = sparse_knn_graph(X, 20)
    maps = spectral_embedding(W, 2, seed=0)
    from sklearn.cluster import k_means

    assert _acc(y, k_means(maps, 2, n_init=10, random_state=0)[1]) == 1.0


class _RowCounter(torch.nn.Module):
    """A head that records how many rows each forward pass reads."""

    def __init__(self, head):
        super().__init__()
        self.head, self.config, self.rows = head, head.config, []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.head(x)


@pytest.mark.parametrize("k, want", [(10, 512), (200, 600), (1000, 1000)])
def test_distillation_steps_read_512_rows_or_three_a_cluster_never_above_the_cut_batch(k, want):
    # 512 at small k; 3 rows a cluster at large k; never more than the cut's batch (1,000 here).
    head = _RowCounter(CutHead(HeadConfig(4, k, (8,))))
    X, labels = torch.randn(5000, 4), torch.randint(0, k, (5000,))
    curve = distill(head, X, labels, TrainConfig(distill_steps=3), torch.Generator().manual_seed(0))
    assert head.rows == [want] * 3 and [c["step"] for c in curve] == [-3, -2, -1]
    assert distill_batch_size(TrainConfig(), k) == want


def test_distillation_fits_the_labels_it_is_given():
    X, y = _blobs([300, 300, 300])
    head = CutHead(HeadConfig(X.shape[1], 3, (32,)))
    distill(head, torch.as_tensor(X), torch.as_tensor(y), TrainConfig(distill_steps=100), torch.Generator().manual_seed(0))
    assert (head(torch.as_tensor(X)).argmax(1).numpy() == y).mean() > 0.99
