"""Large k (issue 27): hundreds of clusters train in seconds, and every output holds k = 1,000."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jobs_helpers import job
from ray_ncut import NeuralCut
from ray_ncut.config import TrainConfig
from ray_ncut.metrics import accuracy
from ray_ncut.prepare import BATCH_ROWS_PER_CLUSTER, WARM_ROWS_PER_CLUSTER, sized_for_k


def _separated_blobs(k, n, d, seed=0):
    """n rows (n, d) of k unit Gaussians whose nearest centres are ~7 standard deviations apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10 / np.sqrt(2), (k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_sample_and_batch_grow_with_k_and_never_shrink():
    small = sized_for_k(TrainConfig(), 10)
    assert (small.init_sample, small.batch_size) == (TrainConfig().init_sample, TrainConfig().batch_size)
    big = sized_for_k(TrainConfig(), 1000)
    assert big.init_sample == WARM_ROWS_PER_CLUSTER * 1000 and big.batch_size == BATCH_ROWS_PER_CLUSTER * 1000
    asked = sized_for_k(TrainConfig(init_sample=50_000, batch_size=8000), 1000)
    assert (asked.init_sample, asked.batch_size) == (50_000, 8000)  # what a user asked for above the floor stays


def test_three_hundred_separated_clusters_on_thirty_thousand_rows():
    X, y = _separated_blobs(300, 30_000, 10)
    est = NeuralCut(300, random_state=0).fit(X)
    labels = est.predict(X)
    assert accuracy(y, labels) >= 0.99
    assert len(np.unique(labels)) == 300  # every cluster holds rows
    assert est.train_config_.batch_size == 1000 and est.train_config_.init_sample == 6000  # 20 rows a cluster


def test_labels_metrics_and_report_at_k_one_thousand(tmp_path):
    k, n, d = 1000, 12_000, 8
    y = np.arange(n) % k  # 12 rows a class
    X = (np.random.default_rng(1).normal(0, 10, (k, d))[y] + np.random.default_rng(2).normal(0, 1, (n, d)))
    pq.write_table(pa.table({"id": np.arange(n) + 7, **{f"f{j}": X[:, j].astype(np.float32) for j in range(d)},
                             "label": y}), tmp_path / "data.parquet")
    run = job("cluster.py", ["--data", tmp_path / "data.parquet", "--k", k, "--out", tmp_path / "out",
                             "--engine", "local", "--steps", 20, "--distill-steps", 50, "--label-column", "label"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"steps of batch {3 * k}" in run.stdout  # the minibatch grew with k

    labels = pd.read_parquet(tmp_path / "out" / "labels" / "labels")
    assert len(labels) == n and sorted(labels["id"]) == list(range(7, n + 7))
    assert labels["cluster"].between(0, k - 1).all() and labels["confidence"].between(0, 1).all()
    metrics = json.loads((tmp_path / "out" / "labels" / "metrics.json").read_text())
    assert metrics["rows"] == n and len(metrics["cluster_sizes"]) == k == len(metrics["cluster_ids"])
    assert sum(metrics["cluster_sizes"]) == n
    table = np.asarray(metrics["ground_truth"]["contingency"]["table"])
    assert table.shape[0] == k and table.sum() == n  # classes x the clusters that hold rows
    assert table.shape[1] == len(metrics["ground_truth"]["contingency"]["clusters"]) <= k
    html = (tmp_path / "out" / "labels" / "report.html").read_text()
    assert "other 970" in html  # the 30 largest drawn one by one, the rest as one
