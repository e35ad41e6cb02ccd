"""Shapes and tables the default must not break: no clean shape split in two, background noise
not made a cluster, a table in one range at least level with k-means (issue 26)."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from ray_ncut import NeuralCut
from ray_ncut.config import GraphConfig
from ray_ncut.data.shapes import NOISE, crossing_lines, make_shape, spirals
from ray_ncut.engine import LabelsSettled
from ray_ncut.knn import heat_kernel_graph, nearest
from ray_ncut.metrics import accuracy
from ray_ncut.warmstart import graph_components, outside_sparse_regions, spectral_labels


def _largest_share(y, labels):
    """(k,) for each true shape, the largest share of its rows that one cluster holds."""
    return np.array([np.bincount(labels[y == c]).max() / (y == c).sum() for c in range(y.max() + 1)])


@pytest.mark.parametrize("name", ["spirals-noise", "blobs-on-noise"])
def test_shapes_on_background_noise_are_not_split_and_noise_is_no_cluster(name):
    X, y = make_shape(name, seed=0)
    k = int(y.max()) + 1
    labels = NeuralCut(k, random_state=0).fit_predict(X)
    shape = y != NOISE
    share = _largest_share(y[shape], labels[shape])
    assert share.min() >= 0.95, f"a shape of {name} is split: largest shares {share.round(3)}"
    assert len(np.unique(labels[shape])) == k  # each cluster holds a shape, none only noise


@pytest.mark.xfail(strict=True, reason="a graph cut cuts a thin line anywhere more cheaply than at the crossing "
                                       "(Ncut 0.005 against 0.088 for the two lines); docs/quality.md")
def test_crossing_lines_are_not_split():
    X, y = crossing_lines(noise=0.05, seed=0)
    labels = NeuralCut(2, random_state=0).fit_predict(X)
    shape = y != NOISE
    assert _largest_share(y[shape], labels[shape]).min() >= 0.9


def test_uniform_background_is_set_aside_and_a_wide_cluster_beside_a_dense_one_is_not_lost():
    X, y = spirals(n=2000, noise=0.05, seed=1)
    d2, idx = nearest(X, 20, "exact")
    dense = outside_sparse_regions(np.sqrt(d2[:, -1]), graph_components(heat_kernel_graph(d2, idx)))
    assert (~dense[y == NOISE]).mean() > 0.25  # the sparsest background rows are set aside ...
    assert dense[y != NOISE].mean() > 0.99  # ... and almost no row of a spiral
    X, y = make_shape("two-densities", seed=1)  # 30% of rows in a wide Gaussian: a cluster, not noise
    assert accuracy(y, spectral_labels(X, 2, GraphConfig(), seed=0)) > 0.95  # (its far tail may be set aside)


def test_training_stops_when_the_labels_settle_and_not_before():
    probe = torch.randn(500, 4)
    head = torch.nn.Linear(4, 3)
    settled = LabelsSettled(probe, every=5, checks=2)
    assert not any(settled(head, step) for step in range(9))  # from step 0's labels: one quiet window
    assert settled(head, 9) and settled.stopped_at == 10  # the second quiet window
    moving = LabelsSettled(probe, every=1, checks=2)
    for step in range(20):
        with torch.no_grad():
            head.weight.copy_(torch.randn(3, 4))  # every check sees new labels
        assert not moving(head, step)


@pytest.mark.slow
def test_a_table_of_twenty_features_in_one_range_is_level_with_kmeans():
    # 5,000 rows, 20 features on 0-100 (the scaling rule's unit-length rows and learned code apply),
    # 10 Gaussian classes of std 18 that overlap: k-means' home ground.
    rng = np.random.default_rng(0)
    centres = rng.uniform(20, 80, (10, 20))
    y = rng.integers(0, 10, 5000)
    X = np.clip(centres[y] + rng.normal(0, 18, (5000, 20)), 0, 100).astype(np.float32)
    kmeans = accuracy(y, KMeans(10, n_init=10, random_state=0).fit_predict(StandardScaler().fit_transform(X)))
    ours = accuracy(y, NeuralCut(10, random_state=0).fit_predict(X))
    assert ours >= kmeans - 0.01, (ours, kmeans)
