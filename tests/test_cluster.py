"""jobs/cluster.py: training and labelling in one Ray session give what the two jobs give."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_blobs

from jobs_helpers import job

SMALL = ["--steps", "60", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "30",
         "--label-column", "label"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    X, y = make_blobs(2400, n_features=3, centers=4, cluster_std=1.5, random_state=4)
    d = tmp_path_factory.mktemp("cluster") / "data"
    d.mkdir()
    for i, idx in enumerate(np.array_split(np.arange(2400), 3)):
        pq.write_table(pa.table({"id": idx + 500, "a": X[idx, 0], "b": X[idx, 1], "c": X[idx, 2], "label": y[idx]}),
                       d / f"part-{i}.parquet", row_group_size=400)
    return d


@pytest.mark.ray
@pytest.mark.slow
def test_one_session_gives_the_model_labels_and_metrics_of_the_two_jobs(ray_cluster, table, tmp_path):
    both = job("cluster.py", ["--data", table, "--k", "4", "--out", tmp_path / "c", *SMALL])
    assert both.returncode == 0, both.stderr[-3000:]
    assert f"Cluster directory {tmp_path / 'c'}: model/ and labels/" in both.stdout
    first = job("train.py", ["--data", table, "--k", "4", "--out", tmp_path / "m", *SMALL])
    assert first.returncode == 0, first.stderr[-3000:]
    second = job("assign.py", ["--model", tmp_path / "m", "--data", table, "--out", tmp_path / "l",
                               "--label-column", "label"])
    assert second.returncode == 0, second.stderr[-3000:]

    model = tmp_path / "c" / "model"
    assert (model / "model.pt").read_bytes() == (tmp_path / "m" / "model.pt").read_bytes()
    ours = pd.read_parquet(tmp_path / "c" / "labels" / "labels").sort_values("id")
    theirs = pd.read_parquet(tmp_path / "l" / "labels").sort_values("id")
    np.testing.assert_array_equal(ours.to_numpy(), theirs.to_numpy())
    m_ours = json.loads((tmp_path / "c" / "labels" / "metrics.json").read_text())
    m_theirs = json.loads((tmp_path / "l" / "metrics.json").read_text())
    for key in ("rows", "cluster_sizes", "ground_truth", "normalized_cut", "confidence_histogram"):
        assert m_ours[key] == m_theirs[key], key
    assert m_ours["ground_truth"]["acc"] > 0.9 and (tmp_path / "c" / "labels" / "report.html").is_file()

    again = job("cluster.py", ["--data", table, "--k", "4", "--out", tmp_path / "c", *SMALL])
    assert again.returncode == 2 and "--overwrite" in again.stderr  # the finished model is kept

    # small data worked in the job's own process, without Ray: the same model, labels and metrics
    here = job("cluster.py", ["--data", table, "--k", "4", "--out", tmp_path / "h", "--engine", "local", *SMALL])
    assert here.returncode == 0, here.stderr[-3000:]
    assert here.stdout.count("working in this process (no Ray cluster started)") == 2  # training, labelling
    assert "labelling 2400 rows in 6 units in this process" in here.stdout
    assert (tmp_path / "h" / "model" / "model.pt").read_bytes() == (model / "model.pt").read_bytes()
    local = pd.read_parquet(tmp_path / "h" / "labels" / "labels").sort_values("id")
    np.testing.assert_array_equal(local.to_numpy(), ours.to_numpy())
    m_here = json.loads((tmp_path / "h" / "labels" / "metrics.json").read_text())
    for key in ("rows", "cluster_sizes", "ground_truth", "normalized_cut", "confidence_histogram"):
        assert m_here[key] == m_ours[key], key


@pytest.mark.parametrize("named, running, one_worker, values, gpu, expected", [
    (False, 0, True, 10**6, False, False),          # small work, nothing to join: this process
    (False, 0, True, 10**6, True, True),            # a GPU: Ray (the GPU paths run there)
    (False, 0, True, 2 * 10**8, False, True),       # more values than IN_PROCESS_VALUES
    (False, 0, False, 10**6, False, True),          # several workers asked for
    (False, 1, True, 10**6, False, True),           # a cluster runs on this machine: join it
    (True, 0, True, 10**6, False, True),            # RAY_ADDRESS names one
])
def test_auto_engine_uses_ray_only_where_it_pays(monkeypatch, named, running, one_worker, values, gpu, expected):
    import ray
    import torch

    from ray_ncut.pipeline import executor
    from ray_ncut.ray import dataset

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(dataset, "clusters_on_this_machine", lambda: running)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    if named:
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert executor.wants_ray("auto", values, one_worker) is expected
    assert executor.wants_ray("ray", values, one_worker)
    if one_worker:
        assert executor.wants_ray("local", values, one_worker) is False
    else:  # several workers cannot run in this process: one line, before anything is written
        with pytest.raises(ValueError, match="--engine local works in this process with one CPU worker"):
            executor.wants_ray("local", values, one_worker)
