"""The assign stage: labelling rows with a trained model, and the per-unit partial results. No Ray.

:class:`ClusterAssigner` is the batch predictor: a callable that loads a model
directory (a :class:`ray_ncut.model.ClusterModel`) once and maps a batch ``{"features", ...}`` to ``{"id", "cluster",
"confidence"}``. It works on a plain dict (a test, ``ds.take_batch()``) exactly as
it does inside a Ray Data actor.

:func:`assign_unit` is what one labelling task does to one read unit: read, label,
write the unit's Parquet file under a name fixed by the unit (so a retried task
overwrites its own file and never duplicates rows), and return the unit's partial
metrics: cluster sizes, a contingency table when ground truth is read, and a
uniform sample of (scaled features, cluster) rows for the kNN-graph cut.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .atomic import write_atomic
from .data.readers import ReadUnit, duplicate_hashes, hash_ids, read_unit, repeated_values, unit_sample_mask
from .drift import LOW_CONFIDENCE
from .metrics import Contingency, contingency_partial
from .model import ClusterModel
from .outputs.paths import filesystem, is_uri

__all__ = ["ClusterAssigner", "UnitResult", "assign_unit", "unit_file_name", "OUTPUT_COLUMNS", "CONFIDENCE_BINS",
           "validate_labels"]

OUTPUT_COLUMNS = ("id", "cluster", "confidence")
CONFIDENCE_BINS = 20  # the confidence histogram's bins over [0, 1] (metrics.json, report.html)


class ClusterAssigner:
    """Batch predictor: ``{"id", "features" (B, d)} -> {"id", "cluster" int32, "confidence" float32}``.

    ``cluster`` is the model's stable id of the row's cluster (``cluster_ids``: the output index
    unless the model was reclustered).

    Parameters
    ----------
    model_dir : str
        A model directory (``NeuralCut.save`` or ``jobs/train.py``).
    device : str
        "auto" uses CUDA when this process sees a GPU.
    """

    def __init__(self, model_dir: str, device: str = "auto"):
        from .threads import configure_threads

        configure_threads()  # in a Ray actor: the CPUs Ray assigned it (OMP_NUM_THREADS)
        self.model = ClusterModel.load(model_dir, device)
        self.cluster_ids = self.model.cluster_ids.astype(np.int32)  # (k,)

    def __call__(self, batch: dict) -> dict:
        X = np.asarray(batch["features"], dtype=np.float32)
        if X.dtype == object or X.ndim == 1:  # a list column arrives as an object array of rows
            X = np.stack(batch["features"]).astype(np.float32)
        _, output, confidence = self.model.assign(X)
        return {"id": batch["id"], "cluster": self.cluster_ids[output], "confidence": confidence}


@dataclass
class UnitResult:
    """One read unit's contribution: everything here merges by addition / concatenation."""

    unit: int
    rows: int
    sizes: np.ndarray  # (k,) int64
    contingency: Contingency | None
    sample_features: np.ndarray  # (m, d) float32, scaled
    sample_cluster: np.ndarray  # (m,) int32
    sample_confidence: np.ndarray  # (m,) float32
    low_confidence: int  # rows whose confidence is below drift.LOW_CONFIDENCE
    seconds: float
    error: str = ""  # bad data in this unit: reported, not raised (a Ray task would lose the type)
    dropped: int = 0  # rows with NaN or infinite features skipped (drop_invalid)
    first_dropped: str = ""  # the first of them, for the report
    node: str = ""  # where it ran (set by the Ray actor)
    confidence_counts: np.ndarray | None = None  # (CONFIDENCE_BINS,) int64 histogram of the confidences


def unit_file_name(index: int) -> str:
    """The output file of read unit ``index``: fixed, so a retried task overwrites it."""
    return f"part-{index:06d}.parquet"


def assign_unit(
    assigner: ClusterAssigner,
    unit: ReadUnit,
    index: int,
    parts_dir: str,
    with_label: bool,
    sample_rate: float,
    seed: int,
    batch_rows: int = 65536,
    drop_invalid: bool = False,
) -> UnitResult:
    """Read, label and write one unit; return its partial metrics.

    With ``drop_invalid`` rows holding a NaN or infinite feature are skipped and
    counted (``dropped``) instead of failing the unit.
    """
    import time

    import pyarrow as pa

    t0 = time.perf_counter()
    try:
        data = read_unit(unit, with_label=with_label, check_finite=not drop_invalid)
        assigner.model.check_dimension(data["features"].shape[1], unit.source)
    except ValueError as e:  # DataError, or a dimension the model does not take
        k, d = assigner.model.n_clusters, assigner.model.input_dim
        return UnitResult(index, 0, np.zeros(k, np.int64), None, np.zeros((0, d), np.float32),
                          np.zeros(0, np.int32), np.zeros(0, np.float32), 0, time.perf_counter() - t0, error=str(e))
    dropped, first_dropped = 0, ""
    if drop_invalid:
        data, dropped, first_dropped = _drop_invalid(data)
    X = data["features"]
    Z_parts, cl_parts, cf_parts = [], [], []
    for s in range(0, len(X), batch_rows):
        Z, cl, cf = assigner.model.assign(X[s : s + batch_rows])
        Z_parts.append(Z)
        cl_parts.append(cl)
        cf_parts.append(cf)
    Z = np.concatenate(Z_parts) if Z_parts else np.zeros((0, X.shape[1]), np.float32)
    cluster = np.concatenate(cl_parts) if cl_parts else np.zeros(0, np.int32)
    conf = np.concatenate(cf_parts) if cf_parts else np.zeros(0, np.float32)

    table = pa.table({"id": data["id"], "cluster": assigner.cluster_ids[cluster], "confidence": conf})
    write_part(parts_dir, unit_file_name(index), table)

    k = assigner.model.n_clusters
    keep = unit_sample_mask(seed, index, len(X), sample_rate)
    return UnitResult(
        unit=index,
        rows=len(X),
        sizes=np.bincount(cluster, minlength=k).astype(np.int64),
        contingency=contingency_partial(data["label"], cluster) if with_label else None,
        sample_features=Z[keep],
        sample_cluster=cluster[keep],
        sample_confidence=conf[keep],
        low_confidence=int((conf < LOW_CONFIDENCE).sum()),
        seconds=time.perf_counter() - t0,
        dropped=dropped,
        first_dropped=first_dropped,
        confidence_counts=np.histogram(conf, bins=CONFIDENCE_BINS, range=(0.0, 1.0))[0].astype(np.int64),
    )


def write_part(parts_dir: str, name: str, table) -> None:
    """Write one label file into ``parts_dir`` (a local folder or an object-store prefix). A retried
    task overwrites its own file; a half-written one never carries the final name (a local
    rename, or the object store's all-or-nothing PUT)."""
    import pyarrow.parquet as pq

    if is_uri(parts_dir):
        fs, folder = filesystem(parts_dir)
        pq.write_table(table, f"{folder}/{name}", filesystem=fs)
    else:
        write_atomic(os.path.join(parts_dir, name), lambda f: pq.write_table(table, f))


def _drop_invalid(data: dict) -> tuple[dict, int, str]:
    """The unit's rows without NaN or infinite features, how many were dropped, and the first one's id."""
    finite = np.isfinite(data["features"]).all(axis=1)  # (n,)
    if finite.all():
        return data, 0, ""
    first = str(data["id"][int(np.argmin(finite))])
    return {name: values[finite] for name, values in data.items()}, int((~finite).sum()), first


def validate_labels(labels_dir: str, expected_rows: int, ids: np.ndarray) -> np.ndarray:
    """Read the written label files back, an output check before publishing: the row count must
    equal the input's (less dropped rows) and the ids be unique. Returns the size of each cluster,
    in the order of the model's stable ``ids`` (k,), counted from what was written, so that the published metrics count each
    published row exactly once, whatever was retried."""
    import pyarrow.dataset as pads

    dataset = pads.dataset(labels_dir, format="parquet")  # local or a URI; skips ".tmp" and "_" names
    hashes, counts = [], np.zeros(int(ids.max()) + 1, np.int64)
    for batch in dataset.to_batches(columns=["id", "cluster"]):
        hashes.append(hash_ids(batch.column(0).to_numpy(zero_copy_only=False)))
        counts += np.bincount(batch.column(1).to_numpy(), minlength=len(counts))[: len(counts)]
    sizes = counts[ids]
    rows = int(sizes.sum())
    if rows != expected_rows:
        raise RuntimeError(f"staged labels have {rows} rows, the input has {expected_rows}; not publishing")
    if duplicate_hashes(hashes):  # a real duplicate, or (rarely) a 64-bit hash collision: check exactly
        dup = repeated_values(dataset.to_table(columns=["id"]).column(0).to_numpy(zero_copy_only=False))
        if dup:
            raise ValueError(f"ids are not unique: {len(dup)} repeated, e.g. {dup[0]!r}; not publishing")
    return sizes
