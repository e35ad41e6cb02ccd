"""The corpus kNN-graph cut (faiss, sharded) against the brute-force graph. No Ray."""

import numpy as np
import pytest

from ray_ncut.knn import (
    IVF_MIN_ROWS,
    build_index,
    default_metric_sample,
    knn_cut,
    knn_graph,
    sparse_knn_graph,
)
from ray_ncut.metrics import normalized_cut, ratio_cut


@pytest.mark.parametrize("n_shards", [1, 7])
def test_sharded_knn_cut_equals_brute_force_graph(n_shards):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(1500, 6)).astype(np.float32)
    labels = (Z[:, 0] > 0).astype(np.int64) + 2 * (Z[:, 1] > 0.5)
    got = knn_cut(Z, labels, 4, n_neighbors=10, n_shards=n_shards, use_gpu=False)
    W = sparse_knn_graph(Z.astype(np.float64), 10)
    assert got["ncut"] == pytest.approx(normalized_cut(W, labels), rel=1e-4)
    assert got["rcut"] == pytest.approx(ratio_cut(W, labels), rel=1e-4)
    assert got["cluster_sizes"] == np.bincount(labels, minlength=4).tolist()


def test_large_index_is_ivf_and_finds_true_neighbours():
    import faiss

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 5, (50, 8))
    n = IVF_MIN_ROWS + 10_000
    X = (centres[rng.integers(0, 50, n)] + rng.normal(size=(n, 8))).astype(np.float32)
    index, kind = build_index(X, use_gpu=False)
    assert kind.startswith("IVF")
    exact = faiss.IndexFlatL2(8)
    exact.add(X)
    q = X[:200]
    _, approx_idx = index.search(q, 10)
    _, exact_idx = exact.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_idx, exact_idx)])
    assert recall >= 0.9


def _gpu_index_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@pytest.mark.skipif(_gpu_index_available(), reason="a GPU is here: tests/test_gpu.py checks the GPU index")
def test_gpu_request_without_a_gpu_falls_back_to_cpu():
    X = np.random.default_rng(2).normal(size=(100, 3)).astype(np.float32)
    index, kind = build_index(X, use_gpu=True)
    assert kind == "Flat" and index.ntotal == 100


def test_one_graph_scores_several_labellings_as_the_brute_force_graph_does():
    Z = np.random.default_rng(3).normal(size=(800, 4)).astype(np.float32)
    graph = knn_graph(Z, n_neighbors=8, use_gpu=False)
    W = sparse_knn_graph(Z.astype(np.float64), 8)
    for labels in ((Z[:, 0] > 0).astype(np.int64), (Z[:, 1] > 0).astype(np.int64) + 2 * (Z[:, 2] > 0)):
        got = graph.cut(labels, int(labels.max()) + 1)
        assert got["ncut"] == pytest.approx(normalized_cut(W, labels), rel=1e-4)
        assert got["rcut"] == pytest.approx(ratio_cut(W, labels), rel=1e-4)


def test_metric_sample_shrinks_with_the_dimension_to_bound_the_exact_search():
    assert default_metric_sample(2) == 100_000  # capped
    assert default_metric_sample(784) == 17_857  # sqrt(2.5e11 / 784)
    for d in (64, 500, 784, 4096):
        n = default_metric_sample(d)
        assert n * n * d <= 2.5e11 < (n + 1) ** 2 * d
