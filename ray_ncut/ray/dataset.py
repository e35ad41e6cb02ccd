"""``--data URI`` -> Ray Data: read units as tasks, streaming scaling statistics, the training sample."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import ray

from ..data.readers import (
    ColumnSpec,
    DataError,
    ReadUnit,
    plan_units,
    read_unit,
    unit_sample_mask,
)
from ..scaling import FeatureScaler, MomentSums, merge_moments, moments_partial

__all__ = ["init_ray", "read_dataset", "scan_statistics", "collect_rows", "FeatureSet", "open_feature_set"]

log = logging.getLogger(__name__)

# Ray Data read/map tasks ask for half a CPU: on a 2-CPU laptop whole-CPU requests
# by actors and train workers starve the read tasks and the job hangs silently.
TASK_CPUS = 0.5


def init_ray() -> None:
    """Connect to the cluster ``ray.init()`` finds (RAY_ADDRESS, ``ray job submit``) or start a local one."""
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=True)
    # ray_ncut prints its own progress; Ray Data's per-operator INFO lines drown it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class FeatureSet:
    """A planned feature set: its read units, row count and dimension, validated on the driver."""

    def __init__(self, uri: str, columns: ColumnSpec, units: list[ReadUnit], n_features: int):
        self.uri, self.columns, self.units, self.n_features = uri, columns, units, n_features

    @property
    def n_rows(self) -> int:
        return sum(u.rows for u in self.units)


def open_feature_set(uri: str, columns: ColumnSpec | None = None) -> FeatureSet:
    """Plan ``uri`` and read its first unit to learn (and check) the feature dimension."""
    columns = columns or ColumnSpec()
    units = plan_units(uri, columns)
    first = next((u for u in units if u.rows > 0), None)
    if first is None:
        raise ValueError(f"{uri} has no rows")
    d = read_unit(first, with_label=False)["features"].shape[1]
    return FeatureSet(uri, columns, units, d)


def read_dataset(fs: FeatureSet, with_label: bool = False, check_finite: bool = True) -> ray.data.Dataset:
    """One Ray Data block per read unit, read in parallel tasks; columns id, features[, label]."""
    units = fs.units

    def read(batch):
        parts = [read_unit(units[int(i)], with_label, check_finite) for i in batch["id"]]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return ray.data.range(len(units), override_num_blocks=len(units)).map_batches(
        read, batch_size=1, num_cpus=TASK_CPUS
    )


def _scan_unit(unit, index: int, fraction: float, seed: int) -> dict:
    """One read unit's scaling sums, NaN report and share of the training sample."""
    batch = read_unit(unit, with_label=False, check_finite=False)
    X = batch["features"]  # (n, d)
    bad = ~np.isfinite(X)
    first_bad = ""
    if bad.any():  # reported, not raised: an exception in a Ray task loses its type
        row, col = map(int, np.argwhere(bad)[0])
        first_bad = f"row id {batch['id'][row]!s} has a NaN or infinite feature {col}: {X[row, col]}"
        X = np.where(bad, 0.0, X)
    keep = unit_sample_mask(seed, index, len(X), fraction)
    return {"moments": moments_partial(X), "n_bad": int(bad.any(1).sum()), "first_bad": first_bad,
            "sample": np.asarray(X[keep], dtype=np.float32)}


def scan_statistics(fs: FeatureSet, scaling: str, sample_rows: int, seed: int):
    """One streaming pass over the data: the scaling statistics, a NaN check of every row,
    and a uniform random training sample of about ``sample_rows`` rows.

    Returns ``(scaler, X_sample (m, d) float32, n_rows)``. Only per-unit sums and the
    sample come back to the driver; the corpus is never held whole.
    """
    units, fraction = fs.units, min(1.0, sample_rows / max(fs.n_rows, 1))

    def scan(batch):
        results = [_scan_unit(units[int(i)], int(i), fraction, seed) for i in batch["id"]]
        return {"index": batch["id"], "result": np.array([pickle.dumps(r) for r in results], dtype=object)}

    ds = ray.data.range(len(units), override_num_blocks=len(units)).map_batches(scan, batch_size=1, num_cpus=TASK_CPUS)
    by_unit = {int(row["index"]): pickle.loads(row["result"]) for row in ds.iter_rows()}
    results = [by_unit[i] for i in sorted(by_unit)]
    n_bad = sum(r["n_bad"] for r in results)
    if n_bad:
        first_bad = next(r["first_bad"] for r in results if r["first_bad"])
        raise DataError(f"{fs.uri}: {n_bad} rows with NaN or infinite features; first: {first_bad}")
    merged: MomentSums | None = None
    for r in results:
        merged = merge_moments(merged, r["moments"])
    scaler = FeatureScaler.from_moments(scaling, merged)
    X = np.concatenate([r["sample"] for r in results])
    return scaler, X, merged.count


def collect_rows(fs: FeatureSet, ids: set[str]) -> tuple[list[str], np.ndarray]:
    """The rows whose id (as text) is in ``ids``, from one filtered pass: ``(row_ids, X (c, d))``.

    For the rows named in a constraints file; only the matches come to the driver.
    """
    wanted = frozenset(ids)

    def keep(batch):
        mask = np.array([str(i) in wanted for i in batch["id"]], dtype=bool)
        return {"id": np.array([str(i) for i in batch["id"][mask]], dtype=object), "features": batch["features"][mask]}

    row_ids, parts = [], []
    for b in read_dataset(fs).map_batches(keep, batch_format="numpy", num_cpus=TASK_CPUS).iter_batches(
        batch_size=None, batch_format="numpy"
    ):
        row_ids += b["id"].tolist()
        parts.append(b["features"])
    X = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, fs.n_features), np.float32)
    # A duplicated id keeps its first row, so that every pair names one row.
    first = {rid: i for i, rid in reversed(list(enumerate(row_ids)))}
    order = sorted(first.values())
    return [row_ids[i] for i in order], X[order]
