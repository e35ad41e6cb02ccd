"""Readers of user data (Parquet, .npy) and built-in sets, as independent *read units*. No Ray.

A feature set is planned on the driver into a list of small, picklable read units
(a Parquet row group, a row range of a .npy file, a chunk of a synthetic set).
``read_unit`` turns one unit into a batch ``{"id", "features", "label"?}`` and can
run anywhere: in a Ray Data task, in a test, or in a plain loop. Planning reads
only metadata (Parquet footers, the .npy header), so it is cheap on any corpus,
and it validates the schema before any work starts.

Ids: taken from ``id_column`` when the input has one; otherwise derived from the
file and row position as the string ``"<file name>:<row>"`` (``"<row>"`` for a
single .npy or built-in set), so two runs over the same files give the same ids,
and adding files does not change the ids of the old ones.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass, field

import numpy as np

from ..outputs.marker import MARKER_FILE
from ..outputs.paths import filesystem, is_uri
from ..validation import check_finite as require_finite
from .builtin import builtin_chunks, parse_builtin, synthetic_chunk

__all__ = ["ColumnSpec", "ReadUnit", "plan_units", "feature_schema", "columns_for_model", "type_kind", "read_unit",
           "read_unit_ids", "hash_ids", "duplicate_hashes", "repeated_values", "unit_sample_mask", "DataError",
           "LABEL_LIKE", "INPUT_FORMATS"]

NPY_CHUNK_ROWS = 100_000

# Never taken as features without being named: a column called like ground truth would
# leak the answer into the clustering (case-insensitive).
LABEL_LIKE = frozenset({"label", "labels", "y", "target", "class"})

INPUT_FORMATS = "Parquet files (a file, a folder of them, or a glob), a .npy array, or builtin:NAME"


class DataError(ValueError):
    """Bad input data: the message names the problem, the value and where."""


@dataclass
class ColumnSpec:
    """Which columns are the features, the id and the ground truth."""

    features: str | None = None  # one list / fixed-size-list / tensor column
    feature_columns: tuple | None = None  # or scalar numeric columns
    id_column: str = "id"
    label_column: str | None = None
    # Set by :func:`columns_for_model` when labelling: the model whose recorded feature columns
    # these are (named in messages), and the type of each as it was at training.
    model: str | None = None
    expected_types: tuple | None = None

    @classmethod
    def from_flags(cls, features=None, feature_columns=None, id_column="id", label_column=None) -> "ColumnSpec":
        """From the command-line flags: ``feature_columns`` is the comma-separated string."""
        columns = tuple(c.strip() for c in feature_columns.split(",")) if feature_columns else None
        return cls(features, columns, id_column, label_column)


@dataclass
class ReadUnit:
    kind: str  # "parquet" | "npy" | "builtin"
    source: str  # file path / URI, or the builtin spec string
    start: int  # first row of the unit in its file (or data set)
    rows: int
    index: int = 0  # row group or chunk index
    columns: dict = field(default_factory=dict)  # resolved column names (parquet)
    id_prefix: str = ""


# --------------------------------------------------------------------------- planning


def _outside_outputs(root: str, paths: list[str]) -> tuple[list[str], list[str]]:
    """``(data files, skipped output folders)`` of a folder's recursive listing ``paths``: files in a
    hidden or ``_`` folder (a job's staging) or under a ray_ncut output inside ``root`` (one with the
    ownership marker: a model or labels written there) are outputs, not data."""
    outputs = sorted({os.path.dirname(p) for p in paths if os.path.basename(p) == MARKER_FILE} - {root})

    def is_data(p: str) -> bool:
        hidden = any(part[:1] in "._" for part in os.path.relpath(os.path.dirname(p), root).split(os.sep)
                     if part not in (".", ""))
        return p.endswith(".parquet") and not hidden and not any(p.startswith(o + "/") for o in outputs)

    return [p for p in paths if is_data(p)], [os.path.relpath(o, root) for o in outputs]


def _parquet_files(uri: str) -> tuple[object, list[str], list[str]]:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    skipped: list[str] = []
    if any(ch in path for ch in "*?["):
        if not isinstance(fs, pafs.LocalFileSystem):
            raise DataError(f"glob patterns are supported on local paths only: {uri}")
        files = sorted(globlib.glob(path))
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"no such file or directory: {uri}")
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(path, recursive=True)
            listed = sorted(i.path for i in fs.get_file_info(selector) if i.is_file)
            files, skipped = _outside_outputs(path.rstrip("/"), listed)
        else:
            files = [path]
    if not files:
        raise DataError(f"no Parquet files found at {uri}; ray_ncut reads {INPUT_FORMATS}")
    return fs, files, skipped


def _is_number(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def type_kind(type_name) -> str:
    """The kind of a column type (an Arrow or numpy type, or its name): ``integer``, ``floating``,
    ``boolean``, ``decimal``, or the name itself. Width changes (float32 -> float64) keep the kind;
    a change of kind means the values may be encoded differently."""
    s = str(type_name).lower()
    for prefix, kind in (("int", "integer"), ("uint", "integer"), ("float", "floating"), ("double", "floating"),
                         ("halffloat", "floating"), ("bool", "boolean"), ("decimal", "decimal")):
        if s.startswith(prefix):
            return kind
    return s


def _value_type(arrow_type):
    """The element type of a list / fixed-size-list / tensor column, else the type itself."""
    return getattr(arrow_type, "value_type", None) or getattr(arrow_type, "scalar_type", None) or arrow_type


def _resolve_parquet_columns(schema, cols: ColumnSpec, where: str) -> dict:
    names = schema.names

    def need(name, role):
        if name in names:
            return
        if role == "feature" and cols.model:
            raise DataError(f"feature column {name!r}, which {cols.model} was trained on, is missing from {where} "
                            f"(renamed or dropped?); its columns are {names}")
        raise DataError(f"{role} column {name!r} not found in {where}; columns are {names}")

    has_id = cols.id_column in names
    if cols.label_column:
        need(cols.label_column, "label")
    if cols.feature_columns:
        for c in cols.feature_columns:
            need(c, "feature")
        feats = list(cols.feature_columns)
    elif cols.features or "features" in names:
        feats = cols.features or "features"
        need(feats, "features")
    else:
        skip = {cols.id_column, cols.label_column}
        feats = [n for n in names if n not in skip and n.lower() not in LABEL_LIKE and _is_number(schema.field(n).type)]
        if not feats:
            raise DataError(f"no numeric feature columns in {where}; columns are {names}")
    if cols.label_column and cols.label_column in (feats if isinstance(feats, list) else [feats]):
        raise DataError(f"--label-column {cols.label_column!r} is also a feature column; ground truth is never a feature")
    if isinstance(feats, list):
        for c in feats:
            t = schema.field(c).type
            if not _is_number(t):
                raise DataError(f"feature column {c!r} in {where} has type {t}, not a number")
        types = [str(schema.field(c).type) for c in feats]
        positions = [names.index(c) for c in feats]
    else:
        types = [str(_value_type(schema.field(feats).type))]
        positions = [0]
    if cols.expected_types:
        for c, now, then in zip(feats if isinstance(feats, list) else [feats], types, cols.expected_types):
            if type_kind(now) != type_kind(then):
                raise DataError(f"feature column {c!r} in {where} has type {now}, but {cols.model} was trained on "
                                f"it as {then}; cast it back (a retyped column may hold other values)")
    return {"features": feats, "id": cols.id_column if has_id else None, "label": cols.label_column,
            "types": types, "reordered": positions != sorted(positions)}


def _check_same_columns(first: str, resolved: dict, path: str, schema, cols: ColumnSpec) -> None:
    """Every file of a folder must hold what the first one does: the features (same kinds), the id
    column if the first has one, the label column; with features found by type, no other numeric
    column (which would be a feature in one file and not another)."""
    names = schema.names
    feats = resolved["features"] if isinstance(resolved["features"], list) else [resolved["features"]]
    for role, name in [("feature", c) for c in feats] + [("id", resolved["id"]), ("label", resolved["label"])]:
        if name and name not in names:
            raise DataError(f"{path} has no {role} column {name!r}, which {first} has: every file read together "
                            f"needs the same columns; its columns are {names}")
    if not resolved["id"] and cols.id_column in names:
        raise DataError(f"{path} has an id column {cols.id_column!r}, which {first} lacks: ids would be mixed")
    here = _resolve_parquet_columns(schema, cols, path)
    for c, now, then in zip(feats, here["types"], resolved["types"]):
        if type_kind(now) != type_kind(then):
            raise DataError(f"feature column {c!r} has type {now} in {path} but {then} in {first}")
    if here["features"] != resolved["features"]:
        extra = [c for c in here["features"] if c not in feats]
        raise DataError(f"{path} has numeric column(s) {extra} that {first} lacks, so the files disagree on the "
                        "features: name them with --feature-columns")


def _plan_parquet(uri: str, cols: ColumnSpec) -> list[ReadUnit]:
    fs, files, skipped = _parquet_files(uri)
    units, resolved = [], None
    root = os.path.commonpath(files) if len(files) > 1 else os.path.dirname(files[0])
    for path in files:
        meta = _parquet_metadata(fs, path)
        if resolved is None:
            resolved = _resolve_parquet_columns(meta.schema.to_arrow_schema(), cols, path)
            resolved["skipped_outputs"] = skipped  # said by the job's features line
        else:
            _check_same_columns(files[0], resolved, path, meta.schema.to_arrow_schema(), cols)
        start = 0
        prefix = os.path.relpath(path, root) if root else path
        for rg in range(meta.num_row_groups):
            rows = meta.row_group(rg).num_rows
            units.append(ReadUnit("parquet", _uri_of(uri, path), start, rows, rg, resolved, prefix))
            start += rows
    return units


def _parquet_metadata(fs, path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(fs.open_input_file(path)).metadata
    except (pa.ArrowInvalid, OSError) as e:
        why = f" ({str(e).splitlines()[0]})" if path.endswith(".parquet") else ""
        hint = ("; convert it with pandas: pandas.read_csv(path).to_parquet(path[:-4] + '.parquet')"
                if path.lower().endswith(".csv") else "")
        raise DataError(f"{path} is not a Parquet file{why}; ray_ncut reads {INPUT_FORMATS}{hint}") from None


def _uri_of(uri: str, path: str) -> str:
    if is_uri(uri):
        return uri.split("://", 1)[0] + "://" + path
    return path


def _plan_npy(uri: str) -> list[ReadUnit]:
    if not os.path.isfile(uri):
        raise DataError(f"no such file: {uri}")
    arr = np.load(uri, mmap_mode="r")
    if arr.ndim != 2:
        raise DataError(f"{uri} holds an array of shape {arr.shape}; expected 2-D (rows, features)")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{uri} holds dtype {arr.dtype}; expected numbers")
    n = arr.shape[0]
    return [ReadUnit("npy", os.path.abspath(uri), s, min(NPY_CHUNK_ROWS, n - s)) for s in range(0, n, NPY_CHUNK_ROWS)]


def _plan_builtin(uri: str) -> list[ReadUnit]:
    # Every built-in set is served in chunks of known size: planning loads nothing.
    spec = parse_builtin(uri)
    size = spec.chunk_rows
    return [ReadUnit("builtin", str(spec), s, min(size, spec.n_rows - s), i) for i, s in enumerate(range(0, spec.n_rows, size))]


def plan_units(uri: str, cols: ColumnSpec | None = None) -> list[ReadUnit]:
    """Split the feature set ``uri`` into read units, checking that it exists and has the columns."""
    cols = cols or ColumnSpec()
    if uri.startswith("builtin:"):
        return _plan_builtin(uri)
    if uri.endswith(".npy"):
        return _plan_npy(uri)
    return _plan_parquet(uri, cols)


def feature_schema(units: list[ReadUnit], n_features: int) -> dict:
    """What a model records of its input's features (config.json's ``features``):
    ``{"columns": [names], "types": [...]}`` for scalar columns, ``{"column": name, "types": [element
    type]}`` for one vector column, ``{"columns": None}`` where features are positional (.npy, built-in
    sets, arrays); ``dim`` in every case."""
    c = units[0].columns if units and units[0].kind == "parquet" else None
    if c is None:
        return {"columns": None, "dim": n_features}
    if isinstance(c["features"], list):
        return {"columns": list(c["features"]), "types": c["types"], "dim": n_features}
    return {"column": c["features"], "types": c["types"], "dim": n_features}


def columns_for_model(cols: ColumnSpec, schema: dict | None, model: str) -> ColumnSpec:
    """The columns to label with a model whose training input had ``schema`` (:func:`feature_schema`):
    its feature columns **by name** (in its order, whatever the input's), checked against their
    training types. Explicit ``--feature-columns`` must name the same columns; an explicit ``--features``
    column is taken as given (the dimension is still checked). Positional models change nothing."""
    from dataclasses import replace

    if not schema or (schema.get("columns") is None and not schema.get("column")):
        return cols
    where = f"the model {model}"
    if schema.get("column"):  # one vector column
        if cols.features or cols.feature_columns:
            return cols
        return replace(cols, features=schema["column"], model=where, expected_types=tuple(schema["types"]))
    trained = list(schema["columns"])
    if cols.features:
        raise DataError(f"--features {cols.features}: {where} was trained on the scalar columns {trained}, not on "
                        "a vector column; leave --features out")
    if cols.feature_columns and set(cols.feature_columns) != set(trained):
        other = [c for c in cols.feature_columns if c not in trained] or [c for c in trained if c not in cols.feature_columns]
        raise DataError(f"--feature-columns should name the {len(trained)} columns {where} was trained on "
                        f"{trained}; {other[0]!r} is not among both")
    return replace(cols, features=None, feature_columns=tuple(trained), model=where,
                   expected_types=tuple(schema.get("types") or ()) or None)


# --------------------------------------------------------------------------- reading


def _features_from_table(table, feats, where: str) -> np.ndarray:
    if isinstance(feats, list):
        return np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in feats], 1).astype(np.float32)
    col = table.column(feats).combine_chunks()
    try:
        flat = col.flatten() if hasattr(col, "flatten") else None
    except Exception:  # noqa: BLE001 - not a list type
        flat = None
    if flat is None or len(col) == 0:
        values = np.asarray(col.to_pylist(), dtype=np.float32)
    else:
        values = flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)
    if values.ndim != 2:
        raise DataError(f"features column {feats!r} in {where} is not a vector per row")
    return values


def unit_sample_mask(seed: int, index: int, rows: int, rate: float) -> np.ndarray:
    """(rows,) bool: a Bernoulli sample of one read unit's rows, seeded by ``(seed, unit index)``,
    so that a sample drawn unit by unit does not depend on the order the units are read in."""
    return np.random.default_rng([seed, index]).random(rows) < rate


def read_unit(unit: ReadUnit, with_label: bool = True, check_finite: bool = True) -> dict:
    """One read unit as ``{"id": (n,), "features": (n, d) float32, "label": (n,)?}``.

    With ``check_finite`` a NaN or infinite feature raises :class:`DataError` naming
    the file, row and value; the streaming scan turns it off and reports instead.
    """
    if unit.kind == "builtin":
        spec = parse_builtin(unit.source)
        if spec.name in ("rings", "moons", "blobs"):
            X, y = synthetic_chunk(spec, unit.index)
        else:
            _, X, y = next(c for i, c in enumerate(builtin_chunks(spec)) if i == unit.index)
        out = {"id": np.arange(unit.start, unit.start + len(X), dtype=np.int64), "features": X}
        if with_label:
            out["label"] = y
        return out
    if unit.kind == "npy":
        X = np.asarray(np.load(unit.source, mmap_mode="r")[unit.start : unit.start + unit.rows], dtype=np.float32)
        if check_finite:
            require_finite(X, unit.source, unit.start, DataError)
        return {"id": np.arange(unit.start, unit.start + unit.rows, dtype=np.int64), "features": X}
    return _read_parquet_unit(unit, with_label, check_finite)


def read_unit_ids(unit: ReadUnit) -> np.ndarray:
    """(n,) the ids of one read unit, reading nothing else where the input has an id column."""
    if unit.kind == "parquet" and unit.columns["id"]:
        import pyarrow.parquet as pq

        fs, path = filesystem(unit.source)
        table = pq.ParquetFile(fs.open_input_file(path)).read_row_group(unit.index, columns=[unit.columns["id"]])
        return table.column(0).to_numpy(zero_copy_only=False)
    return read_unit(unit, with_label=False, check_finite=False)["id"]


def hash_ids(ids: np.ndarray) -> np.ndarray:
    """(n,) uint64 hashes of ids of any type: 8 bytes a row, for uniqueness checks."""
    import pandas as pd

    return pd.util.hash_array(np.asarray(ids))


def duplicate_hashes(hashes: list[np.ndarray]) -> bool:
    """Whether any hash repeats across the given arrays (a sort: np.unique takes 8 s on 10M)."""
    h = np.sort(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64)
    return bool((h[1:] == h[:-1]).any())


def repeated_values(ids: np.ndarray) -> list:
    """The ids that occur more than once (exact, for after a hash check found a repeat)."""
    values, counts = np.unique(np.asarray(ids), return_counts=True)
    return values[counts > 1].tolist()


def _read_parquet_unit(unit: ReadUnit, with_label: bool, check_finite: bool) -> dict:
    import pyarrow.parquet as pq

    fs, path = filesystem(unit.source)
    table = pq.ParquetFile(fs.open_input_file(path)).read_row_group(unit.index)
    c = unit.columns
    try:
        X = _features_from_table(table, c["features"], unit.source)
    except KeyError as e:  # the file changed since the job planned it
        raise DataError(f"{unit.source} no longer has the columns it was planned with: {e}") from None
    if check_finite:
        require_finite(X, unit.source, unit.start, DataError,
                       names=c["features"] if isinstance(c["features"], list) else None)
    if c["id"]:
        ids = table.column(c["id"]).to_numpy(zero_copy_only=False)
    else:
        ids = np.array([f"{unit.id_prefix}:{unit.start + i}" for i in range(len(X))], dtype=object)
    out = {"id": ids, "features": X}
    if with_label and c["label"]:
        out["label"] = table.column(c["label"]).to_numpy(zero_copy_only=False)
    return out
