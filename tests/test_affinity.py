"""The minibatch affinity: shape, symmetry, sparsity, and a scale-free bandwidth."""

import pytest
import torch

from ray_ncut.affinity import knn_affinity, squared_distances


def test_squared_distances_match_cdist():
    x = torch.randn(50, 7, dtype=torch.float64)
    torch.testing.assert_close(squared_distances(x), torch.cdist(x, x) ** 2)


@pytest.mark.parametrize("local_scaling", [False, True])
def test_affinity_is_symmetric_sparse_nonnegative_with_zero_diagonal(local_scaling):
    torch.manual_seed(0)
    x = torch.randn(100, 5)
    W = knn_affinity(x, n_neighbors=6, local_scaling=local_scaling)
    assert W.shape == (100, 100)
    torch.testing.assert_close(W, W.T)
    assert (W >= 0).all() and (W.diagonal() == 0).all()
    nonzeros = (W > 0).sum(1)
    assert (nonzeros >= 6).all()  # own s neighbours, plus those that chose it
    assert nonzeros.float().mean() < 12


def test_row_keeps_its_true_nearest_neighbours():
    torch.manual_seed(1)
    x = torch.randn(60, 3)
    W = knn_affinity(x, n_neighbors=4)
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    nearest = d.topk(4, largest=False).indices
    assert (W.gather(1, nearest) > 0).all()


@pytest.mark.parametrize("local_scaling", [False, True])
def test_auto_bandwidth_makes_affinity_scale_free(local_scaling):
    torch.manual_seed(2)
    x = torch.randn(80, 4, dtype=torch.float64)
    W1 = knn_affinity(x, n_neighbors=8, local_scaling=local_scaling)
    W2 = knn_affinity(1000.0 * x, n_neighbors=8, local_scaling=local_scaling)
    torch.testing.assert_close(W1, W2)


def test_fixed_sigma_is_the_heat_kernel():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    W = knn_affinity(x, n_neighbors=2, sigma=2.0)
    assert W[0, 1].item() == pytest.approx(torch.exp(torch.tensor(-1 / 8)).item())
    assert W[0, 2].item() == pytest.approx(torch.exp(torch.tensor(-9 / 8)).item())


def test_duplicate_points_give_finite_affinity():
    W = knn_affinity(torch.ones(10, 2), n_neighbors=3)
    assert torch.isfinite(W).all()
