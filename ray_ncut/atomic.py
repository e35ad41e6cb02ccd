"""Atomic file writes: a reader, or a crash, never sees a half-written file under its final name."""

from __future__ import annotations

import json
import os
import uuid


def write_atomic(path: str, write, mode: str = "wb") -> None:
    """``write(f)`` into a hidden temporary file beside ``path``, then rename it to ``path``:
    a reader (or a crash) never sees a half-written file under the final name. The hidden
    name (``.NAME.<pid>.<random>.tmp``) is skipped by Parquet readers and removed by the jobs' checks."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda f: json.dump(obj, f, indent=2, default=_json_default), mode="w")


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
