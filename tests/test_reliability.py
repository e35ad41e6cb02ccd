"""Reliability, shown from outside: processes killed with SIGKILL while the jobs run (a
labelling actor, a Ray Train worker, the driver), a three-node cluster losing a node,
every bad input of the labelling job, reproducibility, and a 10M-row soak.

Nothing here uses a hook inside the production code: the processes are found by their
Ray process titles (:mod:`jobs_helpers`) and killed as the OOM killer or a preempted
node would kill them.
"""

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

from jobs_helpers import (
    LABEL_ACTOR,
    RAY_BIN,
    TRAIN_WORKER,
    forget_address,
    free_port,
    job,
    kill_worker,
    start_job,
    wait_for,
)
from ray_ncut.model import FORMAT_VERSION

pytestmark = pytest.mark.ray

SMALL = ["--steps", "60", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "30"]
LONG = ["--steps", "600", "--batch-size", "300", "--hidden", "32,32", "--checkpoint-every", "100"]
BIG_ROWS, BIG_UNITS = 3_000_000, 60


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """3 blobs in columns f1, f2 with ground truth in ``label``."""
    X, y = make_blobs(3000, n_features=2, centers=3, cluster_std=0.6, random_state=0)
    path = tmp_path_factory.mktemp("table") / "data.parquet"
    pq.write_table(pa.table({"f1": X[:, 0], "f2": X[:, 1], "label": y}), path, row_group_size=500)
    return path


@pytest.fixture(scope="module")
def trained(ray_cluster, table, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    done = job("train.py", ["--data", table, "--k", "3", "--out", out, "--label-column", "label", *SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """3M rows with ids 0..3M-1, in 60 read units: labelling takes long enough to be hit mid-run."""
    X = np.random.default_rng(0).normal(size=(BIG_ROWS, 2)).astype(np.float32)
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    pq.write_table(pa.table({"id": np.arange(BIG_ROWS), "f1": X[:, 0], "f2": X[:, 1]}), path,
                   row_group_size=BIG_ROWS // BIG_UNITS)
    return path


def staged_parts(parent, name="labels"):
    return list(parent.glob(f".{name}.staging-*/labels/part-*.parquet"))


def check_complete(out, n_rows):
    """Every input id exactly once in the published labels, and metrics counted from them."""
    assert sorted(os.listdir(out / "labels")) == [f"part-{i:06d}.parquet" for i in range(BIG_UNITS)]
    labels = pq.read_table(out / "labels")
    ids = labels.column("id").to_numpy()
    assert len(ids) == n_rows and np.array_equal(np.sort(ids), np.arange(n_rows))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == n_rows
    assert metrics["cluster_sizes"] == np.bincount(labels.column("cluster").to_numpy(), minlength=3).tolist()
    return metrics


# --------------------------------------------------------------------------- killed from outside


@pytest.mark.slow
def test_a_labelling_actor_killed_mid_run_loses_and_duplicates_nothing(trained, big, tmp_path):
    out = tmp_path / "labels"
    proc = start_job("assign.py", ["--model", trained, "--data", big, "--out", out])
    wait_for(lambda: len(staged_parts(tmp_path)) >= 2, proc)
    kill_worker(LABEL_ACTOR, proc)
    parts_at_kill = len(staged_parts(tmp_path))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert parts_at_kill < BIG_UNITS  # it was killed mid-run
    check_complete(out, BIG_ROWS)


@pytest.mark.slow
def test_a_train_worker_killed_mid_run_resumes_from_its_checkpoint_with_the_same_quality(table, tmp_path):
    # two workers: Ray Train runs them (one CPU worker on one machine trains in the job's process)
    args = ["--data", table, "--k", "3", "--label-column", "label", "--workers", "2", *LONG]
    proc = start_job("train.py", [*args, "--out", tmp_path / "killed"])
    # a checkpoint counts once Ray Train has recorded it (its snapshot), not when its files appear
    wait_for(lambda: list(tmp_path.glob(".killed.training/ray_train/train/checkpoint_manager_snapshot.json")), proc)
    kill_worker(TRAIN_WORKER, proc)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    killed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert killed["resumed_from_step"] >= 100 and killed["steps"] == 600  # from a checkpoint, not from 0
    steps = [int(line.split(",")[0]) for line in (tmp_path / "killed" / "curve.csv").read_text().splitlines()[1:]]
    assert steps == list(range(600))

    done = job("train.py", [*args, "--out", tmp_path / "whole"])
    assert done.returncode == 0, done.stderr[-2000:]
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert whole["resumed_from_step"] == 0
    assert killed["sample_quality"]["acc"] >= whole["sample_quality"]["acc"] - 0.02 > 0.9


@pytest.mark.slow
def test_the_driver_killed_before_publishing_keeps_the_previous_labels_and_the_rerun_cleans_up(
        trained, big, tmp_path):
    out = tmp_path / "labels"
    args = ["--model", trained, "--data", big, "--out", out]
    assert job("assign.py", args).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    proc = start_job("assign.py", [*args, "--overwrite"])
    wait_for(lambda: staged_parts(tmp_path), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # unchanged, readable
    assert list(tmp_path.glob(".labels.staging-*"))  # the dead run's leftovers

    done = job("assign.py", [*args, "--overwrite"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp_path.glob(".labels.*"))  # cleaned up
    check_complete(out, BIG_ROWS)


# --------------------------------------------------------------------------- a head and two worker nodes


def _start_node(args, env, log):
    return subprocess.Popen(
        [RAY_BIN, "start", "--block", "--num-gpus=0", "--object-store-memory=300000000", "--disable-usage-stats",
         f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _alive_nodes(address, env) -> int:
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
                            "print(sum(n['Alive'] for n in ray.nodes()))"], env=env, capture_output=True, text=True,
                           timeout=120)
    return int(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else 0


def _kill_node(start_proc):
    """SIGKILL a node's `ray start` and every process under it (raylet, its workers): a lost VM."""
    family = [start_proc, *psutil.Process(start_proc.pid).children(recursive=True)]
    for p in family:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    start_proc.wait()


@pytest.fixture(scope="module")
def three_nodes(ray_cluster, tmp_path_factory):
    """A Ray cluster of three nodes on this machine, each started by `ray start` with its own
    resources: a 1-CPU head and two 2-CPU workers. Node deaths are noticed within seconds."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
               RAY_health_check_initial_delay_ms="1000")
    logs = tmp_path_factory.mktemp("three_nodes")
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = []
    try:
        for i, args in enumerate([["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
                                  [f"--address={address}", "--num-cpus=2"], [f"--address={address}", "--num-cpus=2"]]):
            nodes.append(_join(args, env, logs / f"node{i}.log", address, expected=i + 1))
        yield {"env": {**env, "RAY_ADDRESS": address}, "nodes": nodes, "address": address}
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                _kill_node(node)
        forget_address(port)


def _join(args, env, log, address, expected, attempts=3):
    """Start one node and wait until the cluster has ``expected`` live nodes. Nodes start one
    at a time, and again with fresh ports when one loses a race for a port on this machine."""
    for _ in range(attempts):
        node = _start_node(args, env, open(log, "a"))
        deadline = time.time() + 90
        while node.poll() is None and time.time() < deadline:
            if _alive_nodes(address, env) == expected:
                return node
            time.sleep(1)
        if node.poll() is None:
            _kill_node(node)
    raise AssertionError(f"node {expected} of the cluster did not start: {log.read_text()[-2000:]}")


def _nodes_running(title, nodes) -> set[int]:
    """Indices of the nodes (their `ray start` processes) with a worker whose title contains ``title``."""
    found = set()
    for i, node in enumerate(nodes):
        try:
            family = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in family:
            try:
                if title in " ".join(p.cmdline()):
                    found.add(i)
            except psutil.Error:
                pass
    return found


@pytest.mark.slow
def test_three_nodes_train_on_two_label_across_and_survive_losing_a_worker_node(three_nodes, table, big, tmp_path):
    env, nodes = three_nodes["env"], three_nodes["nodes"]
    done = job("train.py", ["--data", table, "--k", "3", "--workers", "2", "--out", tmp_path / "model", *SMALL],
               env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "model" / "summary.json").read_text())["nodes"] == 2

    # The labelling actors are spread over the nodes (Ray Data's SPREAD placement, seen from
    # outside by their process titles); which actor labels which unit is up to timing, so the
    # test does not ask how many nodes did work, only that losing a node with actors loses nothing.
    proc = start_job("assign.py", ["--model", tmp_path / "model", "--data", big, "--out", tmp_path / "labels"], env=env)
    placed = set()
    wait_for(lambda: placed.update(_nodes_running(LABEL_ACTOR, nodes)) or (
        len(placed) >= 2 and placed & {1, 2} and len(staged_parts(tmp_path)) >= 2), proc)
    lost = min(placed & {1, 2})  # a worker node (the head holds the cluster) running labelling actors
    _kill_node(nodes[lost])
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    check_complete(tmp_path / "labels", BIG_ROWS)
    assert _alive_nodes(three_nodes["address"], env) == 2  # the node really was lost


# --------------------------------------------------------------------------- bad input to the labelling job


def _copy_model(trained, tmp_path, change=None):
    model = tmp_path / "model"
    subprocess.run(["cp", "-r", str(trained), str(model)], check=True)
    if change:
        change(model)
    return model


def _set_format(model, version):
    config = json.loads((model / "config.json").read_text())
    config["format_version"] = version
    (model / "config.json").write_text(json.dumps(config))


def _nan_rows(tmp_path):
    path = tmp_path / "nan.parquet"
    f1 = np.array([0.0, np.nan, 1.0, 2.0, np.inf, 3.0], np.float32)
    pq.write_table(pa.table({"id": np.arange(6) + 100, "f1": f1, "f2": np.zeros(6, np.float32)}), path)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "error: model directory {model} does not exist"),
    ("incomplete", "error: {model} is not a complete ray_ncut model directory: model.pt is missing"),
    ("corrupt-weights", "error: {model}/model.pt is not a readable ray_ncut model (corrupt or truncated)"),
    ("corrupt-config", "error: {model}/config.json is not readable JSON (corrupt or truncated)"),
    ("newer-format", "error: {model}/config.json is model format 99 (written by ray_ncut 0.1.0); this ray_ncut "
                     f"reads format {FORMAT_VERSION} and older: upgrade ray_ncut to load it"),
    ("dimension", "error: {data} has 3 features, but the model expects 2"),
    ("label-column", "error: label column 'truth' not found in {data}"),
    ("out-inside-input", "error: --out {out} is inside the input folder {data}"),
    ("nan", "error: {data} has 2 NaN or infinite value(s); the first at row 1, column 'f1': nan"),  # nan and inf
])
def test_every_bad_input_of_the_labelling_job_is_one_line_exit_2_and_writes_nothing(
        trained, table, tmp_path, case, message):
    model = {
        "missing": lambda: tmp_path / "no-model",
        "incomplete": lambda: _copy_model(trained, tmp_path, lambda m: (m / "model.pt").unlink()),
        "corrupt-weights": lambda: _copy_model(trained, tmp_path, lambda m: (m / "model.pt").write_bytes(
            (trained / "model.pt").read_bytes()[:500])),
        "corrupt-config": lambda: _copy_model(trained, tmp_path, lambda m: (m / "config.json").write_text("{")),
        "newer-format": lambda: _copy_model(trained, tmp_path, lambda m: _set_format(m, 99)),
    }.get(case, lambda: trained)()
    data, extra = table, []
    if case == "dimension":
        data = tmp_path / "three.npy"
        np.save(data, np.zeros((10, 3), np.float32))
    elif case == "label-column":
        extra = ["--label-column", "truth"]
    elif case == "nan":
        data = _nan_rows(tmp_path)
    out = (table.parent / "labels") if case == "out-inside-input" else tmp_path / "labels"
    if case == "out-inside-input":
        data = table.parent

    done = job("assign.py", ["--model", model, "--data", data, "--out", out, *extra])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(message.format(model=model, data=data, out=out))
    assert [line for line in done.stderr.splitlines() if line.startswith("error")] == [done.stderr.strip()
                                                                                      .splitlines()[-1]]
    assert "Traceback" not in done.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))
    if case == "newer-format":  # --debug adds the traceback, and still ends with the one line
        debug = job("assign.py", ["--model", model, "--data", data, "--out", out, "--debug"])
        assert debug.returncode == 2 and "Traceback" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith("error: ")


def test_drop_invalid_skips_and_counts_nan_and_inf_rows(trained, tmp_path):
    data = _nan_rows(tmp_path)
    done = job("assign.py", ["--model", trained, "--data", data, "--out", tmp_path / "labels", "--drop-invalid"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--drop-invalid: skipped 2 rows with NaN or infinite features (first: id 101)" in done.stdout
    labels = pq.read_table(tmp_path / "labels" / "labels")
    assert sorted(labels.column("id").to_pylist()) == [100, 102, 103, 105]
    metrics = json.loads((tmp_path / "labels" / "metrics.json").read_text())
    assert metrics["rows"] == 4 and metrics["dropped_invalid"] == {"rows": 2, "first_id": "101"}


# --------------------------------------------------------------------------- reproducibility


def _weights(model):
    return torch.load(model / "model.pt", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_same_seed_same_model_and_the_same_labels_whatever_the_actor_count(trained, table, tmp_path):
    again = tmp_path / "again"
    done = job("train.py", ["--data", table, "--k", "3", "--out", again, "--label-column", "label", *SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = _weights(trained), _weights(again)
    assert all(torch.equal(first[name], second[name]) for name in first)  # bit for bit, one worker on CPU

    outputs = []
    for actors in (1, 2):
        out = tmp_path / f"labels-{actors}"
        done = job("assign.py", ["--model", trained, "--out", out, "--actors", actors, "--label-column", "label"])
        assert done.returncode == 0, done.stderr[-2000:]
        metrics = json.loads((out / "metrics.json").read_text())
        outputs.append((pq.read_table(out / "labels").sort_by("id"),
                        {k: metrics[k] for k in ("rows", "cluster_sizes", "normalized_cut", "ground_truth")}))
    assert outputs[0][0].equals(outputs[1][0]) and outputs[0][1] == outputs[1][1]


# --------------------------------------------------------------------------- soak


def _cluster_memory(ray_cluster) -> int:
    """Resident memory of the session cluster's processes and of this driver, in bytes."""
    family = [psutil.Process(), *psutil.Process(ray_cluster["pid"]).children(recursive=True)]
    total = 0
    for p in family:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@pytest.mark.slow
def test_soak_ten_million_rows_three_times_in_one_session_no_leak_same_output(ray_cluster, tmp_path):
    from ray_ncut import NeuralCut
    from ray_ncut.data.readers import ColumnSpec
    from ray_ncut.pipeline.label import AssignOptions, assign_run

    X, _ = make_blobs(5000, n_features=8, centers=10, random_state=0)
    NeuralCut(10, steps=50, hidden=(32, 32), affinity="knn", random_state=0).fit(X).save(tmp_path / "model")
    data = "builtin:blobs?n=10000000&d=8&k=10"
    memory = []
    for run in range(3):
        metrics = assign_run(AssignOptions(model=str(tmp_path / "model"), data=data, out=str(tmp_path / f"labels-{run}"),
                                           columns=ColumnSpec()), progress=lambda *_: None)
        assert metrics["rows"] == 10_000_000
        time.sleep(2)  # let the actor pool's processes exit
        memory.append(_cluster_memory(ray_cluster))
    assert memory[2] <= 1.10 * memory[0], [f"{m / 2**20:.0f} MiB" for m in memory]
    first = pq.read_table(tmp_path / "labels-0" / "labels")  # read only now: the test's own memory stays out
    assert all(first.equals(pq.read_table(tmp_path / f"labels-{run}" / "labels")) for run in (1, 2))
