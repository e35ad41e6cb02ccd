"""Minibatch samplers, the soft assignments and the constraint draw of the training loop."""

import numpy as np
import torch

from ray_ncut.config import TrainConfig
from ray_ncut.engine import (
    LOGIT_RANGE,
    Constraints,
    neighbour_batches,
    random_batches,
    soft_assignments,
    training_batches,
)
from ray_ncut.knn import neighbour_table


def _brute_neighbours(X, s):
    d2 = ((X[:, None] - X[None]) ** 2).sum(2)
    np.fill_diagonal(d2, np.inf)
    return np.argsort(d2, axis=1)[:, :s]


def test_neighbour_table_matches_brute_force():
    X = np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32)
    assert (neighbour_table(X, 6) == _brute_neighbours(X, 6)).mean() > 0.99  # ties may swap


def test_neighbour_batches_hold_each_anchors_neighbours():
    X = torch.arange(500, dtype=torch.float32)[:, None]  # row i holds the value i
    table = torch.from_numpy(_brute_neighbours(X.numpy(), 4))
    for batch in neighbour_batches(X, table, batch_size=100, per_anchor=3, steps=5, generator=torch.Generator().manual_seed(0)):
        rows = set(batch[:, 0].long().tolist())
        assert len(rows) == len(batch) <= 100  # distinct rows, within the batch size
        has_neighbour = [any(int(j) in rows for j in table[i]) for i in rows]
        assert np.mean(has_neighbour) > 0.7  # anchors and their neighbours sit together


def test_training_batches_are_uniform_without_a_table_or_with_zero_neighbours():
    X = torch.randn(50, 2)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    expected = [b for b in random_batches(X, 20, 3, g())]
    for got in (training_batches(X, TrainConfig(batch_size=20), 3, g()),
                training_batches(X, TrainConfig(batch_size=20, batch_neighbors=0), 3, g(), neighbours=torch.zeros(50, 4).long())):
        assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_constraint_draw_reindexes_pairs_into_the_rows_it_returns():
    X = torch.arange(10, dtype=torch.float32)[:, None]
    c = Constraints(X, torch.tensor([0, 2, 4]), torch.tensor([9, 3, 5]), torch.tensor([True, False, True]))
    rows, first, second, similar = c.sample(3, torch.Generator().manual_seed(0))
    pairs = {(int(rows[f]), int(rows[s]), bool(m)) for f, s, m in zip(first, second, similar)}
    assert pairs == {(0, 9, True), (2, 3, False), (4, 5, True)}


def test_soft_assignments_are_the_softmax_without_subnormal_entries():
    # Spread logits, as a trained head gives at large k: the plain softmax holds subnormal floats.
    logits = (torch.randn(200, 1000, generator=torch.Generator().manual_seed(0)) * 40).requires_grad_()
    plain = torch.softmax(logits, dim=1)
    assert (plain[plain > 0] < torch.finfo(torch.float32).tiny).any()
    Y = soft_assignments(logits)
    assert Y.min() >= np.exp(-LOGIT_RANGE) / 1000 > torch.finfo(torch.float32).tiny
    assert torch.allclose(Y.sum(1), torch.ones(200))
    moved = 2 * 1000 * np.exp(-LOGIT_RANGE)  # the top entry gives at most k e^-R to the floor (2x: float32)
    assert (Y - plain).abs().max() < moved
    assert torch.equal(Y.argmax(1), plain.argmax(1))
    # The gradient is the softmax's, up to entries as small as the floor.
    weights = torch.rand(200, 1000, generator=torch.Generator().manual_seed(1))
    grad_floored, = torch.autograd.grad((Y * weights).sum(), logits)
    grad_plain, = torch.autograd.grad((plain * weights).sum(), logits)
    assert (grad_floored - grad_plain).abs().max() < moved
