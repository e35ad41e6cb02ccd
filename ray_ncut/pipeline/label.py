"""The labelling job: every row labelled, exact sharded metrics, atomic publishing. No Ray.

The executor (:mod:`ray_ncut.pipeline.executor`; on Ray, an actor pool whose actors each load
the model once, on a GPU when the cluster has them) maps read units to labelled Parquet
files: for each unit a worker reads, labels, writes ``part-<unit>.parquet`` into a staging directory and returns
the unit's partial metrics (:func:`ray_ncut.assign.assign_unit`). The driver only
sees those partials. Then it validates the staged files (row count equals the
input's, ids unique), writes ``metrics.json``, ``_SUCCESS`` and the ownership marker,
and publishes (:mod:`ray_ncut.outputs`: only an output this job wrote is ever replaced).

Layout while running, beside the output (same filesystem, so renames are atomic)::

    PARENT/.LABELS.staging-<run>/   labels/part-000000.parquet ... metrics.json _SUCCESS _RAY_NCUT.json
    PARENT/LABELS/                  the previous output, untouched until the swap

On object storage (``--out s3://...``) the actors write the label files straight into a new,
uncommitted version of the output, the driver's small files join them there, and the commit is
one PUT of the output's pointer (:class:`ray_ncut.outputs.RemoteOutput`).

The Parquet files sit in their own ``labels/`` folder so that it is a pure Parquet
data set (``pandas.read_parquet("LABELS/labels")`` works; a ``metrics.json`` among
the parts would break pyarrow's discovery).
"""

from __future__ import annotations

import glob
import json
import os
import time
import uuid
from dataclasses import dataclass

import numpy as np

from ..assign import CONFIDENCE_BINS, unit_file_name, validate_labels
from ..atomic import write_atomic, write_json_atomic
from ..cli import PROGRESS_SECONDS
from ..data.readers import ColumnSpec, DataError, columns_for_model
from ..drift import describe as describe_drift
from ..drift import drift_check, fit_state
from ..manifest import MANIFEST_FILE, Reuse, build_manifest, model_fingerprint, plan_reuse
from ..metrics import clustering_scores, merge_contingency
from ..model import ClusterModel, ModelRecord
from ..outputs import Interrupted, Output, absolute, open_output
from ..outputs.local import make_staging, remove_ours, seal
from ..report import PROJECTION_FILE, projection, write_report
from .executor import open_executor
from .scan import check_unique_ids, describe_columns, open_feature_set

__all__ = ["AssignOptions", "assign_run"]

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
    incremental: bool = False  # reuse the parts of files the output at `out` already covers
    engine: str = "auto"  # "ray", "local" (this process), "auto" (dataset.connect)


# --------------------------------------------------------------------------- the job


def assign_run(opts: AssignOptions, progress=print) -> dict:
    """Label every row of ``opts.data`` with the model in ``opts.model``; returns metrics.json's content.

    With ``opts.incremental`` the parts of input files that the output at ``opts.out`` already
    covers (same model, same size and modification time: :mod:`ray_ncut.manifest`) are reused
    and only new or changed files are read and labelled.
    """
    t_start = time.perf_counter()
    output = open_output(opts.out, KIND)
    out = output.check(opts.overwrite or opts.incremental, inputs=(opts.data, opts.model))
    model = ClusterModel.load(opts.model)
    k, ids, record = model.n_clusters, model.cluster_ids, model.record
    columns = columns_for_model(opts.columns, record.features, opts.model)  # by name, never by position
    fs = open_feature_set(opts.data, columns, check_finite=not opts.drop_invalid)
    model.check_dimension(fs.n_features, opts.data)
    fingerprint = model_fingerprint(opts.model, ids)
    reuse = plan_reuse(output.read_json(MANIFEST_FILE), fs.units, fingerprint) if opts.incremental else Reuse()
    with_label = opts.columns.label_column is not None  # built-ins serve their truth under any name
    progress(describe_columns(fs))
    ex = open_executor(opts.engine, fs.n_rows * fs.n_features, opts.actors in (None, 1), progress)
    check_unique_ids(ex, fs)  # before any labelling work: a cheap pass over the id column only
    t_ready = time.perf_counter()

    output.clean_stale()
    staging = make_staging(output.sibling(f"staging-{uuid.uuid4().hex[:8]}"), KIND)
    parts = output.parts_dir(staging, LABELS_SUBDIR)  # on object storage: in a new, uncommitted version
    try:
        _take_reused_parts(output, parts, reuse, progress)
        todo = reuse.labelled_units(len(fs.units))
        result = _label_all(ex, opts, fs, todo, k, parts, with_label, progress)
        t_labelled = time.perf_counter()
        metrics = _measure(opts, fs, k, ids, record, parts, with_label, reuse, result, progress)
        metrics.update(out=out, labelled_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       seconds=round(time.perf_counter() - t_start, 3),
                       stage_seconds={"start": round(t_ready - t_start, 3), "label": round(t_labelled - t_ready, 3),
                                      **metrics["stage_seconds"]})
        manifest = build_manifest(fs.units, unit_file_name, result["results"], reuse, fingerprint, opts.model, ids)
        _write_outputs(staging, metrics, manifest, result, ids, opts.seed)
        for partial in glob.glob(os.path.join(staging, LABELS_SUBDIR, ".*.tmp")):  # of a task killed mid-write
            os.remove(partial)
        seal(staging, KIND)
        output.publish(staging)
    except KeyboardInterrupt:
        ex.interrupted()  # stops this job's labelling actors: one still writing a part would keep the folder
        remove_ours(staging, KIND, settle_seconds=10.0)
        output.abort()
        kept = f"the previous labels at {out} are unchanged" if output.exists() else f"nothing was written at {out}"
        raise Interrupted(f"interrupted while labelling; nothing was published and {kept}; "
                          "re-run the same command to label again") from None
    except BaseException:
        output.abort()  # on object storage the uncommitted version; the committed output is never touched
        raise
    finally:
        remove_ours(staging, KIND)  # gone already when published
    return metrics


def _write_outputs(staging: str, metrics: dict, manifest: dict, result: dict, ids: np.ndarray, seed: int) -> None:
    """manifest.json, metrics.json, projection.json (the 2-D picture's points), report.html, _SUCCESS."""
    write_json_atomic(os.path.join(staging, MANIFEST_FILE), manifest)
    write_json_atomic(os.path.join(staging, METRICS_FILE), metrics)
    if result["rows"]:
        picture = projection(result["sample_Z"], ids[result["sample_cluster"]], seed)
        write_atomic(os.path.join(staging, PROJECTION_FILE), lambda f: json.dump(picture, f), mode="w")
    write_report(staging)  # from the staged files and the model's curve.csv
    open(os.path.join(staging, SUCCESS_FILE), "w").close()


def _take_reused_parts(output: Output, parts: str, reuse: Reuse, progress) -> None:
    """Link (or copy) the previous output's parts that still hold into the new label folder ``parts``."""
    output.take_files({f"{LABELS_SUBDIR}/{name}": f"{parts}/{unit_file_name(index)}"
                       for index, name in reuse.parts.items()})
    if reuse.files:
        progress(f"[ray_ncut] --incremental: {len(reuse.files)} file(s), {reuse.rows} rows, already labelled by "
                 f"this model: reused")


def _measure(opts, fs, k, ids, record: ModelRecord, parts, with_label, reuse, result, progress) -> dict:
    """Check what was written and compute metrics.json's content (the job adds times and paths)."""
    from ..knn import knn_cut

    t0 = time.perf_counter()
    sizes = validate_labels(parts, fs.n_rows - reuse.dropped - result["dropped"], ids)
    expected = result["sizes"] + np.array([reuse.sizes.get(str(int(c)), 0) for c in ids], np.int64)
    if not np.array_equal(sizes, expected):  # the units' partials disagree with the files
        raise RuntimeError(f"cluster sizes counted by the labelling tasks {expected.tolist()} differ from "
                           f"the written files' {sizes.tolist()}; not publishing")
    labelled = result["rows"]
    t_validated = time.perf_counter()
    metrics = {
        "rows": int(sizes.sum()),
        "cluster_sizes": sizes.tolist(),
        "cluster_ids": ids.tolist(),
        "rows_labelled": labelled,  # read and labelled by this run (all rows unless --incremental)
        "incremental": {"files_reused": len(reuse.files), "rows_reused": reuse.rows} if opts.incremental else None,
        "dropped_invalid": {"rows": result["dropped"] + reuse.dropped, "first_id": result["first_dropped"]}
        if opts.drop_invalid else None,
        "nodes": result["nodes"],
        "data": {"uri": opts.data, "features": fs.n_features, "read_units": len(fs.units)},
        "model": {"path": absolute(opts.model), "k": k, "loss": record.train.loss if record.train else None,
                  "trained_on": (record.data or {}).get("uri")},
        "label_seconds": round(result["seconds"], 3),
        "rows_per_second": round(labelled / max(result["seconds"], 1e-9), 1),
        "steady_rows_per_second": round(result["steady_rows_per_second"], 1),
    }
    over = "" if not reuse.files else " (rows labelled in this run)"
    if labelled:
        cut = knn_cut(result["sample_Z"], result["sample_cluster"], k, opts.ncut_neighbors)
        metrics["normalized_cut"] = {
            "ncut": cut["ncut"], "rcut": cut["rcut"], **cut["graph"],
            "sample": ("all rows" if cut["graph"]["rows"] == labelled else
                       f"uniform sample of {cut['graph']['rows']} rows") + over,
        }
        now = fit_state(result["sample_Z"], result["sample_cluster"], result["sample_confidence"], k,
                        opts.ncut_neighbors, opts.seed)
        now["low_confidence"] = result["low_confidence"] / labelled  # exact, over every labelled row
        now["shares"] = (result["sizes"] / labelled).tolist()  # exact too
        metrics["drift"] = drift_check(record.fit_at_training, now, _feature_names(fs))
        progress(describe_drift(metrics["drift"]))
    else:
        metrics["normalized_cut"] = metrics["drift"] = None  # nothing new: nothing to measure
    if labelled:
        metrics["confidence_histogram"] = {"edges": np.linspace(0, 1, CONFIDENCE_BINS + 1).round(3).tolist(),
                                           "counts": result["confidence_counts"].tolist()}
    if with_label and labelled:
        cont = result["contingency"]
        metrics["ground_truth"] = {"column": opts.columns.label_column, **clustering_scores(cont),
                                   "contingency": {"classes": [str(c) for c in cont.classes],
                                                   "clusters": ids[cont.clusters].tolist(),
                                                   "table": cont.table.tolist()}}
        if over:
            metrics["ground_truth"]["over"] = over.strip(" ()")
    metrics["stage_seconds"] = {"validate": round(t_validated - t0, 3), "ncut": round(time.perf_counter() - t_validated, 3)}
    return metrics


def _feature_names(fs) -> list | None:
    feats = fs.units[0].columns.get("features") if fs.units[0].kind == "parquet" else None
    return feats if isinstance(feats, list) else None


def _label_all(ex, opts, fs, todo: list[int], k, parts, with_label, progress) -> dict:
    """Label the units ``todo`` (indices into ``fs.units``) into the folder ``parts``; their merged partials."""
    from ..knn import default_metric_sample

    todo_rows = sum(fs.units[i].rows for i in todo)
    if not todo:
        return {**_merge({}, k, fs.n_features), "seconds": 0.0, "steady_rows_per_second": 0.0}
    ncut_sample = opts.ncut_sample or default_metric_sample(fs.n_features)
    sample_rate = min(1.0, ncut_sample / max(todo_rows, 1))
    args = (absolute(opts.model), parts, with_label, sample_rate, opts.seed, opts.drop_invalid)
    stream, how = ex.label_units(fs.units, todo, args, opts.actors)
    progress(f"[ray_ncut] labelling {todo_rows} rows in {len(todo)} units {how}")
    t0, done, last = time.perf_counter(), 0, 0.0
    first = None  # (seconds, rows) when the first unit came back: the pool is up
    results: dict[int, object] = {}  # unit -> its result: a unit that came back twice counts once
    try:
        for r in stream:
            if r.error:
                raise DataError(r.error)  # stops the pool; the staging directory is removed
            if r.unit in results:
                continue
            results[r.unit] = r
            done += r.rows + r.dropped
            now = time.perf_counter() - t0
            first = first or (now, done)
            if now - last > PROGRESS_SECONDS or done == todo_rows:
                progress(f"[ray_ncut] labelled {done}/{todo_rows} rows ({done / max(now, 1e-9):,.0f} rows/s)")
                last = now
    finally:
        stream.close()  # an error or Ctrl-C: stop the pool now, while Ray is still connected
    seconds = time.perf_counter() - t0
    # Rows/s once the pool is up (actor start-up excluded); the whole stage's rate where one unit.
    steady = (done - first[1]) / (seconds - first[0]) if done > first[1] and seconds > first[0] else done / seconds
    return {**_merge(results, k, fs.n_features), "seconds": seconds, "steady_rows_per_second": steady}


def _merge(results: dict, k: int, d: int) -> dict:
    """The units' partials merged (in unit order, so the metric's sample does not depend on timing)."""
    ordered = [results[u] for u in sorted(results)]
    cont = None
    for r in ordered:
        cont = merge_contingency(cont, r.contingency)
    dropped = [r for r in ordered if r.dropped]
    return {
        "results": results,
        "rows": sum(r.rows for r in ordered),
        "sizes": sum((r.sizes for r in ordered), np.zeros(k, np.int64)),
        "contingency": cont,
        "sample_Z": np.concatenate([r.sample_features for r in ordered] or [np.zeros((0, d), np.float32)]),
        "sample_cluster": np.concatenate([r.sample_cluster for r in ordered] or [np.zeros(0, np.int32)]),
        "sample_confidence": np.concatenate([r.sample_confidence for r in ordered] or [np.zeros(0, np.float32)]),
        "low_confidence": sum(r.low_confidence for r in ordered),
        "dropped": sum(r.dropped for r in ordered),
        "first_dropped": dropped[0].first_dropped if dropped else "",
        "nodes": len({r.node for r in ordered}),
        "confidence_counts": sum((r.confidence_counts for r in ordered if r.confidence_counts is not None),
                                 np.zeros(CONFIDENCE_BINS, np.int64)),
    }
