"""Labelling rows with a trained model, and the per-unit partial results. No Ray.

:class:`ClusterLabeler` is the batch predictor: a callable that loads a model
directory once and maps a batch ``{"features", ...}`` to ``{"id", "cluster",
"confidence"}``. It works on a plain dict (a test, ``ds.take_batch()``) exactly as
it does inside a Ray Data actor.

:func:`label_unit` is what one labelling task does to one read unit: read, label,
write the unit's Parquet file under a name fixed by the unit (so a retried task
overwrites its own file and never duplicates rows), and return the unit's partial
metrics: cluster sizes, a contingency table when ground truth is read, and a
uniform sample of (scaled features, cluster) rows for the kNN-graph cut.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .data.readers import ReadUnit, read_unit, unit_sample_mask
from .drift import LOW_CONFIDENCE
from .metrics import Contingency, contingency_partial
from .model import cluster_ids, load_model_dir
from .scaling import FeatureScaler

__all__ = ["ClusterLabeler", "UnitResult", "label_unit", "unit_file_name", "OUTPUT_COLUMNS"]

OUTPUT_COLUMNS = ("id", "cluster", "confidence")


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ClusterLabeler:
    """Batch predictor: ``{"id", "features" (B, d)} -> {"id", "cluster" int32, "confidence" float32}``.

    ``cluster`` is the model's stable id of the row's cluster (``cluster_ids``: the output index
    unless the model was reclustered); :meth:`predict` returns the output index.

    Parameters
    ----------
    model_dir : str
        A model directory (``NeuralCut.save`` or ``jobs/train.py``).
    device : str
        "auto" uses CUDA when this process sees a GPU.
    """

    def __init__(self, model_dir: str, device: str = "auto"):
        head, config = load_model_dir(model_dir)
        self.device = _device(device)
        self.head = head.to(self.device).eval()
        self.scaler = FeatureScaler.from_dict(config["scaler"])
        self.input_dim = head.config.input_dim
        self.cluster_ids = cluster_ids(config, head.config.n_clusters).astype(np.int32)  # (k,)

    def check_dimension(self, d: int, where: str) -> None:
        if d != self.input_dim:
            raise ValueError(f"{where} has {d} features, but the model expects {self.input_dim}")

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw features (B, d) -> (scaled features (B, d), output index (B,) int32, confidence (B,) float32)."""
        Z = self.scaler.transform(X)
        P = self.head.predict_proba(torch.from_numpy(Z).to(self.device))  # (B, k)
        conf, cluster = P.max(1)
        return Z, cluster.to(torch.int32).cpu().numpy(), conf.to(torch.float32).cpu().numpy()

    def __call__(self, batch: dict) -> dict:
        X = np.asarray(batch["features"], dtype=np.float32)
        if X.dtype == object or X.ndim == 1:  # a list column arrives as an object array of rows
            X = np.stack(batch["features"]).astype(np.float32)
        _, cluster, conf = self.predict(X)
        return {"id": batch["id"], "cluster": self.cluster_ids[cluster], "confidence": conf}


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


def unit_file_name(index: int) -> str:
    """The output file of read unit ``index``: fixed, so a retried task overwrites it."""
    return f"part-{index:06d}.parquet"


def label_unit(
    labeler: ClusterLabeler,
    unit: ReadUnit,
    index: int,
    staging_dir: str,
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
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    try:
        data = read_unit(unit, with_label=with_label, check_finite=not drop_invalid)
        labeler.check_dimension(data["features"].shape[1], unit.source)
    except ValueError as e:  # DataError, or a dimension the model does not take
        k, d = labeler.head.config.n_clusters, labeler.input_dim
        return UnitResult(index, 0, np.zeros(k, np.int64), None, np.zeros((0, d), np.float32),
                          np.zeros(0, np.int32), np.zeros(0, np.float32), 0, time.perf_counter() - t0, error=str(e))
    dropped, first_dropped = 0, ""
    if drop_invalid:
        data, dropped, first_dropped = _drop_invalid(data)
    X = data["features"]
    Z_parts, cl_parts, cf_parts = [], [], []
    for s in range(0, len(X), batch_rows):
        Z, cl, cf = labeler.predict(X[s : s + batch_rows])
        Z_parts.append(Z)
        cl_parts.append(cl)
        cf_parts.append(cf)
    Z = np.concatenate(Z_parts) if Z_parts else np.zeros((0, X.shape[1]), np.float32)
    cluster = np.concatenate(cl_parts) if cl_parts else np.zeros(0, np.int32)
    conf = np.concatenate(cf_parts) if cf_parts else np.zeros(0, np.float32)

    table = pa.table({"id": data["id"], "cluster": labeler.cluster_ids[cluster], "confidence": conf})
    final = os.path.join(staging_dir, unit_file_name(index))
    tmp = os.path.join(staging_dir, f".{unit_file_name(index)}.{os.getpid()}.tmp")  # hidden: Parquet readers skip it
    pq.write_table(table, tmp)
    os.replace(tmp, final)  # a half-written file never carries the final name

    k = labeler.head.config.n_clusters
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
    )


def _drop_invalid(data: dict) -> tuple[dict, int, str]:
    """The unit's rows without NaN or infinite features, how many were dropped, and the first one's id."""
    finite = np.isfinite(data["features"]).all(axis=1)  # (n,)
    if finite.all():
        return data, 0, ""
    first = str(data["id"][int(np.argmin(finite))])
    return {name: values[finite] for name, values in data.items()}, int((~finite).sum()), first
