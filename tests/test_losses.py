"""Losses against brute force and the CNC paper's worked example."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ray_ncut.losses import cnc_loss, kcl_loss, neuncut_loss, neurcut_loss
from ray_ncut.metrics import normalized_cut, ratio_cut


def two_triangles():
    """CNC Figure 1: triangles {0,1,2} and {3,4,5} joined by the edge 2-3, unit weights."""
    W = np.zeros((6, 6))
    for i, j in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (2, 3)]:
        W[i, j] = W[j, i] = 1.0
    return W, np.array([0, 0, 0, 1, 1, 1])


def brute_force_cuts(W, labels):
    """Ncut and Rcut straight from the definitions, with Python loops."""
    ncut = rcut = 0.0
    n = len(labels)
    for c in np.unique(labels):
        inside = [i for i in range(n) if labels[i] == c]
        cut = sum(W[i, j] for i in inside for j in range(n) if labels[j] != c)
        vol = sum(W[i, j] for i in inside for j in range(n))
        ncut += cut / vol
        rcut += cut / len(inside)
    return ncut, rcut


def random_graph(rng, n=12, k=3):
    A = rng.random((n, n)) * (rng.random((n, n)) < 0.5)
    W = np.triu(A, 1)
    W = W + W.T
    labels = rng.permutation(np.arange(n) % k)  # every cluster non-empty
    return W, labels


def test_two_triangles_ncut_is_two_sevenths():
    W, labels = two_triangles()
    assert normalized_cut(W, labels) == pytest.approx(2 / 7)
    Y = F.one_hot(torch.as_tensor(labels), 2).double()
    _, terms = neuncut_loss(Y, torch.as_tensor(W), gamma=1.0)
    assert terms["cut"] == pytest.approx(2 / 7, abs=1e-6)
    assert cnc_loss(Y, torch.as_tensor(W))[0].item() == pytest.approx(2 / 7, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_one_hot_losses_equal_discrete_cuts(seed):
    rng = np.random.default_rng(seed)
    W, labels = random_graph(rng)
    ncut, rcut = brute_force_cuts(W, labels)
    Wt, Y = torch.as_tensor(W), F.one_hot(torch.as_tensor(labels), 3).double()

    loss, terms = neuncut_loss(Y, Wt, gamma=5.0)
    assert terms["cut"] == pytest.approx(ncut, rel=1e-6)
    assert terms["orth"] == pytest.approx(0.0, abs=1e-8)
    assert loss.item() == pytest.approx(ncut, rel=1e-6)

    loss, terms = neurcut_loss(Y, Wt, gamma=5.0)
    assert terms["cut"] == pytest.approx(rcut, rel=1e-6)
    assert terms["orth"] == pytest.approx(0.0, abs=1e-8)

    assert cnc_loss(Y, Wt)[0].item() == pytest.approx(ncut, rel=1e-6)
    assert normalized_cut(W, labels) == pytest.approx(ncut)
    assert ratio_cut(W, labels) == pytest.approx(rcut)


def test_soft_assignment_pays_orthogonality_penalty():
    rng = np.random.default_rng(0)
    W, _ = random_graph(rng)
    Y = torch.full((12, 3), 1 / 3, dtype=torch.float64)
    _, terms = neuncut_loss(Y, torch.as_tensor(W), gamma=1.0)
    assert terms["orth"] > 0.1


def test_cnc_expected_cut_matches_definition_on_soft_assignments():
    rng = np.random.default_rng(1)
    W, _ = random_graph(rng, n=7, k=2)
    Y = torch.softmax(torch.as_tensor(rng.normal(size=(7, 2))), 1)
    d = W.sum(1)
    Yn = Y.numpy()
    expected = sum(
        sum(W[i, j] * Yn[i, c] * (1 - Yn[j, c]) for i, j in itertools.product(range(7), range(7))) / (Yn[:, c] @ d)
        for c in range(2)
    )
    assert cnc_loss(Y, torch.as_tensor(W))[0].item() == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("loss_fn", [neuncut_loss, neurcut_loss, cnc_loss])
@pytest.mark.parametrize("case", ["empty_cluster", "duplicate_points", "isolated_node"])
def test_gradients_finite_on_degenerate_inputs(loss_fn, case):
    from ray_ncut.affinity import knn_affinity

    torch.manual_seed(0)
    x = torch.randn(20, 3)
    logits = torch.randn(20, 4)
    if case == "empty_cluster":
        logits[:, 3] = -80.0  # softmax underflows to zero: cluster 3 has no mass at all
    if case == "duplicate_points":
        x = torch.ones(20, 3)
    W = knn_affinity(x, n_neighbors=5)
    if case == "isolated_node":
        W[0, :] = 0.0
        W[:, 0] = 0.0
    logits.requires_grad_(True)
    loss, _ = loss_fn(torch.softmax(logits, 1), W, 2.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


def test_kcl_zero_for_agreeing_similar_pairs_and_margin_for_dissimilar():
    P = torch.softmax(torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=torch.float64), 1)
    i, j = torch.tensor([0, 0]), torch.tensor([1, 2])
    similar = torch.tensor([True, False])
    # pair (0,1) identical -> KL 0; pair (0,2) far apart -> hinge on KL(p||q) each way
    p, q = P[0], P[2]
    kl_pq = (p * (p.log() - q.log())).sum()
    kl_qp = (q * (q.log() - p.log())).sum()
    expected = (0.0 + torch.relu(2 - kl_pq) + torch.relu(2 - kl_qp)) / 2
    assert kcl_loss(P, i, j, similar).item() == pytest.approx(expected.item(), abs=1e-9)


def test_kcl_pulls_must_links_together_and_pushes_cannot_links_apart():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=0.5)
    i, j = torch.tensor([0, 2]), torch.tensor([1, 3])
    similar = torch.tensor([True, False])
    for _ in range(300):
        opt.zero_grad()
        kcl_loss(torch.softmax(logits, 1), i, j, similar).backward()
        opt.step()
    labels = logits.argmax(1)
    assert labels[0] == labels[1]
    assert labels[2] != labels[3]
