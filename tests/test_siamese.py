"""Learned affinity: the Siamese embedding and the cut head trained on it."""

import numpy as np
import torch

from ray_ncut import NeuralCut
from ray_ncut.data import load_builtin
from ray_ncut.metrics import accuracy
from ray_ncut.siamese import SiameseConfig, contrastive_loss, embed, train_siamese

torch.set_num_threads(1)


def test_contrastive_loss_by_hand():
    za, zp, zn = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]]), torch.tensor([[0.3, 0.4]])
    # positive: |za - zp|^2 = 25; negative: (margin 1 - 0.5)^2 = 0.25
    assert contrastive_loss(za, zp, zn, 1.0).item() == 25.25


def test_embedding_pulls_neighbours_together_and_pushes_random_pairs_apart():
    X, _ = load_builtin("builtin:blobs?n=1500&d=8&k=5")
    Xt = torch.from_numpy((X - X.mean(0)) / X.std(0))
    Z = embed(train_siamese(Xt, SiameseConfig(dim=4, hidden=(64, 64), steps=300), seed=0), Xt).numpy()
    nearest = np.argsort(((X[:, None] - X[None]) ** 2).sum(2), axis=1)[:, 1]  # input-space neighbour
    rng = np.random.default_rng(0)
    random_pair = rng.integers(0, len(Z), len(Z))
    to_neighbour = np.linalg.norm(Z - Z[nearest], axis=1)
    to_random = np.linalg.norm(Z - Z[random_pair], axis=1)
    assert np.median(to_neighbour) < 0.25 * np.median(to_random)


def test_head_on_siamese_affinity_separates_rings_and_predicts_without_the_embedding(tmp_path):
    X, y = load_builtin("builtin:rings?n=3000")
    est = NeuralCut(2, affinity="siamese", siamese_params={"hidden": (64, 64), "steps": 300}, steps=200,
                    hidden=(64, 64), batch_size=500, random_state=0).fit(X)
    assert accuracy(y, est.labels_) > 0.99
    assert est.auto_["siamese"]["steps"] == 300 and est.auto_["siamese"]["dim"] == SiameseConfig().dim
    est.save(str(tmp_path / "m"))
    X_new, y_new = load_builtin("builtin:rings?n=5000&seed=4")
    assert accuracy(y_new, NeuralCut.load(str(tmp_path / "m")).predict(X_new)) > 0.99
