"""``--data URI`` -> Ray Data: read units as tasks, streaming scaling statistics, the training sample."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time

import numpy as np
import ray

from ..cli import stop_on_sigterm
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

__all__ = ["init_ray", "connect", "IN_PROCESS_VALUES", "ENGINES", "map_units", "scan_statistics", "collect_rows", "FeatureSet",
           "open_feature_set", "describe_columns", "check_unique_ids"]

log = logging.getLogger(__name__)

# Ray Data read/map tasks ask for half a CPU: on a 2-CPU laptop whole-CPU requests
# by actors and train workers starve the read tasks and the job hangs silently.
PROGRESS_SECONDS = 5.0  # at most one progress line this often
TASK_CPUS = 0.5


_CONNECTED_HERE = False  # whether init_ray made this process's Ray connection


def connected_by_job() -> bool:
    return _CONNECTED_HERE and ray.is_initialized()


def disconnect() -> None:
    """Undo :func:`init_ray`: disconnect, stopping an embedded cluster it started."""
    global _CONNECTED_HERE
    _CONNECTED_HERE = False
    ray.shutdown()


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (as inside ``ray job submit``), else to
    the one Ray cluster running on this machine, else start an embedded local one (also
    when a cluster that died without ``ray stop`` left its address behind).

    Where several clusters run on this machine and RAY_ADDRESS names none, Ray 2.60 would
    connect to whichever started last (maybe someone else's, with other credentials);
    the job starts its own embedded cluster instead, and says so.
    """
    global _CONNECTED_HERE
    # ray_ncut prints its own progress; Ray Data's per-operator INFO lines drown it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    _CONNECTED_HERE = True
    running = None if os.environ.get("RAY_ADDRESS") else _clusters_on_this_machine()
    if running is not None and running > 1:
        print("[ray_ncut] several Ray clusters run on this machine and RAY_ADDRESS names none: "
              "starting an embedded one for this job", flush=True)
        _init_embedded_beside_others()
        how = "started an embedded Ray cluster"
    elif running == 0:
        # Not ray.init(): it would try the address a dead cluster left in Ray's temp folder
        # (ray_current_cluster, removed only by `ray stop`) for minutes before giving up.
        _init_shielded(address="local")
        how = "started an embedded Ray cluster"
    else:
        _init_shielded()
        named = "named by RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "running on this machine"
        how = f"joined the Ray cluster {named}"
    stop_on_sigterm()  # again: ray.init installed Ray's own SIGTERM handler
    # ray_ncut prints a progress line per stage; Ray Data's bars would interleave with it (and,
    # without tqdm, log "tqdm is not installed" in the middle of the job's lines).
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"[ray_ncut] {how} at {_describe_cluster()}", flush=True)


def _describe_cluster() -> str:
    """``ADDRESS (N node(s), C CPUs, G GPUs)`` of the connected cluster."""
    res = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    gpus = f", {res['GPU']:g} GPUs" if res.get("GPU") else ""
    return f"{ray.get_runtime_context().gcs_address} ({nodes} node(s), {res.get('CPU', 0):g} CPUs{gpus})"


# A job that would start its own Ray cluster on this machine only to run one CPU worker over at
# most this many feature values (rows x features: 400 MB of float32) works in its own process
# instead: Ray's start and its tasks' and actors' start-ups cost more than such work (digits:
# 9 s of 39; docs/scale.md). Fashion-MNIST (55M values) is under it, 10M x 64 rows is over.
IN_PROCESS_VALUES = 100_000_000
ENGINES = ("auto", "ray", "local")


def connect(fs: "FeatureSet", engine: str = "auto", one_worker: bool = True, progress=None) -> None:
    """Decide where a job over ``fs`` runs, and join or start Ray (:func:`init_ray`) if there.

    ``engine``: ``"ray"``, ``"local"`` (this process, no Ray), or ``"auto"``: Ray wherever a
    cluster is named or already running, more than one worker is asked for, a GPU is present
    or the data holds more than :data:`IN_PROCESS_VALUES` values; this process otherwise.
    Sets ``fs.on_ray``.
    """
    fs.on_ray = _wants_ray(engine, fs.n_rows * fs.n_features, one_worker)
    if fs.on_ray:
        init_ray()
    elif progress:
        progress("[ray_ncut] small data on this machine: working in this process (no Ray cluster started)")


def _wants_ray(engine: str, values: int, one_worker: bool) -> bool:
    if engine not in ENGINES:
        raise ValueError(f"--engine should be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local" and not one_worker:
        raise ValueError("--engine local works in this process with one CPU worker: drop --workers, "
                         "--gpus-per-worker and --actors, or use --engine ray")
    if engine != "auto":
        return engine == "ray"
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):  # a cluster was named or joined: use it
        return True
    if not one_worker or values > IN_PROCESS_VALUES:
        return True
    import torch

    return torch.cuda.is_available() or _clusters_on_this_machine() > 0


def _init_embedded_beside_others() -> None:
    """Start an embedded cluster on a GCS port chosen here, with RAY_ADDRESS naming it.

    Ray Train's internal actors look their cluster up from RAY_ADDRESS, else by scanning
    the machine; with several clusters the scan picks the newest (another) and they log
    tracebacks. The cluster's processes inherit this environment, so they find their own.
    """
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by the node ray.init starts
    try:
        _init_shielded(address="local")  # "local" starts a cluster whatever RAY_ADDRESS says
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def _clusters_on_this_machine() -> int:
    from ray._private.services import find_gcs_addresses  # what ray.init itself consults

    return len(find_gcs_addresses())


def _init_shielded(**kwargs) -> None:
    """``ray.init`` with SIGINT ignored while it starts processes, which inherit that.

    Ctrl-C in a terminal signals the whole foreground process group. Without this, the
    processes of an embedded cluster (GCS, raylet, workers) would take it too and die in
    any order, each printing its own traceback; with it, only the job sees Ctrl-C, says
    what it kept, and then stops its cluster in order (``ray.shutdown``).
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _on_main_thread() else None
    try:
        ray.init(logging_level=logging.WARNING, log_to_driver=True, **kwargs)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class FeatureSet:
    """A planned feature set: its read units, row count and dimension, validated on the driver."""

    def __init__(self, uri: str, columns: ColumnSpec, units: list[ReadUnit], n_features: int):
        self.uri, self.columns, self.units, self.n_features = uri, columns, units, n_features
        self.on_ray = True  # whether its units are mapped by Ray tasks or in this process (:func:`connect`)

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


def map_units(fs: FeatureSet, fn, indices=None, progress=None, doing: str = "read") -> list:
    """``[fn(unit, index) for each read unit]``, one Ray task per unit (or, where the job runs
    in this process, a plain loop), in unit order.

    ``fn`` runs in a Ray Data task on whichever node has room; its result is pickled back
    to the driver, so it should be small (sums, hashes, a sample), never the unit's rows.
    With ``progress``, a line every few seconds says how many units are ``doing``-ne.
    """
    units = fs.units
    indices = list(range(len(units))) if indices is None else list(indices)
    if not fs.on_ray:
        return [fn(units[i], i) for i in indices]

    def run(batch):
        results = [_or_data_error(fn, units[int(i)], int(i)) for i in batch["item"]]
        return {"index": batch["item"], "result": np.array([pickle.dumps(r) for r in results], dtype=object)}

    ds = ray.data.from_items(indices, override_num_blocks=max(1, len(indices)))
    by_unit, t0, last = {}, time.perf_counter(), 0.0
    for row in ds.map_batches(run, batch_size=1, num_cpus=TASK_CPUS).iter_rows():
        result = pickle.loads(row["result"])
        if isinstance(result, DataError):  # raised on the driver with its own line, not as a RayTaskError
            raise result
        by_unit[int(row["index"])] = result
        now = time.perf_counter() - t0
        if progress and (now - last > PROGRESS_SECONDS or len(by_unit) == len(indices)):
            progress(f"[ray_ncut] {doing} {len(by_unit)}/{len(indices)} read units ({now:.0f}s)")
            last = now
    return [by_unit[i] for i in indices]


def _or_data_error(fn, unit, index):
    """``fn(unit, index)``, or the :class:`DataError` it raised, returned: Ray would wrap it in a
    ``RayTaskError`` whose first line loses the message."""
    try:
        return fn(unit, index)
    except DataError as e:
        return e


def check_unique_ids(fs: FeatureSet) -> None:
    """Raise :class:`DataError` naming a repeated id, from one pass over the id column.

    Derived ids (file and row) and built-in row numbers are unique by construction."""
    if fs.units[0].kind != "parquet" or not fs.units[0].columns["id"]:
        return
    hashes = map_units(fs, lambda unit, _: hash_ids(read_unit_ids(unit)))
    if not duplicate_hashes(hashes):
        return
    # A repeat (or a 64-bit collision): fetch only the ids whose hash repeats, and check exactly.
    h, counts = np.unique(np.concatenate(hashes), return_counts=True)
    suspects = set(h[counts > 1].tolist())
    candidates = map_units(fs, lambda unit, _: _ids_with_hash(unit, suspects))
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


def scan_statistics(fs: FeatureSet, scaling: str, sample_rows: int, seed: int, with_label: bool = False,
                    progress=None):
    """One streaming pass over the data: the scaling statistics, a NaN check of every row,
    and a uniform random training sample of about ``sample_rows`` rows.

    Returns ``(scaler, X_sample (m, d) float32, n_rows, y_sample (m,) or None)``; the
    sample's ground truth is read only with ``with_label`` (for reporting, never training).
    Only per-unit sums and the sample come back to the driver; the corpus is never held whole.
    """
    fraction = min(1.0, sample_rows / max(fs.n_rows, 1))
    results = map_units(fs, lambda unit, index: _scan_unit(unit, index, fraction, seed, with_label), progress=progress,
                        doing="scanned")
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


def collect_rows(fs: FeatureSet, ids: set[str]) -> tuple[list[str], np.ndarray]:
    """The rows whose id (as text) is in ``ids``, from one filtered pass: ``(row_ids, X (c, d))``.

    For the rows named in a constraints file; only the matches come to the driver.
    """
    wanted = frozenset(ids)

    def keep(unit, _):
        batch = read_unit(unit, with_label=False)
        mask = np.array([str(i) in wanted for i in batch["id"]], dtype=bool)
        return [str(i) for i in batch["id"][mask]], batch["features"][mask]

    found = map_units(fs, keep)  # in unit order
    row_ids = [rid for ids_, _ in found for rid in ids_]
    X = np.concatenate([X for _, X in found]).astype(np.float32) if found else np.zeros((0, fs.n_features), np.float32)
    # A duplicated id keeps its first row, so that every pair names one row.
    first = {rid: i for i, rid in reversed(list(enumerate(row_ids)))}
    order = sorted(first.values())
    return [row_ids[i] for i in order], X[order]
