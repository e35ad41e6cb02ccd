"""jobs/train.py on Ray Data + Ray Train: quality, ray job submit, resume, retries, bad input."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_ncut import NeuralCut
from ray_ncut.data import load_builtin
from ray_ncut.metrics import accuracy

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
BLOBS = "builtin:blobs?n=6000&d=6&k=4&std=1.0"
SMALL = ["--steps", "60", "--batch-size", "300", "--hidden", "64,64", "--checkpoint-every", "30"]


def train(args, check=True):
    """Run jobs/train.py in-process (joins the session cluster); returns exit code."""
    from ray_ncut.pipeline.commands import train_main

    code = train_main(args)
    if check:
        assert code == 0
    return code


@pytest.fixture(scope="module")
def blob_parquet(tmp_path_factory):
    """BLOBS written as 3 Parquet files of shuffled rows, features as a fixed-size list."""
    X, y = load_builtin(BLOBS)
    order = np.random.default_rng(0).permutation(len(X))
    d = tmp_path_factory.mktemp("parquet")
    for i, idx in enumerate(np.array_split(order, 3)):
        feats = pa.FixedSizeListArray.from_arrays(pa.array(X[idx].ravel()), X.shape[1])
        table = pa.table({"row": idx.astype(np.int64), "features": feats, "truth": y[idx]})
        pq.write_table(table, d / f"part-{i}.parquet", row_group_size=700)
    return d, X, y


def test_two_workers_on_parquet_learn_the_blobs(ray_cluster, blob_parquet, tmp_path):
    d, X, y = blob_parquet
    out = tmp_path / "run"
    train(["--data", str(d), "--id-column", "row", "--k", "4", "--workers", "2", "--out", str(out), *SMALL])
    model = NeuralCut.load(out)
    assert accuracy(y, model.predict(X)) >= 0.99
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 6000 and summary["workers"] == 2 and summary["devices"] == "cpu"
    curve = (out / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,loss,cut,orth" and len(curve) == 61


@pytest.mark.slow
def test_two_workers_on_builtin_blobs(ray_cluster, tmp_path):
    out = tmp_path / "run"
    train(["--data", BLOBS, "--workers", "2", "--out", str(out), *SMALL])
    X, y = load_builtin(BLOBS)
    assert accuracy(y, NeuralCut.load(out).predict(X)) >= 0.99
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["uri"] == BLOBS and config["scaler"]["mode"] == "standard"


def test_auto_gamma_siamese_affinity_and_constraints_in_one_run(ray_cluster, blob_parquet, tmp_path):
    d, X, y = blob_parquet
    pairs = tmp_path / "pairs.csv"
    rows = [f"{a},{b},{'must' if y[a] == y[b] else 'cannot'}" for a, b in np.random.default_rng(0).integers(0, 6000, (40, 2))]
    pairs.write_text("id_a,id_b,link\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    train(["--data", str(d), "--id-column", "row", "--k", "4", "--out", str(out), "--gamma", "auto",
           "--affinity", "siamese", "--siamese-steps", "100", "--constraints", str(pairs), *SMALL])
    assert accuracy(y, NeuralCut.load(out).predict(X)) >= 0.99
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["gamma"] == "auto" and config["train"]["gamma"] == config["auto"]["gamma"]["gamma"]
    assert config["auto"]["sigma"]["mode"] == "auto" and config["auto"]["sigma"]["sigma"] > 0
    assert config["auto"]["siamese"]["steps"] == 100 and config["graph"]["affinity"] == "siamese"
    # one CPU worker on one machine: the embedding and the head were trained in the job's process
    assert (out / "ray_train" / "in_process" / "embedding").is_dir()
    assert config["constraints"]["pairs"] == 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"] == 1  # the default on a CPU cluster of one node: one worker with all its cores
    curve_header = (out / "curve.csv").read_text().splitlines()[0]
    assert curve_header == "step,loss,cut,orth,kcl"  # every loss term, the constraints' included


@pytest.mark.slow
def test_embedding_trained_by_ray_train_in_process_and_in_memory_is_the_same_with_one_worker(ray_cluster, tmp_path):
    import torch

    from ray_ncut.config import GraphConfig, TrainConfig
    from ray_ncut.knn import neighbour_table
    from ray_ncut.loops import embed_in_process
    from ray_ncut.model import HeadConfig
    from ray_ncut.ray.train import TrainJob, run_embedding_training
    from ray_ncut.siamese import SiameseConfig, train_siamese

    X, _ = load_builtin("builtin:blobs?n=800&d=8&k=4")
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    config = SiameseConfig(dim=4, hidden=(32, 32), steps=300)
    neighbours = neighbour_table(X, config.n_neighbors)
    job = TrainJob(HeadConfig(8, 4, (32,)), GraphConfig(), TrainConfig(), seed=3, workers=1, gpus_per_worker=0.0,
                   checkpoint_every=100, storage_path=str(tmp_path))
    by_ray = run_embedding_training(job, X, neighbours, config)
    in_process = embed_in_process(job, X, neighbours, config, progress=lambda line: None)
    in_memory = train_siamese(torch.from_numpy(X), config, seed=3, n_clusters=4,
                              neighbours=torch.from_numpy(neighbours)).state_dict()
    assert by_ray.keys() == in_memory.keys() == in_process.keys()
    for name in in_memory:
        torch.testing.assert_close(by_ray[name], in_memory[name], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(in_process[name], in_memory[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_head_trained_in_process_is_the_one_ray_train_trains_with_one_worker(ray_cluster, tmp_path):
    from dataclasses import replace

    import torch

    from ray_ncut.config import GraphConfig, TrainConfig
    from ray_ncut.loops import train_in_process
    from ray_ncut.model import CutHead, HeadConfig
    from ray_ncut.ray.train import TrainJob, run_training

    X, _ = load_builtin("builtin:blobs?n=1500&d=6&k=4")
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    head = HeadConfig(6, 4, (32,))
    torch.manual_seed(0)
    init = CutHead(head).state_dict()
    job = TrainJob(head, GraphConfig(), TrainConfig(steps=90, batch_size=300), seed=5, workers=1,
                   gpus_per_worker=0.0, checkpoint_every=30, storage_path=str(tmp_path / "ray"))
    by_ray = run_training(job, X, init)
    in_process = train_in_process(replace(job, storage_path=str(tmp_path / "here")), X, init,
                                  progress=lambda line: None)
    assert [c["step"] for c in in_process.curve] == [c["step"] for c in by_ray.curve] == list(range(90))
    assert in_process.step == by_ray.step == 90 and in_process.resumed_from == by_ray.resumed_from == 0
    for name in by_ray.model:
        torch.testing.assert_close(in_process.model[name], by_ray.model[name], rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "here" / "in_process" / "train").glob("checkpoint_*.pt"))) == 2  # the last two


def test_k_auto_through_train_and_assign_chooses_the_blobs_and_says_why(ray_cluster, blob_parquet, tmp_path):
    d, X, y = blob_parquet
    run, labels = tmp_path / "run", tmp_path / "labels"
    train(["--data", str(d), "--id-column", "row", "--k", "auto", "--k-range", "2,12", "--out", str(run), *SMALL])
    summary = json.loads((run / "summary.json").read_text())
    choice = summary["k_choice"]
    assert summary["k"] == choice["k"] == 4  # four separated blobs
    assert choice["range"] == [2, 12] and set(choice["gaps"]) == {str(k) for k in range(2, 13)}
    assert choice["gaps"]["4"] == max(choice["gaps"].values()) and 0 < choice["margin"] <= 1
    assert json.loads((run / "config.json").read_text())["auto"]["k"]["k"] == 4
    assert _assign(["--model", str(run), "--data", str(d), "--id-column", "row", "--out", str(labels)]) == 0
    assigned = pq.read_table(labels / "labels").column("cluster").to_numpy()
    assert len(assigned) == 6000 and len(np.unique(assigned)) == 4


def _assign(args):
    from ray_ncut.pipeline.commands import assign_main

    return assign_main(args)


def test_constraint_id_missing_from_the_data_is_one_line(ray_cluster, blob_parquet, tmp_path, capsys):
    d, _, _ = blob_parquet
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("id_a,id_b,link\n3,999999,must\n")
    out = tmp_path / "run"
    code = train(["--data", str(d), "--id-column", "row", "--k", "4", "--out", str(out),
                  "--constraints", str(pairs), *SMALL], check=False)
    assert code == 2 and not out.exists()
    assert "--constraints: 1 id(s) not found in the data, e.g. '999999'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make_data, extra, message",
    [
        (lambda d: str(d / "missing.parquet"), [], "no such file or directory"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--feature-columns", "x,zz"], "feature column 'zz' not found"),
        (lambda d: _parquet(d, {"x": [1.0, float("nan"), 3.0], "z": [0.0, 1.0, 2.0]}), [],
         "has 1 NaN or infinite value(s); the first at row 1, column 'x': nan"),
        (lambda d: _two_files_nan_in_second(d), ["--k", "2"],
         "has 1 row(s) with NaN or infinite values; the first at row id part-1.parquet:2, column 'x': inf"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "5"], "n_rows=3, fewer than k=5"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "auto", "--k-range", "3,2"],
         "--k-range=3,2: MIN should be <= MAX"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "auto", "--k-range", "1,3"],
         "--k-range=1,3: MIN should be >= 2"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "auto", "--k-range", "2,50"],
         "--k-range=2,50: MAX should be <= the number of rows, 3"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "auto", "--k-range", "2-5"],
         "--k-range should be MIN,MAX (two integers), got '2-5'"),
        (lambda d: _parquet(d, {"x": [1.0, 2.0, 3.0]}), ["--k", "many"], "--k should be an integer >= 2 or 'auto', got 'many'"),
    ],
    ids=["wrong-path", "missing-column", "nan", "nan-found-by-ray-scan", "rows-lt-k", "k-range-min-gt-max",
         "k-range-min-lt-2", "k-range-max-gt-rows", "k-range-not-two-ints", "k-not-a-number"],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(ray_cluster, tmp_path, capsys, make_data, extra, message):
    out = tmp_path / "out"
    k = [] if "--k" in extra else ["--k", "2"]
    code = train(["--data", make_data(tmp_path), "--out", str(out), *k, *extra, *SMALL], check=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    errors = [line for line in err if line.startswith("error: ")]
    assert errors == [err[-1]] and message in err[-1], err[-5:]
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def _parquet(d, columns):
    path = d / "data.parquet"
    pq.write_table(pa.table(columns), path)
    return str(path)


def _two_files_nan_in_second(d):
    """The first file is clean (planning reads it), so the NaN is found by the Ray scan."""
    folder = d / "two"
    folder.mkdir()
    pq.write_table(pa.table({"x": np.arange(5.0), "z": np.arange(5.0)}), folder / "part-0.parquet")
    pq.write_table(pa.table({"x": [1.0, 2.0, np.inf], "z": [0.0, 1.0, 2.0]}), folder / "part-1.parquet")
    return str(folder)


def test_gamma_that_is_neither_a_number_nor_auto_is_one_line(tmp_path, capsys):
    code = train(["--gamma", "big", "--out", str(tmp_path / "run")], check=False)
    assert code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err.strip() == "error: --gamma should be 'auto' or a number, got 'big'"
