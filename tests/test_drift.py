"""The drift check (ray_ncut.drift): a model's fit to shifted rows trips it, to rows from the same
distribution it does not. No Ray."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from ray_ncut import NeuralCut
from ray_ncut.drift import LOW_CONFIDENCE, drift_check, fit_state


@pytest.fixture(scope="module")
def model():
    X, _ = make_blobs(3000, n_features=2, centers=[[0, 0], [6, 0], [0, 6]], cluster_std=0.6, random_state=0)
    return NeuralCut(3, steps=100, hidden=(32, 32), affinity="knn", random_state=0).fit(X), X


def state(est, X):
    proba = est.predict_proba(X)
    return fit_state(est.scaler_.transform(X), proba.argmax(1), proba.max(1), est.n_clusters_)


def test_rows_from_the_training_distribution_do_not_trip_it(model):
    est, X = model
    fresh, _ = make_blobs(2000, n_features=2, centers=[[0, 0], [6, 0], [0, 6]], cluster_std=0.6, random_state=1)
    check = drift_check(state(est, X), state(est, fresh))
    assert check["due"] is False, check


def test_shifted_rows_trip_it_and_say_why(model):
    est, X = model
    # the data moved: a blob halfway between two clusters, and one far from all
    shifted, _ = make_blobs(2000, n_features=2, centers=[[3, 0], [3, 3]], cluster_std=1.2, random_state=2)
    check = drift_check(state(est, X), state(est, shifted))
    assert check["due"] is True and "at training ->" in check["reason"], check


def test_fit_state_counts_low_confidence_rows_and_handles_a_model_without_a_record():
    Z = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    conf = np.r_[np.full(30, LOW_CONFIDENCE - 0.1), np.full(70, 0.9)]
    s = fit_state(Z, (Z[:, 0] > 0).astype(int), conf, 2)
    assert s["low_confidence"] == pytest.approx(0.3) and s["rows"] == 100 and 0 <= s["ncut"] <= 2
    assert drift_check(None, s)["due"] is None
