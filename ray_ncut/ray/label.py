"""Batch labelling with Ray Data, exact sharded metrics, and atomic publishing.

One Ray Data actor pool maps read units to labelled Parquet files: each actor
loads the model once (on a GPU when the cluster has them), and for each unit it
reads, labels, writes ``part-<unit>.parquet`` into a staging directory and returns
the unit's partial metrics (:func:`ray_ncut.labeling.label_unit`). The driver only
sees those partials. Then it validates the staged files (row count equals the
input's, ids unique), writes ``metrics.json``, ``_SUCCESS`` and the ownership marker,
and publishes with a rename (:mod:`ray_ncut.publish`: only a directory this job wrote
is ever replaced).

Layout while running, beside the output (same filesystem, so renames are atomic)::

    PARENT/.LABELS.staging-<run>/   labels/part-000000.parquet ... metrics.json _SUCCESS _RAY_NCUT.json
    PARENT/LABELS/                  the previous output, untouched until the swap

The Parquet files sit in their own ``labels/`` folder so that it is a pure Parquet
data set (``pandas.read_parquet("LABELS/labels")`` works; a ``metrics.json`` among
the parts would break pyarrow's discovery).
"""

from __future__ import annotations

import glob
import os
import pickle
import time
import uuid
from dataclasses import dataclass

import numpy as np
import ray

from ..data.readers import ColumnSpec, DataError, duplicate_hashes, hash_ids, repeated_values
from ..labeling import ClusterLabeler, label_unit
from ..metrics import clustering_scores, merge_contingency
from ..model import load_model_dir
from ..publish import (
    Interrupted,
    check_out,
    clean_stale_siblings,
    make_staging,
    publish,
    remove_ours,
    seal,
    sibling,
    write_json_atomic,
)
from .dataset import TASK_CPUS, check_unique_ids, connected_by_job, describe_columns, disconnect, init_ray, open_feature_set

__all__ = ["AssignOptions", "UnitLabelActor", "assign_run", "pool_resources"]

KIND = "labels"  # the ownership marker's kind for a labels directory

METRICS_FILE = "metrics.json"
LABELS_SUBDIR = "labels"
SUCCESS_FILE = "_SUCCESS"


@dataclass
class AssignOptions:
    model: str
    data: str
    out: str
    columns: ColumnSpec
    ncut_neighbors: int = 10
    ncut_sample: int | None = None  # None: knn.default_metric_sample(d)
    overwrite: bool = False
    seed: int = 0
    actors: int | None = None
    drop_invalid: bool = False  # skip and count rows with NaN/inf features instead of failing


class UnitLabelActor:
    """Ray Data callable class: a batch of unit indices -> one pickled UnitResult per unit."""

    def __init__(self, model_dir, units, staging_dir, with_label, sample_rate, seed, drop_invalid):
        self.labeler = ClusterLabeler(model_dir)
        self.units, self.staging_dir = units, staging_dir
        self.with_label, self.sample_rate, self.seed = with_label, sample_rate, seed
        self.drop_invalid = drop_invalid
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> dict:
        results = []
        for i in batch["id"]:
            r = label_unit(self.labeler, self.units[int(i)], int(i), self.staging_dir,
                           self.with_label, self.sample_rate, self.seed, drop_invalid=self.drop_invalid)
            r.node = self.node
            results.append(r)
        return {"result": np.array([pickle.dumps(r) for r in results], dtype=object)}


# Actors sharing one GPU: each reads (and decodes) its own units on the CPU, so
# several per GPU keep the GPU fed while the others read.
ACTORS_PER_GPU = 4


def pool_resources(n_units: int, actors: int | None) -> tuple[int, dict]:
    """Actor-pool size and per-actor resources: ``ACTORS_PER_GPU`` actors per GPU where the
    cluster has GPUs; otherwise one per CPU, each asking for half a CPU so that small
    clusters keep room for the driver and Ray's own tasks (whole-CPU actors deadlock a
    2-CPU laptop)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        size, per_actor = gpus * ACTORS_PER_GPU, {"num_gpus": 1 / ACTORS_PER_GPU, "num_cpus": TASK_CPUS}
    else:
        size, per_actor = max(1, int(res.get("CPU", 1))), {"num_cpus": TASK_CPUS}
    size = actors or size
    return max(1, min(size, n_units)), per_actor


# --------------------------------------------------------------------------- output checks


def validate_staging(staging: str, expected_rows: int, k: int) -> np.ndarray:
    """Read the staged files back: the row count must equal the input's (less dropped rows) and
    the ids be unique. Returns the cluster sizes (k,) counted from what was written, so that
    the published metrics count each published row exactly once, whatever was retried."""
    import pyarrow.dataset as pads

    files = sorted(glob.glob(os.path.join(staging, LABELS_SUBDIR, "part-*.parquet")))
    dataset = pads.dataset(files, format="parquet")
    hashes, sizes = [], np.zeros(k, np.int64)
    for batch in dataset.to_batches(columns=["id", "cluster"]):
        hashes.append(hash_ids(batch.column(0).to_numpy(zero_copy_only=False)))
        sizes += np.bincount(batch.column(1).to_numpy(), minlength=k)
    rows = int(sizes.sum())
    if rows != expected_rows:
        raise RuntimeError(f"staged labels have {rows} rows, the input has {expected_rows}; not publishing")
    if duplicate_hashes(hashes):  # a real duplicate, or (rarely) a 64-bit hash collision: check exactly
        dup = repeated_values(dataset.to_table(columns=["id"]).column(0).to_numpy(zero_copy_only=False))
        if dup:
            raise ValueError(f"ids are not unique: {len(dup)} repeated, e.g. {dup[0]!r}; not publishing")
    return sizes


# --------------------------------------------------------------------------- the job


def assign_run(opts: AssignOptions, progress=print) -> dict:
    """Label every row of ``opts.data`` with the model in ``opts.model``; returns metrics.json's content."""
    t_start = time.perf_counter()
    out = check_out(opts.out, KIND, opts.overwrite, inputs=(opts.data, opts.model))
    head, model_config = load_model_dir(opts.model)
    fs = open_feature_set(opts.data, opts.columns, check_finite=not opts.drop_invalid)
    if fs.n_features != head.config.input_dim:
        raise ValueError(f"{opts.data} has {fs.n_features} features, but the model expects {head.config.input_dim}")
    with_label = opts.columns.label_column is not None  # built-ins serve their truth under any name
    progress(describe_columns(fs))
    init_ray()
    check_unique_ids(fs)  # before any labelling work: a cheap pass over the id column only
    t_ready = time.perf_counter()

    clean_stale_siblings(out, KIND)
    staging = make_staging(sibling(out, f"staging-{uuid.uuid4().hex[:8]}"), KIND)
    os.makedirs(os.path.join(staging, LABELS_SUBDIR))
    try:
        metrics = _label_and_measure(opts, fs, head.config.n_clusters, model_config, staging, with_label, out,
                                     t_start, t_ready, progress)
        write_json_atomic(os.path.join(staging, METRICS_FILE), metrics)
        open(os.path.join(staging, SUCCESS_FILE), "w").close()
        for partial in glob.glob(os.path.join(staging, LABELS_SUBDIR, ".*.tmp")):  # of a task killed mid-write
            os.remove(partial)
        seal(staging, KIND)
        publish(staging, out, KIND)
    except KeyboardInterrupt:
        if connected_by_job():  # stop this job's labelling actors: one still writing a part would keep the folder
            disconnect()
        remove_ours(staging, KIND, settle_seconds=10.0)
        kept = f"the previous labels at {out} are unchanged" if os.path.isdir(out) else f"nothing was written at {out}"
        raise Interrupted(f"interrupted while labelling; nothing was published and {kept}; "
                          "re-run the same command to label again") from None
    finally:
        remove_ours(staging, KIND)  # gone already when published
    return metrics


def _label_and_measure(opts, fs, k, model_config, staging, with_label, out, t_start, t_ready, progress) -> dict:
    """Label every unit into ``staging``, check what was written, and return metrics.json's content."""
    from ..knn import knn_cut

    result = _label_all(opts, fs, k, staging, with_label, progress)
    t_labelled = time.perf_counter()
    sizes = validate_staging(staging, fs.n_rows - result["dropped"], k)
    if not np.array_equal(sizes, result["sizes"]):  # the units' partials disagree with the files
        raise RuntimeError(f"cluster sizes counted by the labelling tasks {result['sizes'].tolist()} differ from "
                           f"the written files' {sizes.tolist()}; not publishing")
    rows = int(sizes.sum())
    t_validated = time.perf_counter()
    cut = knn_cut(result["sample_Z"], result["sample_cluster"], k, opts.ncut_neighbors)
    t_cut = time.perf_counter()
    metrics = {
        "rows": rows,
        "cluster_sizes": sizes.tolist(),
        "dropped_invalid": {"rows": result["dropped"], "first_id": result["first_dropped"]} if opts.drop_invalid else None,
        "nodes": result["nodes"],
        "normalized_cut": {
            "ncut": cut["ncut"], "rcut": cut["rcut"], **cut["graph"],
            "sample": "all rows" if cut["graph"]["rows"] == rows else f"uniform sample of {cut['graph']['rows']} rows",
        },
        "data": {"uri": opts.data, "features": fs.n_features, "read_units": len(fs.units)},
        "model": {"path": os.path.abspath(opts.model), "k": k, "loss": model_config.get("train", {}).get("loss"),
                  "trained_on": model_config.get("data", {}).get("uri")},
        "labelled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.perf_counter() - t_start, 3),
        "label_seconds": round(result["seconds"], 3),
        "stage_seconds": {"start": round(t_ready - t_start, 3), "label": round(t_labelled - t_ready, 3),
                          "validate": round(t_validated - t_labelled, 3), "ncut": round(t_cut - t_validated, 3)},
        "rows_per_second": round(rows / result["seconds"], 1),
        "steady_rows_per_second": round(result["steady_rows_per_second"], 1),
        "out": out,
    }
    if with_label:
        metrics["ground_truth"] = {"column": opts.columns.label_column, **clustering_scores(result["contingency"])}
    return metrics


def _label_all(opts, fs, k, staging, with_label, progress) -> dict:
    size, per_actor = pool_resources(len(fs.units), opts.actors)
    from ..knn import default_metric_sample

    ncut_sample = opts.ncut_sample or default_metric_sample(fs.n_features)
    sample_rate = min(1.0, ncut_sample / max(fs.n_rows, 1))
    # The unit indices are made on the driver (no read tasks competing with the actors for
    # CPUs), and the pool may shrink: after a node is lost the job goes on with the actors
    # that fit on the nodes left instead of waiting for the lost capacity.
    units = ray.data.from_items([{"id": i} for i in range(len(fs.units))], override_num_blocks=len(fs.units))
    ds = units.map_batches(
        UnitLabelActor,
        fn_constructor_args=(os.path.abspath(opts.model), fs.units, os.path.join(staging, LABELS_SUBDIR),
                             with_label, sample_rate, opts.seed, opts.drop_invalid),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size, initial_size=size),
        **per_actor,
    )
    progress(f"[ray_ncut] labelling {fs.n_rows} rows in {len(fs.units)} units with {size} actor(s)")
    t0, done, last = time.perf_counter(), 0, 0.0
    first = None  # (seconds, rows) when the first unit came back: the pool is up
    results: dict[int, object] = {}  # unit -> its result: a unit that came back twice counts once
    for row in ds.iter_rows():
        r = pickle.loads(row["result"])
        if r.error:
            raise DataError(r.error)  # stops the pool; the staging directory is removed
        if r.unit in results:
            continue
        results[r.unit] = r
        done += r.rows + r.dropped
        now = time.perf_counter() - t0
        first = first or (now, done)
        if now - last > 5 or done == fs.n_rows:
            progress(f"[ray_ncut] labelled {done}/{fs.n_rows} rows ({done / max(now, 1e-9):,.0f} rows/s)")
            last = now
    seconds = time.perf_counter() - t0
    # Rows/s once the pool is up (actor start-up excluded); the whole stage's rate where one unit.
    steady = (done - first[1]) / (seconds - first[0]) if done > first[1] and seconds > first[0] else done / seconds
    return {**_merge(results, k), "seconds": seconds, "steady_rows_per_second": steady}


def _merge(results: dict, k: int) -> dict:
    """The units' partials merged (in unit order, so the metric's sample does not depend on timing)."""
    ordered = [results[u] for u in sorted(results)]
    cont = None
    for r in ordered:
        cont = merge_contingency(cont, r.contingency)
    dropped = [r for r in ordered if r.dropped]
    return {
        "sizes": sum((r.sizes for r in ordered), np.zeros(k, np.int64)),
        "contingency": cont,
        "sample_Z": np.concatenate([r.sample_features for r in ordered]),
        "sample_cluster": np.concatenate([r.sample_cluster for r in ordered]),
        "dropped": sum(r.dropped for r in ordered),
        "first_dropped": dropped[0].first_dropped if dropped else "",
        "nodes": len({r.node for r in ordered}),
    }
