"""The jobs never destroy what is not theirs, and end cleanly: refusals, interrupted
overwrites (SIGINT and SIGKILL from outside), label-like columns, `ray job submit` with
token authentication, several Ray clusters on one machine."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.datasets import make_blobs

from jobs_helpers import ROOT, free_port, job, ray_workers, start_job, stop_process_group, survivors, wait_for
from ray_ncut import NeuralCut
from ray_ncut.metrics import accuracy

SMALL = ["--steps", "60", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "30"]
# long enough to be interrupted after its first checkpoint, short enough to resume quickly
LONG = ["--steps", "1500", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "100"]


def error_lines(done):
    return [line for line in done.stderr.splitlines() if line.startswith(("error:", "interrupted"))]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """3 blobs in columns f1, f2 with ground truth in a column called ``label``."""
    X, y = make_blobs(3000, n_features=2, centers=3, cluster_std=0.6, random_state=0)
    d = tmp_path_factory.mktemp("table")
    pq.write_table(pa.table({"f1": X[:, 0], "f2": X[:, 1], "label": y}), d / "data.parquet", row_group_size=500)
    return d / "data.parquet", X.astype(np.float32), y


@pytest.fixture(scope="module")
def trained_run(ray_cluster, table, tmp_path_factory):
    """jobs/train.py on the session cluster, run from the data's folder with a relative --data and no
    --label-column: ``(model directory, the job's stdout)``."""
    data, _, _ = table
    out = tmp_path_factory.mktemp("trained") / "model"
    done = job("train.py", ["--data", data.name, "--k", "3", "--out", str(out), *SMALL], cwd=data.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done.stdout


@pytest.fixture(scope="module")
def trained(trained_run):
    """A model directory written by jobs/train.py."""
    return trained_run[0]


# --------------------------------------------------------------------------- refusals, before any work


@pytest.mark.parametrize("k", ["0", "1", "-3"])
def test_k_below_two_is_one_line_exit_2(table, tmp_path, k):
    done = job("train.py", ["--data", str(table[0]), "--k", k, "--out", str(tmp_path / "m")])
    assert done.returncode == 2 and done.stderr.strip() == f"error: --k={k} should be >= 2 (the number of clusters)"
    assert not (tmp_path / "m").exists()


def test_k_missing_on_user_data_is_one_line(table, tmp_path):
    done = job("train.py", ["--data", str(table[0]), "--out", str(tmp_path / "m")])
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: --k is required for --data {table[0]}: the number of clusters, "
                                   "e.g. --k 10, or --k auto")


@pytest.mark.parametrize("out, message", [
    (".", "is the working directory"),
    ("~", "is your home directory"),
    ("..", "is a parent of the working directory"),
    ("INPUT", "is the input"),
])
def test_out_equal_to_a_protected_path_is_refused(table, tmp_path, out, message):
    data = table[0]
    before = sorted(os.listdir(data.parent))
    out = str(data) if out == "INPUT" else out
    for name, extra in (("train.py", ["--k", "3"]), ("assign.py", ["--model", str(tmp_path / "no-model")])):
        args = ["--data", str(data), "--out", out, "--overwrite", *extra]
        done = job(name, args, cwd=data.parent)
        assert done.returncode == 2 and len(error_lines(done)) == 1 and message in error_lines(done)[0], done.stderr
    assert sorted(os.listdir(data.parent)) == before


@pytest.mark.ray
def test_overwrite_into_a_folder_holding_a_users_file_is_refused_for_both_jobs(table, trained, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for name, extra in (("train.py", ["--k", "3", *SMALL]), ("assign.py", ["--model", str(trained)])):
        done = job(name, ["--data", str(table[0]), "--out", str(out), "--overwrite", *extra])
        assert done.returncode == 2, done.stderr[-2000:]
        assert error_lines(done) == [f"error: --out {out} is not replaceable: it holds 1 entry not written by "
                                     f"ray_ncut (thesis.tex); choose a new folder (nothing was changed)"]
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "years of work"


def test_a_csv_file_is_named_with_the_formats_that_are_read(tmp_path):
    csv = tmp_path / "points.csv"
    csv.write_text("a,b\n1,2\n")
    done = job("train.py", ["--data", str(csv), "--k", "2", "--out", str(tmp_path / "m")])
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {csv} is not a Parquet file; ray_ncut reads Parquet files (a file, a folder "
                                   "of them, or a glob), a .npy array, or builtin:NAME; convert it with pandas: "
                                   "pandas.read_csv(path).to_parquet(path[:-4] + '.parquet')")


def test_a_non_numeric_feature_column_is_named(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]}), path)
    done = job("train.py", ["--data", str(path), "--feature-columns", "x,name", "--k", "2", "--out", str(tmp_path / "m")])
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: feature column 'name' in {path} has type string, not a number"


@pytest.mark.ray
def test_duplicate_ids_are_found_before_any_labelling(trained, table, tmp_path):
    _, X, _ = table
    path = tmp_path / "dup.parquet"
    ids = np.arange(len(X))
    ids[2500] = 7  # one repeat, far from the first
    pq.write_table(pa.table({"id": ids, "f1": X[:, 0], "f2": X[:, 1]}), path, row_group_size=500)
    done = job("assign.py", ["--model", str(trained), "--data", str(path), "--out", str(tmp_path / "labels")])
    assert done.returncode == 2
    assert error_lines(done) == [f"error: {path}: ids in column 'id' are not unique: 1 repeated, e.g. 7; "
                                 "labels could not be joined back to rows"]
    assert "labelling" not in done.stdout  # found before the labelling stage started
    assert not list(tmp_path.glob("*labels*"))


@pytest.mark.ray
def test_the_id_check_reads_small_inputs_here_and_large_ones_in_ray_tasks(ray_cluster, tmp_path):
    from ray_ncut.data.readers import DataError
    from ray_ncut.pipeline.scan import DRIVER_ID_ROWS, check_unique_ids, open_feature_set
    from ray_ncut.ray.executor import RayExecutor

    class CountingExecutor(RayExecutor):  # a test double around the real one: counts the Ray passes
        passes = 0

        def map_units(self, *args, **kw):
            self.passes += 1
            return super().map_units(*args, **kw)

    for n in (3000, DRIVER_ID_ROWS + 1000):
        folder = tmp_path / str(n)
        folder.mkdir()
        ids = np.arange(n)
        ids[-1] = 5  # one repeat, in the last file
        for i, part in enumerate(np.array_split(ids, 4)):
            pq.write_table(pa.table({"id": part, "f1": np.zeros(len(part), np.float32)}), folder / f"{i}.parquet")
        ex = CountingExecutor()
        with pytest.raises(DataError, match="ids in column 'id' are not unique: 1 repeated, e.g. 5;"):
            check_unique_ids(ex, open_feature_set(str(folder)))
        assert ex.passes == (0 if n <= DRIVER_ID_ROWS else 2)  # hashes, then the ids whose hash repeats


# --------------------------------------------------------------------------- feature choice


@pytest.mark.ray
def test_a_label_column_is_never_a_feature_and_quality_is_reported_on_the_sample(table, trained_run, tmp_path):
    data, X, y = table
    out = tmp_path / "m"
    done = job("train.py", ["--data", str(data), "--k", "3", "--label-column", "label", "--out", str(out), *SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "features: 2 columns (f1, f2); ids: derived from file and row; ground truth: column 'label'" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["features"] == 2 and summary["sample_quality"]["rows"] == 3000
    model = NeuralCut.load(out)
    assert model.n_features_in_ == 2
    assert summary["sample_quality"]["acc"] == pytest.approx(accuracy(y, model.predict(X)), abs=1e-9)
    # the same without naming it, with paths relative to the data's folder (the module's model): "label" is
    # still left out, and the model records where its data is, so it labels from any other folder
    quiet, stdout = trained_run
    assert "features: 2 columns (f1, f2); ids: derived from file and row" in stdout and "ground truth" not in stdout
    subprocess.run(["cp", "-r", str(quiet), str(tmp_path / "m2")], check=True)
    assert json.loads((tmp_path / "m2" / "summary.json").read_text())["sample_quality"] is None
    assert json.loads((tmp_path / "m2" / "config.json").read_text())["data"]["uri"] == str(data)
    labelled = job("assign.py", ["--model", "m2", "--out", "labels"], cwd=tmp_path)
    assert labelled.returncode == 0, labelled.stderr[-2000:]
    assert json.loads((tmp_path / "labels" / "metrics.json").read_text())["rows"] == len(X)


# --------------------------------------------------------------------------- interrupted from outside


def interrupt(proc, sig, workers_before, ray_workers_expected=True):
    """Send ``sig`` to the job's process group; returns (stderr, the processes the job started):
    its own tree and the cluster workers that appeared for it (its actors, its train workers).
    A training run of one CPU worker on one machine trains in the job's process: no Ray worker
    is busy for it then (``ray_workers_expected=False``)."""
    started = [psutil.Process(pid) for pid in set(ray_workers()) - set(workers_before)]
    started += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert any(p.name().startswith("ray::") for p in started) == ray_workers_expected
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return err, started


@pytest.mark.ray
def test_ctrl_c_between_ray_data_steps_releases_the_iterator_before_ray_disconnects(ray_cluster):
    # Ctrl-C landing in the job's own code keeps Ray Data's iterator alive in the exception's frames;
    # shut down only after the disconnect, its executor reconnected to Ray and printed a traceback
    # (1 in 15 interrupted labelling runs on a loaded machine). interrupted() must release it first.
    import weakref

    import ray

    from ray_ncut.ray.executor import RayExecutor

    held = []

    def consume():
        rows = iter(ray.data.range(40, override_num_blocks=8).map_batches(lambda b: b, batch_size=1).iter_rows())
        held.append(weakref.ref(rows))
        for _ in rows:
            raise KeyboardInterrupt

    try:
        consume()
    except KeyboardInterrupt:
        assert held[0]() is not None  # the exception's frames hold the live iterator ...
        RayExecutor().interrupted()
        assert held[0]() is None  # ... until interrupted() lets it shut down, while Ray is connected
    assert ray.is_initialized()  # a Ray connection the job did not make is left alone


def model_bytes(path):
    return {f: (path / f).read_bytes() for f in ("model.pt", "config.json")}


# Ctrl-C (SIGINT) and `ray job stop` / Kubernetes (SIGTERM) end a job the same way; SIGTERM exits 143
STOPS = [(signal.SIGINT, 130, ""), (signal.SIGTERM, 143, "stopped (SIGTERM): ")]
# Each stop is run once in the quick suite (SIGTERM in training, SIGINT in labelling), the other under -m slow
TRAINING_STOPS = [pytest.param(*STOPS[0], id="SIGINT", marks=pytest.mark.slow), pytest.param(*STOPS[1], id="SIGTERM")]
LABELLING_STOPS = [pytest.param(*STOPS[0], id="SIGINT"), pytest.param(*STOPS[1], id="SIGTERM", marks=pytest.mark.slow)]


@pytest.mark.ray
@pytest.mark.parametrize("sig, code, prefix", TRAINING_STOPS)
def test_a_stop_during_training_keeps_the_previous_model_says_how_to_resume_and_resume_works(
        table, trained, tmp_path, sig, code, prefix):
    out = tmp_path / "model"
    subprocess.run(["cp", "-r", str(trained), str(out)], check=True)
    before = model_bytes(out)
    before_workers = ray_workers()
    proc = start_job("train.py", ["--data", str(table[0]), "--k", "3", "--out", str(out), "--overwrite", *LONG])
    staging = tmp_path / ".model.training"
    # one CPU worker on one machine trains in the job's own process, checkpointing to files
    wait_for(lambda: list(staging.glob("ray_train/in_process/train/checkpoint_*.pt")), proc)
    err, family = interrupt(proc, sig, before_workers, ray_workers_expected=False)

    assert proc.returncode == code
    assert "Traceback" not in err and "SIGTERM received" not in err  # no C++ stack dump
    last = err.strip().splitlines()[-1]
    assert last == (f"{prefix}interrupted while training; the previous model at {out} is unchanged; its checkpoints "
                    f"are kept at {staging}: re-run the same command with --resume to continue")
    assert survivors(family) == []  # no Ray process the job started is left
    assert model_bytes(out) == before and NeuralCut.load(out).predict(table[1][:5]).shape == (5,)
    if sig == signal.SIGTERM:
        return  # what follows is the same for both

    # every checkpoint carries the run's configuration; --resume refuses a flag that contradicts it
    state = torch.load(next(staging.glob("ray_train/in_process/train/checkpoint_*.pt")), weights_only=False)
    assert state["record"]["config"]["steps"] == 1500 and state["record"]["config"]["hidden"] == [32, 32]
    clash = job("train.py", ["--data", str(table[0]), "--k", "3", "--out", str(out), "--resume", *LONG,
                             "--steps", "2000", "--lr", "0.01"])
    assert clash.returncode == 2 and error_lines(clash) == [
        f"error: --resume: --steps 2000 (the run has 1500); --lr 0.01 (the run has 0.001) contradicts the interrupted "
        f"run in {staging}: leave the flag out to continue it, or pass --overwrite instead to start over"]
    assert staging.exists() and model_bytes(out) == before

    # the advertised command continues from the checkpoint, reusing the run's preparation, and then
    # replaces the model
    done = job("train.py", ["--data", str(table[0]), "--k", "3", "--out", str(out), "--resume", *LONG])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[ray_ncut] --resume: the preparation of the interrupted run is reused" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] >= 100 and summary["steps"] == 1500
    assert len((out / "curve.csv").read_text().splitlines()) == 1 + 1500
    assert model_bytes(out) != before and not staging.exists()


@pytest.mark.ray
def test_sigkill_during_training_leaves_the_previous_model_loadable(table, trained, tmp_path):
    out = tmp_path / "model"
    subprocess.run(["cp", "-r", str(trained), str(out)], check=True)
    before = model_bytes(out)
    before_workers = ray_workers()
    proc = start_job("train.py", ["--data", str(table[0]), "--k", "3", "--out", str(out), "--overwrite", *LONG])
    wait_for(lambda: list(tmp_path.glob(".model.training/ray_train/in_process/train/checkpoint_*.pt")), proc)
    _, started = interrupt(proc, signal.SIGKILL, before_workers, ray_workers_expected=False)  # as the OOM killer would
    assert survivors(started) == []  # the cluster ends the dead driver's actors
    assert model_bytes(out) == before
    model = NeuralCut.load(out)
    assert accuracy(table[2], model.predict(table[1])) > 0.9


@pytest.fixture(scope="module")
def big_labels(trained, tmp_path_factory):
    """3M rows (long enough to stop mid-labelling) and their labels, published once."""
    root = tmp_path_factory.mktemp("big")
    X = np.random.default_rng(0).normal(size=(3_000_000, 2)).astype(np.float32)
    pq.write_table(pa.table({"f1": X[:, 0], "f2": X[:, 1]}), root / "big.parquet", row_group_size=50_000)
    first = job("assign.py", ["--model", str(trained), "--data", str(root / "big.parquet"), "--out", str(root / "labels")])
    assert first.returncode == 0, first.stderr[-2000:]
    return root / "big.parquet", root / "labels"


@pytest.mark.ray
@pytest.mark.parametrize("sig, code, prefix", LABELLING_STOPS)
def test_a_stop_during_labelling_publishes_nothing_and_keeps_the_previous_labels(trained, big_labels, tmp_path, sig,
                                                                                 code, prefix):
    big, out = big_labels[0], tmp_path / "labels"
    subprocess.run(["cp", "-a", str(big_labels[1]), str(out)], check=True)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}

    before_workers = ray_workers()
    proc = start_job("assign.py", ["--model", str(trained), "--data", str(big), "--out", str(out), "--overwrite"])
    wait_for(lambda: list(tmp_path.glob(".labels.staging-*/labels/part-*.parquet")), proc)
    err, family = interrupt(proc, sig, before_workers)
    assert proc.returncode == code and "Traceback" not in err and "SIGTERM received" not in err
    assert err.strip().splitlines()[-1] == (f"{prefix}interrupted while labelling; nothing was published and the "
                                            f"previous labels at {out} are unchanged; re-run the same command to "
                                            "label again")
    assert survivors(family) == []
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert not list(tmp_path.glob(".labels.*"))  # the dead run's staging folder is gone


# --------------------------------------------------------------------------- a head started here, with token auth


@pytest.fixture(scope="module")
def token_head(ray_cluster, tmp_path_factory):
    """A second Ray head on this machine with token authentication, as docs/cluster.md's commands start one."""
    token = tmp_path_factory.mktemp("auth") / "auth_token"
    token.write_text(os.urandom(32).hex())
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", f"--dashboard-port={dash}", "--object-store-memory=500000000",
         "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while subprocess.run([ray_bin, "job", "list", "--address", address], env=env,
                         capture_output=True).returncode != 0:
        assert time.time() < deadline and head.poll() is None, "the head did not start"
        time.sleep(2)
    yield {"address": address, "env": env, "ray": ray_bin}
    stop_process_group(head)  # this head's processes only; `ray stop` would stop every cluster


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_submit_with_token_auth_runs_the_jobs_and_writes_at_the_absolute_paths(token_head, table, tmp_path):
    data, X, y = table
    model, labels = tmp_path / "model", tmp_path / "labels"

    def submit(*args, env=token_head["env"]):
        return subprocess.run([token_head["ray"], "job", "submit", "--address", token_head["address"], "--",
                               sys.executable, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)

    # with RAY_AUTH_MODE unset, `ray job submit` sends no token and the head refuses it (docs/cluster.md says why)
    refused = submit(ROOT / "jobs" / "train.py", "--help",
                     env={k: v for k, v in token_head["env"].items() if k != "RAY_AUTH_MODE"})
    assert refused.returncode != 0 and "authentication" in (refused.stdout + refused.stderr).lower()

    done = submit(ROOT / "jobs" / "train.py", "--data", data, "--k", "3", "--out", model, *SMALL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Model written to" in done.stdout
    done = submit(ROOT / "jobs" / "assign.py", "--model", model, "--out", labels, "--label-column", "label")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((labels / "metrics.json").read_text())
    assert metrics["rows"] == 3000 and metrics["ground_truth"]["acc"] > 0.9
    assert metrics["data"]["uri"] == str(data)  # the model recorded its data's absolute path

    # the one-session job, submitted the same way: it ran on the cluster and wrote both outputs
    both = tmp_path / "both"
    done = submit(ROOT / "jobs" / "cluster.py", "--data", data, "--k", "3", "--out", both, "--label-column", "label",
                  *SMALL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((both / "labels" / "metrics.json").read_text())["ground_truth"]["acc"] > 0.9
    assert (both / "model" / "model.pt").is_file() and (both / "labels" / "report.html").is_file()

    relative = submit(ROOT / "jobs" / "train.py", "--data", data, "--k", "3", "--out", "runs/x", *SMALL)
    assert relative.returncode != 0
    assert "--out runs/x is a relative path in a job run by `ray job submit`" in relative.stdout + relative.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_several_clusters_on_the_machine_and_no_address_starts_an_embedded_one(token_head, table, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = job("train.py", ["--data", str(table[0]), "--k", "3", "--out", str(tmp_path / "m"), *SMALL], env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "several Ray clusters run on this machine and RAY_ADDRESS names none" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_stop_during_the_embedding_says_its_checkpoints_are_kept(tmp_path):
    """The message of a run stopped while training its Siamese embedding, whose checkpoints
    (not the head's) are all it has: they are kept and --resume continues them."""
    from ray_ncut.outputs import LocalOutput
    from ray_ncut.pipeline.train import _interrupted

    staging = tmp_path / ".model.training"
    (staging / "ray_train" / "in_process" / "embedding").mkdir(parents=True)
    message = str(_interrupted("training the embedding", LocalOutput(str(tmp_path / "model"), "model"), str(staging)))
    assert "no checkpoint was written yet" in message  # none yet: the message says so
    torch.save({"step": 250}, staging / "ray_train" / "in_process" / "embedding" / "checkpoint_000000250.pt")
    message = str(_interrupted("training the embedding", LocalOutput(str(tmp_path / "model"), "model"), str(staging)))
    assert message == (f"interrupted while training the embedding; nothing was published at {tmp_path / 'model'}; "
                       f"its checkpoints are kept at {staging}: re-run the same command with --resume to continue")
