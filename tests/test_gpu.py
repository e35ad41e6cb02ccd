"""GPU paths: CUDA training and labelling, the faiss GPU index. Skipped, with the reason, without a GPU."""

import numpy as np
import pytest
import torch

from ray_ncut import NeuralCut
from ray_ncut.data import load_builtin
from ray_ncut.labeling import ClusterLabeler
from ray_ncut.metrics import accuracy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch"),
]
BLOBS = "builtin:blobs?n=20000&d=32&k=8"


@pytest.fixture(scope="module")
def fitted_on_gpu():
    X, y = load_builtin(BLOBS)
    est = NeuralCut(8, steps=200, random_state=0).fit(X)  # device="auto" -> cuda
    return est, X, y


def test_estimator_trains_on_the_gpu(fitted_on_gpu):
    est, _, y = fitted_on_gpu
    assert next(est.head_.parameters()).device.type == "cuda"
    assert accuracy(y, est.labels_) > 0.95


def test_gpu_and_cpu_labels_agree(fitted_on_gpu, tmp_path):
    est, X, _ = fitted_on_gpu
    est.save(str(tmp_path / "m"))
    gpu = ClusterLabeler(str(tmp_path / "m"), device="auto")
    cpu = ClusterLabeler(str(tmp_path / "m"), device="cpu")
    assert gpu.device.type == "cuda"
    assert (gpu.predict(X[:5000])[1] == cpu.predict(X[:5000])[1]).mean() > 0.999


def test_faiss_uses_the_gpu_index_when_a_gpu_build_is_installed():
    faiss = pytest.importorskip("faiss", reason="faiss not installed")
    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss is a CPU build (install the 'gpu' extra for the GPU index)")
    from ray_ncut.knn import build_index

    X = np.random.default_rng(0).normal(size=(5000, 16)).astype(np.float32)
    _, kind = build_index(X)
    assert kind.endswith("(GPU)")
