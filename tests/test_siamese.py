"""Learned affinity: the Siamese embedding and the cut head trained on it."""

import numpy as np
import pytest
import torch

from ray_ncut import NeuralCut
from ray_ncut.data import load_builtin
from ray_ncut.metrics import accuracy
from ray_ncut.nn import mlp
from ray_ncut.siamese import Projection, SiameseConfig, contrastive_loss, embed, siamese_inputs, train_siamese

torch.set_num_threads(1)


def test_contrastive_loss_by_hand():
    za, zp, zn = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), torch.tensor([[0.3, 0.4]])
    # positive: |za - zp|^2 = 25; negative: (margin 1 - 0.5)^2 = 0.25
    assert contrastive_loss(za, zp, zn, 1.0).item() == 25.25


def test_embedding_pulls_neighbours_together_and_pushes_random_pairs_apart():
    X, _ = load_builtin("builtin:blobs?n=1500&d=8&k=5")
    Xt = torch.from_numpy((X - X.mean(0)) / X.std(0))
    Z = embed(train_siamese(Xt, SiameseConfig(dim=4, hidden=(64, 64), steps=300), seed=0, n_clusters=5), Xt).numpy()
    nearest = np.argsort(((X[:, None] - X[None]) ** 2).sum(2), axis=1)[:, 1]  # input-space neighbour
    rng = np.random.default_rng(0)
    random_pair = rng.integers(0, len(Z), len(Z))
    to_neighbour = np.linalg.norm(Z - Z[nearest], axis=1)
    to_random = np.linalg.norm(Z - Z[random_pair], axis=1)
    assert np.median(to_neighbour) < 0.25 * np.median(to_random)


def test_head_on_siamese_affinity_separates_rings_and_predicts_without_the_embedding(tmp_path):
    X, y = load_builtin("builtin:rings?n=3000")
    est = NeuralCut(2, affinity="siamese", siamese_steps=300, siamese_params={"hidden": (64, 64)}, steps=200,
                    hidden=(64, 64), batch_size=500, random_state=0).fit(X)
    assert accuracy(y, est.labels_) > 0.99
    assert est.auto_["siamese"]["steps"] == 300 and est.auto_["siamese"]["dim"] == SiameseConfig().dim
    assert est.auto_["siamese"]["trained_on_components"] == 0  # 2 features: nothing to project
    est.save(str(tmp_path / "m"))
    X_new, y_new = load_builtin("builtin:rings?n=5000&seed=4")
    assert accuracy(y_new, NeuralCut.load(str(tmp_path / "m")).predict(X_new)) > 0.99


def test_projection_is_the_leading_principal_components_and_folds_into_the_first_layer():
    rng = np.random.default_rng(0)
    X = torch.from_numpy((rng.normal(size=(400, 12)) * np.linspace(5, 0.5, 12) @ np.linalg.qr(rng.normal(size=(12, 12)))[0]
                          + 3.0).astype(np.float32))
    projection = Projection.fit(X, 4)
    centred = X.double() - X.double().mean(0)
    eigenvalues = np.linalg.eigvalsh((centred.T @ centred).numpy())[::-1]  # brute force, descending
    P = projection(X).double()
    np.testing.assert_allclose((P.T @ P).numpy(), np.diag(eigenvalues[:4]), rtol=1e-4, atol=1e-2 * eigenvalues[0])
    torch.manual_seed(0)
    net = mlp(4, (16,), 3)
    on_components = net(projection(X)).detach()
    folded = projection.fold(net)
    assert folded[0].in_features == 12
    torch.testing.assert_close(folded(X).detach(), on_components, rtol=1e-4, atol=1e-4)


def test_wide_inputs_train_on_components_and_the_network_still_reads_every_feature():
    X, _ = load_builtin("builtin:blobs?n=1500&d=8&k=5")
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(80, 8)))[0]  # 8 signal directions in 80 features
    X = (((X - X.mean(0)) / X.std(0)) @ basis.T + rng.normal(0, 0.05, (1500, 80))).astype(np.float32)
    Xt = torch.from_numpy(X)
    config = SiameseConfig(dim=4, hidden=(64, 64), steps=300, components=10)
    assert siamese_inputs(Xt, config, 5)[0].shape == (1500, 10)
    assert siamese_inputs(Xt, config, 30)[0].shape == (1500, 30)  # one component per cluster at least
    assert siamese_inputs(Xt, config, 41)[1] is None  # 41 components would not halve the 80 inputs
    assert siamese_inputs(Xt, SiameseConfig(components=0), 5)[1] is None  # 0: never projected
    assert siamese_inputs(Xt[:, :20], config, 5)[1] is not None and siamese_inputs(Xt[:, :19], config, 5)[1] is None
    net = train_siamese(Xt, config, seed=0, n_clusters=5)
    assert net[0].in_features == 80
    Z = embed(net, Xt).numpy()
    nearest = np.argsort(((X[:, None] - X[None]) ** 2).sum(2), axis=1)[:, 1]
    random_pair = rng.integers(0, len(Z), len(Z))
    assert np.median(np.linalg.norm(Z - Z[nearest], axis=1)) < 0.25 * np.median(np.linalg.norm(Z - Z[random_pair], axis=1))
    est = NeuralCut(5, affinity="siamese", scaling="standard", siamese_steps=50, steps=20,
                    siamese_params={"hidden": (32, 32), "components": 10}, random_state=0).fit(X)
    assert est.auto_["siamese"]["trained_on_components"] == 10  # what the fit did, in its record


def test_the_jobs_embedding_of_wide_inputs_is_the_in_memory_one(tmp_path):
    """The training job projects, trains (here in process, as one Ray Train worker would) and folds
    exactly as ``train_siamese`` does: the sample's code is the same."""
    from ray_ncut.config import GraphConfig, TrainConfig
    from ray_ncut.model import HeadConfig
    from ray_ncut.pipeline.executor import LocalExecutor
    from ray_ncut.pipeline.train import _train_embedding
    from ray_ncut.ray.train import TrainJob

    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 60)).astype(np.float32)
    config = SiameseConfig(dim=4, hidden=(32, 32), steps=100, components=8)
    job = TrainJob(HeadConfig(60, 3, (32,)), GraphConfig(), TrainConfig(), seed=3, workers=1, gpus_per_worker=0.0,
                   checkpoint_every=100, storage_path=str(tmp_path))
    Z_job = _train_embedding(LocalExecutor(), job, X, config, 3, None, progress=lambda line: None)
    Xt = torch.from_numpy(X)
    torch.testing.assert_close(Z_job, embed(train_siamese(Xt, config, seed=3, n_clusters=3), Xt), rtol=1e-4, atol=1e-5)


def rings_in_50d(n: int, seed: int, signal: int = 24, d: int = 50):
    """Two concentric rings (radii 1 and 2) mapped smoothly and non-linearly into ``signal``
    dimensions (the plane's coordinates and random sine features of it, rotated), then
    ``d - signal`` columns of pure noise of the same scale. Returns X (n, d), y (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1.0 + y + rng.normal(0, 0.05, n)
    plane = np.c_[radius * np.cos(angle), radius * np.sin(angle)]  # (n, 2)
    freq, phase = rng.normal(0, 0.7, (2, signal - 2)), rng.uniform(0, 2 * np.pi, signal - 2)
    rotation, _ = np.linalg.qr(rng.normal(size=(signal, signal)))
    S = np.c_[plane, np.sin(plane @ freq + phase)] @ rotation  # (n, signal)
    S = (S - S.mean(0)) / S.std(0)
    return np.c_[S, rng.normal(0, 1, (n, d - signal))].astype(np.float32), y


@pytest.mark.slow
def test_cut_on_the_learned_code_separates_rings_in_50d_where_the_raw_cut_does_not():
    X, y = rings_in_50d(2000, seed=0)
    raw = NeuralCut(2, affinity="knn", random_state=0).fit(X)
    learned = NeuralCut(2, random_state=0).fit(X)  # the default affinity="auto"
    assert learned.auto_["affinity"]["chosen"] == "siamese"  # 50 features on one scale
    assert accuracy(y, raw.labels_) < 0.75  # noise columns drown the rings in the raw kNN graph
    assert accuracy(y, learned.labels_) > 0.95  # the code learnt to ignore them


def test_auto_affinity_stays_on_the_raw_graph_for_tables():
    X, _ = load_builtin("builtin:blobs?n=600&d=4&k=3")
    X[:, 0] *= 1000.0  # a table in mixed units
    est = NeuralCut(3, steps=20, distill_steps=20, random_state=0).fit(X)
    assert est.auto_["affinity"] == {"chosen": "knn", "scaling": "standard",
                                     "reason": "features standardised: a table, or fewer than 16 features"}
    assert "siamese" not in est.auto_ and est.graph_config_.affinity == "knn"
