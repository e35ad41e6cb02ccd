"""Outputs on object storage, against a real S3 endpoint: moto's server, started here on localhost.

The endpoint and credentials are set for the whole test session in conftest.py (before the
session's Ray head starts, so that its workers, which write the label files, reach it too).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits

from jobs_helpers import job, start_job, wait_for
from ray_ncut import NeuralCut
from ray_ncut.outputs import MARKER_FILE, OutputError, RemoteOutput, committed, open_output, readable


@pytest.fixture(scope="module")
def s3():
    """A bucket on a moto S3 server of this module: ``(pyarrow filesystem, "s3://bucket")``."""
    pytest.importorskip("moto", reason="moto[server] is in the test extra")
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    port = endpoint.rsplit(":", 1)[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", port],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, "moto_server did not start"
            time.sleep(0.3)
    fs = pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)
    fs.create_dir("bucket")
    yield fs, "s3://bucket"
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def objects(fs, prefix):
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(i.path[len(prefix) + 1 :] for i in infos if i.type == pafs.FileType.File)


def folder(tmp_path, name, files):
    """A local folder holding ``files`` (name -> text) and a sealed marker, as a job's staging is."""
    from ray_ncut.outputs.local import make_staging, seal

    path = make_staging(str(tmp_path / name), "model")
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        with open(os.path.join(path, rel), "w") as f:
            f.write(text)
    seal(path, "model")
    return path


# --------------------------------------------------------------------------- the commit protocol


def test_a_publish_is_visible_only_through_the_pointer_and_replaces_the_previous_version(s3, tmp_path):
    fs, bucket = s3
    out = f"{bucket}/protocol/model"
    assert committed(out) is None
    RemoteOutput(out, "model").publish(folder(tmp_path, "a", {"config.json": "one", "sub/x.txt": "1"}))
    first = committed(out)
    local = readable(out)
    assert open(os.path.join(local, "config.json")).read() == "one"
    assert open(os.path.join(local, "sub", "x.txt")).read() == "1"

    RemoteOutput(out, "model").publish(folder(tmp_path, "b", {"config.json": "two"}))
    second = committed(out)
    assert second != first and open(os.path.join(readable(out), "config.json")).read() == "two"
    version = second.rsplit("/", 1)[1]
    # the previous version is deleted once the new one is committed; nothing else is left
    assert objects(fs, "bucket/protocol/model") == [MARKER_FILE, f"{version}/{MARKER_FILE}", f"{version}/config.json"]
    pointer = json.loads(fs.open_input_stream(f"bucket/protocol/model/{MARKER_FILE}").read())
    assert pointer["committed"] == version and pointer["kind"] == "model"
    assert sorted(pointer["files"]) == [f"{version}/{MARKER_FILE}", f"{version}/config.json"]


def test_an_uncommitted_version_is_invisible_and_a_dead_runs_version_is_cleaned(s3, tmp_path):
    fs, bucket = s3
    out = f"{bucket}/uncommitted/model"
    RemoteOutput(out, "model").publish(folder(tmp_path, "a", {"config.json": "kept"}))
    kept = committed(out)
    # a run in another process writes a version and is killed before its commit
    code = ("from ray_ncut.outputs import RemoteOutput; import os, pyarrow.fs as f;"
            f"r = RemoteOutput({out!r}, 'model'); v = r.begin();"
            "s, p = f.FileSystem.from_uri(v); s.open_output_stream(p + '/config.json').write(b'half');"
            "os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], check=False)
    versions = {rel.split("/")[0] for rel in objects(fs, "bucket/uncommitted/model") if "/" in rel}
    assert len(versions) == 2  # the dead run's version is there ...
    assert committed(out) == kept and open(os.path.join(readable(out), "config.json")).read() == "kept"  # ... unseen
    # the next run of the same output removes it (its owner is dead); the committed one stays
    assert RemoteOutput(out, "model").clean_stale() == sorted(versions - {kept.rsplit("/", 1)[1]})
    assert committed(out) == kept


def test_remote_outputs_follow_the_local_ownership_rules(s3, tmp_path):
    fs, bucket = s3
    with fs.open_output_stream("bucket/users/data/report.csv") as f:
        f.write(b"a user's file")
    with pytest.raises(OutputError, match=r"--out s3://bucket/users/data is not replaceable: it holds 1 object not "
                                          r"written by ray_ncut \(report.csv\)"):
        open_output(f"{bucket}/users/data", "model").check(overwrite=True)
    RemoteOutput(f"{bucket}/users/model", "model").publish(folder(tmp_path, "a", {"config.json": "x"}))
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        open_output(f"{bucket}/users/model", "model").check(overwrite=False)
    assert open_output(f"{bucket}/users/model", "model").check(overwrite=True) == f"{bucket}/users/model"
    with pytest.raises(OutputError, match="holds a ray_ncut output of another kind"):
        open_output(f"{bucket}/users/model", "labels").check(overwrite=True)
    with pytest.raises(OutputError, match="overlaps the input s3://bucket/users/"):
        open_output(f"{bucket}/users/new", "model").check(overwrite=True, inputs=(f"{bucket}/users/",))
    with pytest.raises(OutputError, match="is a whole bucket"):
        open_output(bucket, "model").check(overwrite=True)
    with pytest.raises(ValueError, match="s3://bucket/users/data holds no committed ray_ncut output"):
        readable(f"{bucket}/users/data")
    assert objects(fs, "bucket/users/data") == ["report.csv"]  # never touched


# --------------------------------------------------------------------------- the jobs, end to end


@pytest.fixture(scope="module")
def digits_in_s3(s3, tmp_path_factory):
    """scikit-learn's digits as two Parquet files under s3://bucket/in/ (ids, features, label)."""
    fs, bucket = s3
    X, y = load_digits(return_X_y=True)
    table = digits_table(X, y, np.arange(len(X)))
    pq.write_table(table.slice(0, 900), "bucket/in/a.parquet", filesystem=fs)
    pq.write_table(table.slice(900), "bucket/in/b.parquet", filesystem=fs)
    return f"{bucket}/in/", X.astype(np.float32), y


def digits_table(X, y, ids):
    features = pa.FixedSizeListArray.from_arrays(pa.array(X.astype(np.float32).ravel()), X.shape[1])
    return pa.table({"id": ids, "features": features, "label": y})


def read_labels(uri):
    """The committed labels of a labels output, as a reader that trusts only the pointer reads them."""
    table = pq.read_table(f"{committed(uri)}/labels").sort_by("id")
    return table.column("id").to_numpy(), table.column("cluster").to_numpy()


@pytest.mark.ray
@pytest.mark.slow
def test_s3_round_trip_and_a_killed_run_leaves_the_previous_output(ray_cluster, s3, digits_in_s3, tmp_path):
    fs, bucket = s3
    data, X, y = digits_in_s3
    # a prefix of this run's own: a training run stages locally in a folder named after its URI
    # (where --resume finds it), so a test run killed earlier must not look like this one's
    out = f"{bucket}/out/digits-{uuid.uuid4().hex[:8]}"
    done = job("cluster.py", ["--data", data, "--k", "10", "--out", out, "--label-column", "label",
                              "--steps", "200"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Published to {out}/labels (committed; readers follow {out}/labels/{MARKER_FILE})" in done.stdout

    # the labels join back to every row, and the committed model gives the same labels in memory
    ids, cluster = read_labels(f"{out}/labels")
    assert np.array_equal(ids, np.arange(len(X)))
    model = NeuralCut.load(f"{out}/model")
    assert np.array_equal(model.predict(X), cluster)
    metrics = json.loads(fs.open_input_stream(committed(f"{out}/labels")[5:] + "/metrics.json").read())
    assert metrics["rows"] == len(X) and metrics["ground_truth"]["acc"] > 0.7
    assert metrics["model"]["path"] == f"{out}/model"

    # a labelling run killed before its commit: the previous labels stay committed and readable
    before = committed(f"{out}/labels")
    args = ["--model", f"{out}/model", "--data", data, "--out", f"{out}/labels", "--overwrite"]
    proc = start_job("assign.py", args)
    wait_for(lambda: len({r.split("/")[0] for r in objects(fs, f"{out[5:]}/labels") if "/" in r}) == 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert committed(f"{out}/labels") == before
    assert np.array_equal(read_labels(f"{out}/labels")[1], cluster)

    # a fresh output killed before its commit shows nothing to readers
    proc = start_job("assign.py", [*args[:-2], f"{bucket}/out/fresh"])
    wait_for(lambda: objects(fs, "bucket/out/fresh"), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert committed(f"{bucket}/out/fresh") is None

    # the next run commits, and removes both the dead run's version and the replaced one
    again = job("assign.py", args)
    assert again.returncode == 0, again.stderr[-2000:]
    after = committed(f"{out}/labels")
    assert after != before and np.array_equal(read_labels(f"{out}/labels")[1], cluster)
    assert {r.split("/")[0] for r in objects(fs, f"{out[5:]}/labels") if "/" in r} == {after.rsplit("/", 1)[1]}

    # --incremental on the store: the files this model labelled already are reused (copied inside
    # the store), only the new one is read and labelled, and all of it is one new version
    pq.write_table(digits_table(X[:300], y[:300], np.arange(300) + 10_000), "bucket/in/c.parquet", filesystem=fs)
    grown = job("assign.py", [*args[:-1], "--incremental"])
    assert grown.returncode == 0, grown.stderr[-2000:]
    metrics = json.loads(fs.open_input_stream(committed(f"{out}/labels")[5:] + "/metrics.json").read())
    assert metrics["incremental"] == {"files_reused": 2, "rows_reused": len(X)} and metrics["rows_labelled"] == 300
    ids, grown_cluster = read_labels(f"{out}/labels")
    assert np.array_equal(ids, np.r_[np.arange(len(X)), np.arange(300) + 10_000])
    assert np.array_equal(grown_cluster[: len(X)], cluster) and np.array_equal(grown_cluster[len(X):], cluster[:300])


# --------------------------------------------------------------------------- one interface, two stores


def _label_a_run(output, text: str) -> None:
    """What the labelling job asks of its output, in its order: stage, write a part, publish."""
    from ray_ncut.outputs.local import make_staging, seal

    output.check(overwrite=True)
    output.clean_stale()
    staging = make_staging(output.sibling(f"staging-{text}"), "labels")
    parts = output.parts_dir(staging, "labels")
    fs, folder_ = pafs.FileSystem.from_uri(parts) if "://" in parts else (pafs.LocalFileSystem(), parts)
    with fs.open_output_stream(f"{folder_}/part-000000.parquet") as f:
        f.write(text.encode())
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump({"run": text}, f)
    seal(staging, "labels")
    output.publish(staging)
    assert not os.path.exists(staging)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_local_and_remote_outputs_answer_the_jobs_questions_alike(s3, tmp_path, where):
    out = f"{s3[1]}/alike/labels" if where == "s3" else str(tmp_path / "labels")
    output = open_output(out, "labels")
    assert not output.exists() and output.read_json("manifest.json") is None
    _label_a_run(output, "first")
    output = open_output(out, "labels")  # a later run opens it afresh
    assert output.exists() and output.read_json("manifest.json") == {"run": "first"}
    assert out in output.describe()

    from ray_ncut.outputs.local import make_staging

    staging = make_staging(output.sibling("staging-second"), "labels")
    parts = output.parts_dir(staging, "labels")
    output.take_files({"labels/part-000000.parquet": f"{parts}/part-000007.parquet"})  # --incremental's reuse
    output.abort()  # the run fails: the published output is untouched
    assert open_output(out, "labels").read_json("manifest.json") == {"run": "first"}
    _label_a_run(open_output(out, "labels"), "third")
    assert open_output(out, "labels").read_json("manifest.json") == {"run": "third"}
