"""Choosing k label-free: the relative eigengap, its guards, and NeuralCut(n_clusters="auto")."""

import numpy as np
import pytest
import torch

from ray_ncut import NeuralCut
from ray_ncut.choose_k import check_k_range, choose_k
from ray_ncut.config import GraphConfig
from ray_ncut.data import load_builtin
from ray_ncut.metrics import accuracy

torch.set_num_threads(1)


def standardised(uri):
    X, y = load_builtin(uri)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.mark.parametrize("k", [3, 7, 15, 30])
def test_separated_blobs_get_their_exact_k(k):
    X, _ = standardised(f"builtin:blobs?n={200 * k}&d=10&k={k}&std=1.0")
    choice = choose_k(X, GraphConfig(), (2, 50), seed=0)
    assert choice["k"] == k, choice["reason"]
    assert choice["margin"] > 0.5 and not choice["at_edge"]


@pytest.mark.parametrize("uri", ["builtin:rings?n=3000", "builtin:moons?n=3000"])
def test_two_curved_clusters_get_two(uri):
    X, _ = standardised(uri)
    choice = choose_k(X, GraphConfig(), (2, 50), seed=0)
    assert choice["k"] == 2, choice["reason"]
    # the absolute gap alone grows with k on a curve: it would not have chosen 2
    lam = np.array(choice["laplacian_eigenvalues"])
    assert np.argmax(np.diff(lam)[1:]) + 2 != 2


def test_the_search_stops_where_clusters_would_be_smaller_than_a_neighbourhood_and_says_so():
    X, _ = standardised("builtin:blobs?n=100&d=4&k=3&std=1.0")
    choice = choose_k(X, GraphConfig(), (2, 50), seed=0)
    assert choice["searched"] == [2, 5]  # 100 rows // 20 neighbours
    assert "k above 5 not searched" in choice["reason"]


def test_a_choice_at_the_top_of_a_narrow_range_is_flagged():
    X, _ = standardised("builtin:blobs?n=2000&d=10&k=7&std=1.0")
    choice = choose_k(X, GraphConfig(), (3, 5), seed=0)
    assert choice["k"] == 5 and choice["at_edge"] and "widen --k-range" in choice["reason"]


@pytest.mark.parametrize("k_range, message", [
    ((5, 3), "MIN should be <= MAX"), ((1, 4), "MIN should be >= 2"), ((2, 500), "MAX should be <= the number of rows, 100"),
    ("2,4", "should be two integers MIN,MAX"),
])
def test_bad_k_range_names_the_value(k_range, message):
    with pytest.raises(ValueError, match=message):
        check_k_range(k_range, 100)


def test_estimator_with_auto_k_fits_predicts_and_keeps_its_params():
    X, y = load_builtin("builtin:blobs?n=2000&d=6&k=5&std=1.0")
    est = NeuralCut("auto", steps=60, distill_steps=100, random_state=0).fit(X)
    assert est.n_clusters == "auto" and est.n_clusters_ == 5 and est.auto_["k"]["k"] == 5
    assert accuracy(y, est.predict(X)) > 0.99
    with pytest.raises(ValueError, match="k_range=3,2: MIN should be <= MAX"):
        NeuralCut("auto", k_range=(3, 2)).fit(X)
