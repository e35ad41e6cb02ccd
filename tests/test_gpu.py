"""GPU paths: CUDA training and labelling, the faiss GPU index. Skipped, with the reason, without a GPU."""

import numpy as np
import pytest
import torch

from ray_ncut import NeuralCut
from ray_ncut.assign import ClusterAssigner
from ray_ncut.data import load_builtin
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
    gpu = ClusterAssigner(str(tmp_path / "m"), device="auto")
    cpu = ClusterAssigner(str(tmp_path / "m"), device="cpu")
    assert gpu.model.device.type == "cuda"
    assert (gpu.model.assign(X[:5000])[1] == cpu.model.assign(X[:5000])[1]).mean() > 0.999


def test_faiss_uses_the_gpu_index_when_a_gpu_build_is_installed():
    faiss = pytest.importorskip("faiss", reason="faiss not installed")
    if not hasattr(faiss, "StandardGpuResources"):
        pytest.skip("faiss is a CPU build (install the 'gpu' extra for the GPU index)")
    from ray_ncut.knn import build_index

    X = np.random.default_rng(0).normal(size=(5000, 16)).astype(np.float32)
    _, kind = build_index(X)
    assert kind.endswith("(GPU)")


def test_ray_jobs_train_and_label_on_the_gpu(tmp_path):
    """Both jobs as a user runs them (embedded Ray, which finds the GPU): the train worker
    and the labelling actors take GPUs, and the labels are right."""
    pytest.importorskip("ray", reason="ray not installed")
    import json
    import os
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # not the CPU session cluster
    run, labels = tmp_path / "run", tmp_path / "labels"
    for args in (["train.py", "--data", BLOBS, "--out", str(run), "--steps", "100"],
                 ["assign.py", "--model", str(run), "--out", str(labels), "--label-column", "label"]):
        done = subprocess.run([sys.executable, os.path.join(root, "jobs", args[0]), *args[1:]], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["devices"] == "gpu" and summary["workers"] == torch.cuda.device_count()
    assert summary["affinity"] == "siamese"  # 32 features on one scale: the embedding, trained by Ray Train on the GPU
    assert (run / "ray_train" / "embedding").is_dir()
    metrics = json.loads((labels / "metrics.json").read_text())
    assert metrics["rows"] == 20000 and metrics["ground_truth"]["acc"] > 0.95
