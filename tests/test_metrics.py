"""Sharded metrics equal one-shot metrics; ACC/NMI/ARI equal scikit-learn's."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ray_ncut.metrics import (
    accuracy,
    ari,
    clustering_scores,
    contingency_partial,
    cut_partial,
    cut_scores,
    merge_contingency,
    merge_cut,
    nmi,
    normalized_cut,
)


def brute_force_accuracy(y_true, y_pred):
    """Best accuracy over every injective map of clusters to classes (tiny k only)."""
    import itertools

    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    for perm in itertools.permutations(classes, len(clusters)):
        mapping = dict(zip(clusters, perm))
        best = max(best, sum(mapping[c] == t for c, t in zip(y_pred, y_true)))
    return best / len(y_true)


def uneven_splits(n, n_shards, rng):
    cuts = np.sort(rng.choice(np.arange(1, n), n_shards - 1, replace=False))
    return np.split(rng.permutation(n), cuts)


@pytest.mark.parametrize("seed", range(4))
def test_scores_match_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.6, (y_true + 1) % 4, rng.integers(0, 4, 300))
    assert nmi(y_true, y_pred) == pytest.approx(normalized_mutual_info_score(y_true, y_pred), abs=1e-12)
    assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-12)
    assert accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))


def test_scores_invariant_to_permuting_cluster_ids():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 5, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 5, 500))
    renamed = np.array([3, 0, 4, 1, 2])[y_pred]
    assert accuracy(y_true, renamed) == pytest.approx(accuracy(y_true, y_pred))
    assert nmi(y_true, renamed) == pytest.approx(nmi(y_true, y_pred))
    assert ari(y_true, renamed) == pytest.approx(ari(y_true, y_pred))
    assert accuracy(y_true, y_true + 10) == 1.0


def test_degenerate_labellings_match_sklearn():
    y = np.array([0, 0, 1, 1, 2])
    for pred in (np.zeros(5, int), np.arange(5), y):
        assert nmi(y, pred) == pytest.approx(normalized_mutual_info_score(y, pred))
        assert ari(y, pred) == pytest.approx(adjusted_rand_score(y, pred))


@pytest.mark.parametrize("seed", range(3))
def test_sharded_contingency_equals_one_shot(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    y_true = rng.choice(np.array(["cat", "dog", "eel", "fox"]), n)  # any sortable labels
    y_pred = rng.integers(0, 6, n)
    merged = None
    for idx in uneven_splits(n, 9, rng):
        merged = merge_contingency(merged, contingency_partial(y_true[idx], y_pred[idx]))
    one_shot = contingency_partial(y_true, y_pred)
    np.testing.assert_array_equal(merged.table, one_shot.table)
    assert clustering_scores(merged) == clustering_scores(one_shot)


def test_shards_missing_some_classes_and_clusters_still_merge_exactly():
    a = contingency_partial([0, 0, 1], [5, 5, 5])
    b = contingency_partial([2, 2], [7, 9])
    merged = merge_contingency(a, b)
    one_shot = contingency_partial([0, 0, 1, 2, 2], [5, 5, 5, 7, 9])
    np.testing.assert_array_equal(merged.table, one_shot.table)


def test_sharded_cut_equals_one_shot_on_random_sparse_graph():
    rng = np.random.default_rng(3)
    n, k = 400, 5
    A = sp.random(n, n, density=0.03, random_state=4, format="coo")  # directed kNN-like edges
    labels = rng.integers(0, k, n)
    W_sym = (A + A.T) / 2
    expected = normalized_cut(W_sym, labels)

    # Shard by source node, as a per-shard neighbour search would produce.
    merged = None
    for nodes in uneven_splits(n, 7, rng):
        mask = np.isin(A.row, nodes)
        part = cut_partial(labels[A.row[mask]], labels[A.col[mask]], A.data[mask], labels[nodes], k)
        merged = merge_cut(merged, part)
    scores = cut_scores(merged)
    assert scores["ncut"] == pytest.approx(expected, rel=1e-12)
    assert scores["cluster_sizes"] == np.bincount(labels, minlength=k).tolist()


def test_cut_of_dense_and_sparse_graph_agree():
    rng = np.random.default_rng(5)
    W = rng.random((30, 30)) * (rng.random((30, 30)) < 0.3)
    W = W + W.T
    labels = rng.integers(0, 3, 30)
    assert normalized_cut(sp.csr_matrix(W), labels) == pytest.approx(normalized_cut(W, labels))
