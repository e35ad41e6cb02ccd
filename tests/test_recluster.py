"""Scheduled reclustering through the jobs: day 1 train and label, day 2 the same clusters grown,
day 3 a new cluster appears (cluster ids stay put; a new cluster gets a new id); incremental
labelling of a growing folder; the drift check."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs_helpers import job

pytestmark = pytest.mark.ray

SMALL = ["--steps", "60", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "30"]
CENTRES = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])  # the 4th appears on day 3


def _rows(rng, first_id, per_centre, centres):
    X = np.concatenate([c + 0.5 * rng.normal(size=(per_centre, 2)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(len(centres)), per_centre)
    return pa.table({"id": np.arange(first_id, first_id + len(X)), "f1": X[:, 0], "f2": X[:, 1], "truth": y})


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Three growing folders of Parquet files: each day's folder holds the earlier days' files."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("days")
    parts = [_rows(rng, 0, 500, CENTRES[:3]), _rows(rng, 1500, 500, CENTRES[:3]), _rows(rng, 3000, 600, CENTRES[3:])]
    for day in (1, 2, 3):
        (root / f"d{day}").mkdir()
        for i, part in enumerate(parts[:day]):
            pq.write_table(part, root / f"d{day}" / f"part-{i}.parquet")
    return root


COLS = ["--feature-columns", "f1,f2"]


@pytest.fixture(scope="module")
def model1(ray_cluster, days, tmp_path_factory):
    """Day 1's model, trained by jobs/train.py."""
    out = tmp_path_factory.mktemp("day1") / "m1"
    run("train.py", "--data", days / "d1", "--k", 3, "--out", out, *COLS, *SMALL)
    return out


def labels_by_id(out):
    t = pq.read_table(out / "labels")
    return dict(zip(t.column("id").to_pylist(), t.column("cluster").to_pylist()))


def run(name, *args):
    done = job(name, [*map(str, args)])
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ids_stay_put_as_the_data_grows_and_a_new_cluster_gets_a_new_id(model1, days, tmp_path):
    cols = COLS
    run("assign.py", "--model", model1, "--data", days / "d1", "--out", tmp_path / "l1", *cols)
    day1 = labels_by_id(tmp_path / "l1")
    assert (model1 / "reference.npy").exists()

    # day 2: the same three clusters, twice the rows
    done = run("recluster.py", "--previous", model1, "--data", days / "d2", "--out", tmp_path / "m2",
               *cols, *SMALL)
    assert "recluster: 3 clusters kept their ids" in done.stdout
    report = json.loads((tmp_path / "m2" / "recluster.json").read_text())
    assert report["matched"] == 3 and report["new"] == [] and report["vanished"] == [] and report["churn"] < 0.02
    run("assign.py", "--model", tmp_path / "m2", "--data", days / "d2", "--out", tmp_path / "l2", *cols)
    day2 = labels_by_id(tmp_path / "l2")
    assert len(day2) == 3000  # every row, old and new
    assert np.mean([day2[i] != day1[i] for i in day1]) < 0.02  # old rows keep their ids

    # day 3: a fourth cluster appears among the new rows
    run("recluster.py", "--previous", tmp_path / "m2", "--data", days / "d3", "--k", 4, "--out", tmp_path / "m3",
        *cols, *SMALL)
    report = json.loads((tmp_path / "m3" / "recluster.json").read_text())
    assert report["new"] == [3] and report["matched"] == 3 and report["next_cluster_id"] == 4
    run("assign.py", "--model", tmp_path / "m3", "--data", days / "d3", "--out", tmp_path / "l3", *cols)
    day3 = labels_by_id(tmp_path / "l3")
    assert np.mean([day3[i] != day2[i] for i in day2]) < 0.02
    assert np.mean([day3[i] == 3 for i in range(3000, 3600)]) > 0.95
    metrics = json.loads((tmp_path / "l3" / "metrics.json").read_text())
    assert sorted(metrics["cluster_ids"]) == [0, 1, 2, 3] and sum(metrics["cluster_sizes"]) == 3600


def test_recluster_refuses_data_of_another_dimension_in_one_line(model1, days, tmp_path):
    done = job("recluster.py", ["--previous", model1, "--data", days / "d1", "--out", tmp_path / "m2",
                                "--feature-columns", "f1", *SMALL])
    assert done.returncode == 2 and not (tmp_path / "m2").exists()
    # the previous model's columns are read by name: naming one of its two is refused before any work
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --feature-columns should name the 2 columns the model {model1} was trained on ['f1', 'f2']; "
        "'f2' is not among both")
    # positional rows of another dimension
    np.save(tmp_path / "one.npy", np.zeros((50, 1), np.float32))
    done = job("recluster.py", ["--previous", model1, "--data", tmp_path / "one.npy", "--out", tmp_path / "m2", *SMALL])
    assert done.returncode == 2 and not (tmp_path / "m2").exists()
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'one.npy'} has 1 features, but the previous model {model1} expects 2")


def _inodes(out):
    return {p.name: p.stat().st_ino for p in (out / "labels").iterdir()}


@pytest.mark.slow
def test_incremental_labels_only_new_and_changed_files_and_publishes_every_row_once(model1, days, tmp_path):
    folder = tmp_path / "growing"
    folder.mkdir()
    for name in ("part-0.parquet", "part-1.parquet"):  # days 1 and 2: 3,000 rows
        (folder / name).write_bytes((days / "d2" / name).read_bytes())
    out = tmp_path / "labels"
    args = ["--model", model1, "--data", folder, "--out", out, *COLS]
    run("assign.py", *args)
    first = json.loads((out / "metrics.json").read_text())
    assert first["rows_labelled"] == 3000 and (out / "manifest.json").exists()
    before = _inodes(out)

    (folder / "part-2.parquet").write_bytes((days / "d3" / "part-2.parquet").read_bytes())  # 600 new rows
    done = run("assign.py", *args, "--incremental")
    m = json.loads((out / "metrics.json").read_text())
    assert m["rows_labelled"] == 600 and m["rows"] == 3600  # only the new file was read
    assert m["incremental"] == {"files_reused": 2, "rows_reused": 3000} and "reused from 2 unchanged" in done.stdout
    ids = pq.read_table(out / "labels").column("id").to_numpy()
    assert np.array_equal(np.sort(ids), np.arange(3600))  # old and new, each exactly once
    assert {n: i for n, i in _inodes(out).items() if n in before} == before  # old parts reused, not rewritten

    table = pq.read_table(folder / "part-0.parquet")  # an old file is rewritten: relabelled
    pq.write_table(table.set_column(1, "f1", pa.array(table.column("f1").to_numpy() + 6.0)), folder / "part-0.parquet")
    run("assign.py", *args, "--incremental")
    m = json.loads((out / "metrics.json").read_text())
    assert m["rows_labelled"] == 1500 and m["rows"] == 3600
    moved = labels_by_id(out)
    assert np.mean([moved[i] == moved[500] for i in range(500)]) > 0.95  # blob (0,0) moved onto blob (6,0)


def test_the_drift_check_trips_on_shifted_rows_and_not_on_rows_like_the_training_ones(model1, days, tmp_path):
    same = run("assign.py", "--model", model1, "--data", days / "d2", "--out", tmp_path / "same", *COLS)
    assert "drift check: no recluster needed" in same.stdout
    assert json.loads((tmp_path / "same" / "metrics.json").read_text())["drift"]["due"] is False

    rng = np.random.default_rng(5)
    X = (np.array([3.0, 3.0]) + 1.5 * rng.normal(size=(2000, 2))).astype(np.float32)  # between the clusters
    pq.write_table(pa.table({"id": np.arange(2000), "f1": X[:, 0], "f2": X[:, 1]}), tmp_path / "shifted.parquet")
    shifted = run("assign.py", "--model", model1, "--data", tmp_path / "shifted.parquet", "--out",
                  tmp_path / "moved", *COLS)
    assert "drift check: a full recluster is due" in shifted.stdout
    assert json.loads((tmp_path / "moved" / "metrics.json").read_text())["drift"]["due"] is True
