"""Incremental labelling: which input files a labels output already covers. No Ray.

Every labels output carries ``manifest.json``: the model that labelled it (a fingerprint of its
weights and ids) and, per input file, its size and modification time, the part files its rows
went to, and their partial counts. A later run with ``--incremental`` reuses the parts of every
file whose size and modification time are unchanged (same model only), labels the new and
changed files, and publishes old and new parts as one complete output.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .data.readers import ReadUnit
from .outputs import absolute, readable
from .outputs.paths import filesystem

__all__ = ["MANIFEST_FILE", "Reuse", "model_fingerprint", "file_state", "plan_reuse", "build_manifest"]

MANIFEST_FILE = "manifest.json"


def model_fingerprint(model_dir: str, cluster_ids: list) -> str:
    """sha256 of the weights and the stable ids: the same fingerprint, the same label for a row."""
    h = hashlib.sha256()
    with open(os.path.join(readable(model_dir), "model.pt"), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps([int(i) for i in cluster_ids]).encode())
    return h.hexdigest()


def file_state(uri: str) -> dict:
    """``{"size", "mtime_ns"}`` of an input file (local path or URI)."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    mtime = info.mtime_ns if info.mtime_ns is not None else None
    return {"size": int(info.size), "mtime_ns": mtime}


def _files(units: list[ReadUnit]) -> dict[str, list[int]]:
    """Input file -> the indices of its units, in order."""
    files: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        files.setdefault(unit.source, []).append(i)
    return files


@dataclass
class Reuse:
    """What an incremental run takes from the previous output."""

    parts: dict = field(default_factory=dict)  # new unit index -> the previous output's part file name
    files: dict = field(default_factory=dict)  # reused file -> its manifest entry
    rows: int = 0  # rows in the reused parts
    dropped: int = 0  # rows the previous run skipped in those files (--drop-invalid)
    sizes: dict = field(default_factory=dict)  # stable id -> rows of the reused parts

    def labelled_units(self, n_units: int) -> list[int]:
        return [i for i in range(n_units) if i not in self.parts]


def plan_reuse(previous: dict | None, units: list[ReadUnit], fingerprint: str) -> Reuse:
    """The parts of ``previous`` (a manifest) that still hold for ``units`` under this model."""
    if any(u.kind == "builtin" for u in units):
        raise ValueError("--incremental needs input files: a builtin: data set has none")
    reuse = Reuse()
    if not previous or previous.get("model", {}).get("fingerprint") != fingerprint:
        return reuse
    for source, indices in _files(units).items():
        entry = previous.get("files", {}).get(source)
        if entry is None or len(entry["parts"]) != len(indices) or file_state(source) != entry["state"]:
            continue  # new or changed: labelled again
        reuse.files[source] = entry
        reuse.parts.update(zip(indices, entry["parts"]))
        reuse.rows += entry["rows"]
        reuse.dropped += entry.get("dropped", 0)
        for cid, n in entry["sizes"].items():
            reuse.sizes[cid] = reuse.sizes.get(cid, 0) + n
    return reuse


def build_manifest(units: list[ReadUnit], part_name, results: dict, reuse: Reuse, fingerprint: str,
                   model_dir: str, ids: np.ndarray) -> dict:
    """The manifest of an output: reused entries as they were, labelled files from their units'
    results (``results``: unit index -> UnitResult). ``part_name(i)`` names unit i's part file."""
    files = {}
    for source, indices in _files(units).items():
        if source in reuse.files:
            files[source] = reuse.files[source]
            continue
        done = [results[i] for i in indices]
        sizes = sum((r.sizes for r in done), np.zeros(len(ids), np.int64))
        files[source] = {
            "state": file_state(source) if units[indices[0]].kind != "builtin" else None,
            "parts": [part_name(i) for i in indices],
            "rows": int(sum(r.rows for r in done)),
            "dropped": int(sum(r.dropped for r in done)),
            "sizes": {str(int(c)): int(n) for c, n in zip(ids, sizes) if n},
        }
    return {"model": {"path": absolute(model_dir), "fingerprint": fingerprint}, "files": files}
