"""A feature set planned on the driver, and the passes over it that a job makes through an executor:
the scan (scaling statistics, NaN check, training sample), the id check, the constraint rows. No Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data.readers import (
    ColumnSpec,
    DataError,
    ReadUnit,
    duplicate_hashes,
    feature_schema,
    hash_ids,
    plan_units,
    read_unit,
    read_unit_ids,
    repeated_values,
    unit_sample_mask,
)
from ..scaling import FeatureScaler, MomentSums, merge_moments, moments_partial
from ..validation import first_non_finite

if TYPE_CHECKING:  # a Ray Data task running a scan function imports this module: no torch there
    from .executor import Executor

__all__ = ["FeatureSet", "open_feature_set", "describe_columns", "check_unique_ids", "scan_statistics", "collect_rows"]


class FeatureSet:
    """A planned feature set: its read units, row count and dimension, validated on the driver."""

    def __init__(self, uri: str, columns: ColumnSpec, units: list[ReadUnit], n_features: int):
        self.uri, self.columns, self.units, self.n_features = uri, columns, units, n_features

    @property
    def n_rows(self) -> int:
        return sum(u.rows for u in self.units)

    @property
    def schema(self) -> dict:
        """The features as a model records them (:func:`ray_ncut.data.readers.feature_schema`)."""
        return feature_schema(self.units, self.n_features)


def open_feature_set(uri: str, columns: ColumnSpec | None = None, check_finite: bool = True) -> FeatureSet:
    """Plan ``uri`` and read its first unit to learn (and check) the feature dimension;
    ``check_finite=False`` where the caller skips invalid rows instead of failing on them."""
    columns = columns or ColumnSpec()
    units = plan_units(uri, columns)
    first = next((u for u in units if u.rows > 0), None)
    if first is None:
        raise ValueError(f"{uri} has no rows")
    d = read_unit(first, with_label=False, check_finite=check_finite)["features"].shape[1]
    return FeatureSet(uri, columns, units, d)


def describe_columns(fs: FeatureSet) -> str:
    """One line saying which columns the job reads as features, ids and ground truth."""
    c = fs.units[0].columns if fs.units[0].kind == "parquet" else None
    if c is None:
        return f"[ray_ncut] features: {fs.n_features} per row ({fs.uri}); ids: row numbers"
    feats = c["features"]
    if isinstance(feats, list):
        shown = ", ".join(feats[:8]) + (f", ... ({len(feats)} columns)" if len(feats) > 8 else "")
        what = f"{len(feats)} columns ({shown})"
    else:
        what = f"column {feats!r} ({fs.n_features} values a row)"
    ids = f"column {c['id']!r}" if c["id"] else "derived from file and row"
    label = f"; ground truth: column {c['label']!r} (not a feature)" if c["label"] else ""
    skipped = c.get("skipped_outputs")
    if skipped:
        label += f"; skipped {len(skipped)} ray_ncut output folder(s) inside the input: {', '.join(skipped[:3])}"
    if fs.columns.model:
        what += f", matched by name to {fs.columns.model}"
        if c.get("reordered"):
            what += " (the input holds them in another order: read in the model's)"
    return f"[ray_ncut] features: {what}; ids: {ids}{label}"


# Up to this many ids the check reads them in the job's process: a pass of Ray tasks costs a job
# seconds of fixed start-up (every job gets fresh workers; 3.3 s for 3,000 ids on 2 cores), more
# than reading a million ids here.
DRIVER_ID_ROWS = 1_000_000


def check_unique_ids(ex: Executor, fs: FeatureSet) -> None:
    """Raise :class:`DataError` naming a repeated id, from one pass over the id column (in this
    process up to :data:`DRIVER_ID_ROWS` rows, else on the executor).

    Derived ids (file and row) and built-in row numbers are unique by construction."""
    if fs.units[0].kind != "parquet" or not fs.units[0].columns["id"]:
        return
    from .executor import LocalExecutor  # torch; not at the top: Ray's read tasks import this module

    runner = ex if fs.n_rows > DRIVER_ID_ROWS else LocalExecutor()
    hashes = runner.map_units(fs.units, lambda unit, _: hash_ids(read_unit_ids(unit)))
    if not duplicate_hashes(hashes):
        return
    # A repeat (or a 64-bit collision): fetch only the ids whose hash repeats, and check exactly.
    h, counts = np.unique(np.concatenate(hashes), return_counts=True)
    suspects = set(h[counts > 1].tolist())
    candidates = runner.map_units(fs.units, lambda unit, _: _ids_with_hash(unit, suspects))
    dup = repeated_values(np.concatenate(candidates))
    if dup:
        raise DataError(f"{fs.uri}: ids in column {fs.units[0].columns['id']!r} are not unique: {len(dup)} repeated, "
                        f"e.g. {dup[0]!r}; labels could not be joined back to rows")


def _ids_with_hash(unit, hashes: set) -> np.ndarray:
    ids = np.asarray(read_unit_ids(unit))
    return ids[np.isin(hash_ids(ids), list(hashes))]


def _scan_unit(unit, index: int, fraction: float, seed: int, with_label: bool) -> dict:
    """One read unit's scaling sums, NaN report and share of the training sample."""
    batch = read_unit(unit, with_label=with_label, check_finite=False)
    X = batch["features"]  # (n, d)
    bad = ~np.isfinite(X)
    first = first_non_finite(X)
    first_bad = ""
    if first:  # reported, not raised: an exception in a Ray task loses its type
        row, col, value = first
        names = unit.columns.get("features") if unit.kind == "parquet" else None
        feature = f"column {names[col]!r}" if isinstance(names, list) else f"feature {col}"
        first_bad = f"row id {batch['id'][row]!s}, {feature}: {value}"
        X = np.where(bad, 0.0, X)
    keep = unit_sample_mask(seed, index, len(X), fraction)
    return {"moments": moments_partial(X), "n_bad": int(bad.any(1).sum()), "first_bad": first_bad,
            "sample": np.asarray(X[keep], dtype=np.float32),
            "sample_label": batch["label"][keep] if "label" in batch else None}


def scan_statistics(ex: Executor, fs: FeatureSet, scaling: str, sample_rows: int, seed: int, with_label: bool = False,
                    progress=None):
    """One streaming pass over the data: the scaling statistics, a NaN check of every row,
    and a uniform random training sample of about ``sample_rows`` rows.

    Returns ``(scaler, X_sample (m, d) float32, n_rows, y_sample (m,) or None)``; the
    sample's ground truth is read only with ``with_label`` (for reporting, never training).
    Only per-unit sums and the sample come back to the driver; the corpus is never held whole.
    """
    fraction = min(1.0, sample_rows / max(fs.n_rows, 1))
    results = ex.map_units(fs.units, lambda unit, index: _scan_unit(unit, index, fraction, seed, with_label),
                           progress=progress, doing="scanned")
    n_bad = sum(r["n_bad"] for r in results)
    if n_bad:
        first_bad = next(r["first_bad"] for r in results if r["first_bad"])
        raise DataError(f"{fs.uri} has {n_bad} row(s) with NaN or infinite values; the first at {first_bad}")
    merged: MomentSums | None = None
    for r in results:
        merged = merge_moments(merged, r["moments"])
    scaler = FeatureScaler.from_moments(scaling, merged)
    X = np.concatenate([r["sample"] for r in results])
    y = np.concatenate([r["sample_label"] for r in results]) if with_label else None
    return scaler, X, merged.count, y


def collect_rows(ex: Executor, fs: FeatureSet, ids: set[str]) -> tuple[list[str], np.ndarray]:
    """The rows whose id (as text) is in ``ids``, from one filtered pass: ``(row_ids, X (c, d))``.

    For the rows named in a constraints file; only the matches come to the driver.
    """
    wanted = frozenset(ids)

    def keep(unit, _):
        batch = read_unit(unit, with_label=False)
        mask = np.array([str(i) in wanted for i in batch["id"]], dtype=bool)
        return [str(i) for i in batch["id"][mask]], batch["features"][mask]

    found = ex.map_units(fs.units, keep)  # in unit order
    row_ids = [rid for ids_, _ in found for rid in ids_]
    X = np.concatenate([X for _, X in found]).astype(np.float32) if found else np.zeros((0, fs.n_features), np.float32)
    # A duplicated id keeps its first row, so that every pair names one row.
    first = {rid: i for i, rid in reversed(list(enumerate(row_ids)))}
    order = sorted(first.values())
    return [row_ids[i] for i in order], X[order]
