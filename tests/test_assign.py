"""jobs/assign.py: labels equal NeuralCut.predict, ids exactly once, exact metrics, atomic publish."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_blobs

from jobs_helpers import rendered_report
from ray_ncut import NeuralCut
from ray_ncut.assign import ClusterAssigner
from ray_ncut.knn import sparse_knn_graph
from ray_ncut.metrics import accuracy, ari, contingency_partial, nmi, normalized_cut

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3,000 rows of 4 overlapping blobs, shuffled over 6 Parquet files of many row groups,
    with a trained in-memory model saved as a model directory."""
    X, y = make_blobs(3000, n_features=5, centers=4, cluster_std=2.5, random_state=0)
    X = X.astype(np.float32)
    root = tmp_path_factory.mktemp("assign")
    model = NeuralCut(n_clusters=4, steps=60, batch_size=500, hidden=(32, 32), random_state=0).fit(X)
    model.save(root / "model")
    ids = np.arange(10_000, 13_000)
    order = np.random.default_rng(1).permutation(3000)
    data = root / "data"
    data.mkdir()
    for i, idx in enumerate(np.array_split(order, 6)):
        feats = pa.FixedSizeListArray.from_arrays(pa.array(X[idx].ravel()), 5)
        pq.write_table(pa.table({"id": ids[idx], "features": feats, "truth": y[idx]}),
                       data / f"f{i}.parquet", row_group_size=130)
    return {"root": root, "X": X, "y": y, "ids": ids, "model": model, "data": data}


@pytest.fixture(scope="module")
def labelled(ray_cluster, corpus):
    """The corpus labelled once by jobs/assign.py, with ground truth and 2 actors: tests that change
    an output work on a copy (``cp -a``, as a user would move one)."""
    out = corpus["root"] / "labels"
    done = assign(["--model", str(corpus["root"] / "model"), "--data", str(corpus["data"]),
                   "--out", str(out), "--label-column", "truth", "--actors", "2"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Published to" in done.stdout
    return out


def copy_of(out, tmp_path):
    subprocess.run(["cp", "-a", str(out), str(tmp_path / "labels")], check=True)
    return tmp_path / "labels"


def assign(args):
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "assign.py"), *args],
                          capture_output=True, text=True, timeout=300)


def read_labels(out):
    return pd.read_parquet(out / "labels").set_index("id").sort_index()


def test_labeler_on_a_plain_batch_matches_predict(corpus):
    assigner = ClusterAssigner(str(corpus["root"] / "model"))
    X = corpus["X"][:50]
    out = assigner({"id": np.arange(50), "features": X})
    np.testing.assert_array_equal(out["cluster"], corpus["model"].predict(X))
    assert out["cluster"].dtype == np.int32 and out["confidence"].dtype == np.float32
    np.testing.assert_allclose(out["confidence"], corpus["model"].predict_proba(X).max(1), rtol=1e-6)


@pytest.mark.ray
def test_labeler_works_on_ray_take_batch(ray_cluster, corpus):
    import ray

    ds = ray.data.from_items([{"id": i, "features": corpus["X"][i]} for i in range(20)])
    batch = ds.take_batch(8)
    out = ClusterAssigner(str(corpus["root"] / "model"))(batch)
    np.testing.assert_array_equal(out["cluster"], corpus["model"].predict(corpus["X"][batch["id"]]))


@pytest.mark.ray
def test_labels_ids_and_exact_metrics(corpus, labelled):
    out = labelled
    labels = read_labels(out)
    assert labels.index.is_unique and len(labels) == 3000
    np.testing.assert_array_equal(labels.index.to_numpy(), corpus["ids"])  # every id exactly once
    expected = corpus["model"].predict(corpus["X"])
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), expected)
    assert str(labels["cluster"].dtype) == "int32" and str(labels["confidence"].dtype) == "float32"

    m = json.loads((out / "metrics.json").read_text())
    y = corpus["y"]
    assert m["rows"] == 3000 and m["data"]["read_units"] == 6 * 4
    assert m["cluster_sizes"] == np.bincount(expected, minlength=4).tolist()
    gt = m["ground_truth"]
    assert gt["acc"] == pytest.approx(accuracy(y, expected), abs=1e-12)
    assert gt["nmi"] == pytest.approx(nmi(y, expected), abs=1e-12)
    assert gt["ari"] == pytest.approx(ari(y, expected), abs=1e-12)
    # the cut on the kNN graph of the (scaled) corpus, against the brute-force graph
    Z = corpus["model"].scaler_.transform(corpus["X"])
    brute = normalized_cut(sparse_knn_graph(Z.astype(np.float64), 10), expected)
    assert m["normalized_cut"]["ncut"] == pytest.approx(brute, rel=1e-4)
    assert m["normalized_cut"]["sample"] == "all rows"
    assert set(m["stage_seconds"]) == {"start", "label", "validate", "ncut"}
    assert m["rows_per_second"] > 0 and m["steady_rows_per_second"] > 0
    # the report's numbers are exact sharded merges too: the histogram of every written confidence,
    # the contingency table of every row
    hist = np.histogram(labels["confidence"].to_numpy(), bins=20, range=(0.0, 1.0))[0]
    assert m["confidence_histogram"]["counts"] == hist.tolist()
    one_shot = contingency_partial(y, expected)
    assert m["ground_truth"]["contingency"]["table"] == one_shot.table.tolist()
    assert m["ground_truth"]["contingency"]["clusters"] == one_shot.clusters.tolist()


@pytest.mark.ray
def test_every_labelling_run_writes_a_report_whose_images_render(labelled, tmp_path):
    out = copy_of(labelled, tmp_path)
    page = (out / "report.html").read_text()
    for section in ("Training curve", "Cluster sizes", "Confidence", "2-D projection", "Confusion matrix"):
        assert f"<h2>{section}</h2>" in page
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    shown = rendered_report(out / "report.html", tmp_path)
    # four pictures; a legend entry per cluster; a count in every cell of the 4 x 4 confusion matrix
    assert shown == {"images": (4, 4), "legend": 4, "counts": 16}, shown
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000
    # a broken image is caught: the check can fail
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("base64,iVBOR", "base64,AAAA", 1))
    assert rendered_report(broken, tmp_path)["images"] == (3, 4)

    # jobs/report.py re-renders it; the output stays ray_ncut's own (listed in its marker)
    before = (out / "report.html").stat().st_mtime_ns
    again = subprocess.run([sys.executable, str(ROOT / "jobs" / "report.py"), str(out)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and f"Wrote {out / 'report.html'}" in again.stdout
    assert (out / "report.html").stat().st_mtime_ns != before
    assert "report.html" in json.loads((out / "_RAY_NCUT.json").read_text())["files"]
    missing = subprocess.run([sys.executable, str(ROOT / "jobs" / "report.py"), str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'} is not a directory"
    assert (out / "_SUCCESS").exists()


@pytest.mark.ray
def test_failed_job_leaves_previous_output_and_overwrite_replaces_it_whole(corpus, labelled, tmp_path):
    out = copy_of(labelled, tmp_path)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # no --overwrite: refused, nothing touched
    done = assign(["--model", str(corpus["root"] / "model"), "--data", str(corpus["data"]), "--out", str(out)])
    assert done.returncode == 2 and "already exists" in done.stderr.strip().splitlines()[-1]

    # a NaN in the last file fails the job after other units were written to staging
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(corpus["data"].iterdir()):
        (bad / f.name).write_bytes(f.read_bytes())
    t = pq.read_table(bad / "f5.parquet").to_pandas()
    t.at[len(t) - 1, "features"] = np.array([np.nan] * 5, dtype=np.float32)
    pq.write_table(pa.Table.from_pandas(t), bad / "f5.parquet")
    done = assign(["--model", str(corpus["root"] / "model"), "--data", str(bad), "--out", str(out), "--overwrite"])
    assert done.returncode != 0
    assert "NaN" in done.stderr.strip().splitlines()[-1]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or ".old-" in p.name]

    # --overwrite with good input replaces the directory whole
    done = assign(["--model", str(corpus["root"] / "model"), "--data", str(corpus["data"]), "--out", str(out),
                   "--overwrite"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "metrics.json").read_bytes() != before[Path("metrics.json")]  # replaced whole
    assert len(read_labels(out)) == 3000


@pytest.mark.ray
def test_dimension_mismatch_is_one_clear_line(ray_cluster, corpus, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((10, 3), np.float32))
    done = assign(["--model", str(corpus["root"] / "model"), "--data", str(path), "--out", str(tmp_path / "o")])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {path} has 3 features, but the model expects 5"
    assert not (tmp_path / "o").exists()
