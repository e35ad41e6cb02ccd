"""NeuralCut, the in-memory estimator: quality, validation, persistence."""

import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from ray_ncut import NeuralCut
from ray_ncut.data import load_builtin
from ray_ncut.metrics import accuracy


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=3000, n_features=8, centers=5, cluster_std=1.0, random_state=3)


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return NeuralCut(n_clusters=5, steps=150, batch_size=500, hidden=(64, 64), random_state=0).fit(X)


def test_separates_well_separated_blobs(blobs, fitted):
    X, y = blobs
    assert accuracy(y, fitted.labels_) >= 0.99
    assert accuracy(y, fitted.predict(X)) >= 0.99


@pytest.mark.parametrize("loss", ["ncut", "rcut", "cnc"])
def test_every_loss_separates_blobs_from_random_restarts(blobs, loss):
    # From a random start some seeds merge two blobs (a local minimum, one cluster
    # left empty); label-free selection by held-out cut must discard those.
    X, y = blobs
    est = NeuralCut(
        n_clusters=5, loss=loss, init="random", n_init=3, steps=300, batch_size=500, hidden=(64, 64), random_state=1
    )
    assert accuracy(y, est.fit_predict(X)) >= 0.99
    assert len(est.selection_ncut_) == 3
    assert est.training_curve_[-1]["loss"] < est.training_curve_[0]["loss"]


def test_scores_on_digits_at_least_as_well_as_kmeans():
    X, y = load_digits(return_X_y=True)
    kmeans_acc = accuracy(y, KMeans(10, n_init=10, random_state=0).fit_predict(X))
    ours = accuracy(y, NeuralCut(n_clusters=10, steps=200, random_state=0).fit_predict(X))
    assert ours >= kmeans_acc, f"NeuralCut {ours:.3f} < k-means {kmeans_acc:.3f}"


def test_predict_proba_rows_are_distributions(blobs, fitted):
    P = fitted.predict_proba(blobs[0][:100])
    assert P.shape == (100, 5)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(P.argmax(1), fitted.predict(blobs[0][:100]))


def test_random_state_makes_fit_reproducible(blobs):
    X, _ = blobs
    kw = dict(n_clusters=5, steps=30, batch_size=200, hidden=(32,), init="random", loss="cnc")
    a = NeuralCut(random_state=5, **kw).fit(X).predict_proba(X[:50])
    b = NeuralCut(random_state=5, **kw).fit(X).predict_proba(X[:50])
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(tmp_path, blobs, fitted):
    X, _ = blobs
    fitted.save(tmp_path / "model")
    loaded = NeuralCut.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["head"]["input_dim"] == 8 and config["head"]["n_clusters"] == 5
    assert config["scaler"]["mode"] == "standard" and len(config["scaler"]["mean"]) == 8
    assert config["train"]["loss"] == "ncut" and config["seed"] == 0 and config["config"]["n_clusters"] == 5
    assert config["format_version"] == 2
    assert "torch" in config["versions"]


def test_load_of_a_non_model_directory_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="model.pt"):
        NeuralCut.load(tmp_path)


@pytest.mark.parametrize(
    "X, params, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), {"n_clusters": 2},
         r"1 NaN or infinite value\(s\); the first at row 0, feature 1"),
        (np.ones((3, 2)), {"n_clusters": 4}, r"n_samples=3 should be >= n_clusters=4"),
        (np.ones((10, 2)), {"n_clusters": 0}, r"n_clusters=0 should be an integer >= 1"),
        (np.ones(10), {"n_clusters": 2}, r"Expected 2D array, got 1D array"),
        (np.ones((10, 2)), {"n_clusters": 2, "loss": "kmeans"}, r"loss='kmeans'"),
        (np.ones((10, 2)), {"n_clusters": 2, "sigma": -1.0}, r"sigma=-1.0"),
        ([["a", "b"], ["c", "d"]], {"n_clusters": 2}, r"could not convert string to float"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(X, params, match):
    with pytest.raises(ValueError, match=match):
        NeuralCut(steps=1, **params).fit(X)


def test_predict_with_wrong_dimension_names_both_dimensions(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but NeuralCut is expecting 8 features"):
        fitted.predict(np.zeros((4, 3)))


def test_predict_before_fit_is_a_clear_error():
    with pytest.raises(ValueError, match="not fitted"):
        NeuralCut().predict(np.zeros((4, 3)))


def test_rings_trained_on_a_sample_label_new_rows():
    """Two concentric rings: the plain relaxed cut settles on a straight line; the system does not."""
    X, _ = load_builtin("builtin:rings?n=3000")
    X_new, y_new = load_builtin("builtin:rings?n=20000&seed=5")
    est = NeuralCut(2, steps=200, hidden=(64, 64), batch_size=500, random_state=0).fit(X)
    assert accuracy(y_new, est.predict(X_new)) > 0.99
