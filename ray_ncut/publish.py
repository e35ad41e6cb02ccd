"""Outputs a job owns: ownership markers, output-path checks, staging and atomic publish. No Ray.

The rule this module enforces: **a job deletes or replaces only what it wrote itself.**

Every output directory a job creates (a model directory, a labels directory) and every
staging directory it works in carries a marker file, :data:`MARKER_FILE`, a small JSON
document naming its kind and listing every file the job wrote (paths relative to the
directory). ``--overwrite`` may then replace a directory only if

- it carries the marker, of the same kind, and
- every file in it is listed in the marker (nothing of unknown origin was added).

Anything else is refused with one line naming the path and what is in it. Some paths are
refused whatever the flags: ``/``, the home directory, the working directory, the inputs,
and any parent of these (and any path inside an input directory, which the next read of
that input would pick up).

Publishing (:func:`publish`) swaps a complete, sealed staging directory in with renames
inside one parent directory: a fresh output is one atomic rename; an existing one is
renamed aside, the new one renamed in, then the old one deleted. A crash at any point
leaves a complete output (old or new) on disk, never a partial one.

Layout beside an output ``PARENT/NAME``::

    PARENT/NAME/                  the published output (marker inside)
    PARENT/.NAME.staging-<run>/   a labelling run in progress (removed when it fails)
    PARENT/.NAME.training/        a training run in progress (kept when interrupted: --resume)
    PARENT/.NAME.old-<run>/       the previous output, for the instant of the swap

An output on object storage (a URI) is checked and published by :mod:`ray_ncut.storage` (a
version prefix and a committed pointer, the same ownership rule); its staging folders are
local, under a folder kept for that URI.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
import uuid

from .atomic import write_atomic, write_json_atomic
from .marker import (
    MARKER_FILE,
    Interrupted,
    OutputError,
    files_under,
    is_same_or_parent,
    marker_document,
    owner_running,
    preview,
    read_marker,
    this_process,
)
from .storage import RemoteOutput, is_uri, local_staging_parent

__all__ = [
    "MARKER_FILE", "OutputError", "Interrupted", "sibling", "check_out", "make_staging", "seal", "is_ours",
    "publish", "remove_ours", "clean_stale_siblings", "write_json_atomic", "is_complete", "is_marked", "local_input_path",
    "running_owner", "owner_running", "claim_staging", "write_atomic", "record_added_file", "output_exists",
    "marker_document",
]

# --------------------------------------------------------------------------- small helpers


def sibling(out: str, tag: str) -> str:
    """A hidden folder beside ``out`` (same filesystem, so renames between them are atomic); for an
    output on object storage, in a local folder kept for that URI (:mod:`ray_ncut.storage`)."""
    if is_uri(out):
        return os.path.join(local_staging_parent(out), f".{out.rstrip('/').rsplit('/', 1)[-1]}.{tag}")
    parent, name = os.path.split(os.path.abspath(out))
    return os.path.join(parent, f".{name}.{tag}")


def output_exists(out: str, kind: str) -> bool:
    """Whether a published output is at ``out`` (a local folder, or a committed remote prefix)."""
    return RemoteOutput(out, kind).exists() if is_uri(out) else os.path.isdir(out)


# --------------------------------------------------------------------------- ownership


def foreign_files(path: str, kind: str) -> list[str] | None:
    """Files in ``path`` that the job did not write, or ``None`` when ``path`` carries no
    marker of this ``kind`` (then none of it is the job's)."""
    marker = read_marker(path)
    if marker is None or marker.get("kind") != kind:
        return None
    ours = set(marker.get("files", [])) | {MARKER_FILE}
    return [f for f in files_under(path) if f not in ours]


def is_marked(path: str, kind: str) -> bool:
    """``path`` carries this kind's marker (a staging folder still filling up does)."""
    marker = read_marker(path)
    return marker is not None and marker.get("kind") == kind


def is_ours(path: str, kind: str) -> bool:
    """``path`` carries this kind's marker and holds nothing but the files it lists."""
    return foreign_files(path, kind) == []


def _describe_foreign(path: str, kind: str) -> str:
    foreign = foreign_files(path, kind)
    if foreign is None:
        marker = read_marker(path)
        entries = sorted(os.listdir(path))
        if marker is not None:
            return f"it holds a ray_ncut {marker.get('kind')} output, not a {kind} output"
        noun = "entry" if len(entries) == 1 else "entries"
        return f"it holds {len(entries)} {noun} not written by ray_ncut ({preview(entries)})"
    return f"it also holds {len(foreign)} {'file' if len(foreign) == 1 else 'files'} ray_ncut did not write ({preview(foreign)})"


def _resolve(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def local_input_path(uri: str | None) -> str | None:
    """The local file or folder an input URI names (``None`` for built-ins and URIs)."""
    if not uri or uri.startswith("builtin:") or "://" in uri:
        return None
    if any(ch in uri for ch in "*?["):  # a glob: the folder before its first wildcard
        uri = os.path.dirname(uri[: min(uri.index(ch) for ch in "*?[" if ch in uri)]) or "."
    return uri


def check_out(out: str, kind: str, overwrite: bool, inputs: tuple = ()) -> str:
    """Validate an output path before any work; returns it absolute. Changes nothing.

    Refused whatever the flags: ``/``, the home directory, the working directory, an
    input, any parent of these, and any path inside an input folder. An existing
    non-empty ``out`` is refused without ``overwrite``, and with it unless it is a
    ray_ncut output of this ``kind`` holding only files the job wrote.
    """
    if is_uri(out):
        return RemoteOutput(out, kind).check(overwrite, inputs)
    target = _resolve(out)
    protected = {"/": "the root directory", _resolve("~"): "your home directory",
                 _resolve(os.getcwd()): "the working directory"}
    for path, what in protected.items():
        if is_same_or_parent(target, path):
            raise OutputError(f"--out {target} is {'' if target == path else 'a parent of '}{what}; "
                              "choose a new folder for the output")
    for uri in inputs:
        path = local_input_path(uri)
        if path is None:
            continue
        path = _resolve(path)
        if is_same_or_parent(target, path):
            raise OutputError(f"--out {target} is {'the input' if target == path else 'a parent of the input'} "
                              f"{path}; choose a new folder for the output")
        if os.path.isdir(path) and is_same_or_parent(path, target):
            raise OutputError(f"--out {target} is inside the input folder {path}, whose next read would "
                              "pick up the output; choose a folder outside it")
    if os.path.lexists(target):
        if not os.path.isdir(target) or os.path.islink(target):
            raise OutputError(f"--out {target} exists and is not a folder; choose a new folder for the output")
        if os.listdir(target):
            if not is_ours(target, kind):
                raise OutputError(f"--out {target} is not replaceable: {_describe_foreign(target, kind)}; "
                                  "choose a new folder (nothing was changed)")
            if not overwrite:
                raise OutputError(f"--out {target} already exists; pass --overwrite to replace it "
                                  "once the new output is complete")
    return target


# --------------------------------------------------------------------------- staging and publish


def running_owner(path: str) -> dict | None:
    """The owner recorded in a staging folder's marker if that process may still run, else ``None``."""
    marker = read_marker(path) or {}
    return marker.get("owner") if owner_running(marker) else None


def make_staging(path: str, kind: str) -> str:
    """Create a staging folder carrying an (empty) marker naming this process as its owner,
    so that it is known to be ours and, while this process runs, in use."""
    os.makedirs(path)
    _write_marker(path, kind, files=[], complete=False)
    return path


def claim_staging(path: str, kind: str) -> None:
    """Take over a dead run's staging folder (``--resume``): its marker now names this process."""
    _write_marker(path, kind, files=(read_marker(path) or {}).get("files", []), complete=False)


def _write_marker(path: str, kind: str, files: list[str], complete: bool) -> None:
    write_json_atomic(os.path.join(path, MARKER_FILE), marker_document(kind, files, complete, this_process()))


def seal(staging: str, kind: str) -> None:
    """Mark a staging folder complete: its marker now lists every file in it."""
    files = [f for f in files_under(staging) if f != MARKER_FILE]
    _write_marker(staging, kind, files, complete=True)


def record_added_file(path: str, name: str) -> None:
    """List ``name`` in the marker of the published output ``path`` (a file ray_ncut added later,
    such as a re-rendered report.html), so that ``--overwrite`` still sees nothing foreign.
    A folder without a marker is left as it is."""
    marker = read_marker(path)
    if marker is not None and name not in marker.get("files", []):
        _write_marker(path, marker["kind"], sorted([*marker.get("files", []), name]), marker.get("complete", False))


def is_complete(path: str, kind: str) -> bool:
    marker = read_marker(path)
    return bool(marker and marker.get("kind") == kind and marker.get("complete"))


def remove_ours(path: str, kind: str, settle_seconds: float = 0.0) -> bool:
    """Delete ``path`` if it carries this kind's marker; returns whether it did.

    ``settle_seconds``: keep trying that long while the folder is still there (a writer
    that was being stopped, such as a labelling actor, may add a file during the first pass).
    """
    if not is_marked(path, kind):
        return False
    deadline = time.monotonic() + settle_seconds
    shutil.rmtree(path, ignore_errors=True)
    while os.path.lexists(path) and time.monotonic() < deadline:
        time.sleep(0.2)
        shutil.rmtree(path, ignore_errors=True)
    return True


def publish(staging: str, out: str, kind: str) -> None:
    """Swap the sealed ``staging`` folder in as ``out``.

    ``out`` is checked once more just before the swap (a file a user put there while the
    job ran is never deleted): it must be absent, empty, or a ray_ncut ``kind`` output
    holding only its own files.
    """
    if not is_complete(staging, kind):
        raise RuntimeError(f"{staging} is not a complete {kind} output; not publishing")
    if is_uri(out):  # upload as a new version, commit it, then drop the local copy
        RemoteOutput(out, kind).publish(staging)
        shutil.rmtree(staging)
        return
    old = None
    if os.path.isdir(out) and os.listdir(out):
        if not is_ours(out, kind):
            raise OutputError(f"--out {out} changed while the job ran: {_describe_foreign(out, kind)}; "
                              f"the new output is kept at {staging}")
        old = sibling(out, f"old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
    elif os.path.isdir(out):
        os.rmdir(out)  # an empty folder: renaming onto it would work too, but say what we mean
    os.rename(staging, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale_siblings(out: str, kind: str, patterns: tuple = ("staging-*", "old-*")) -> list[str]:
    """Remove leftovers of dead runs beside ``out`` that carry our marker; returns them.

    A folder whose owning process still runs (:func:`running_owner`: a concurrent run of
    the same output) is left alone. A run that died between the two renames of
    :func:`publish` left no ``out`` and the previous output at ``.NAME.old-*``: that one
    is first renamed back into place.
    """
    if not is_uri(out) and not os.path.lexists(out):
        olds = [p for p in glob.glob(sibling(out, "old-*")) if is_complete(p, kind)]
        if olds:
            os.rename(max(olds, key=os.path.getmtime), out)
    removed = []
    for pattern in patterns:
        for stale in glob.glob(sibling(out, pattern)):
            if running_owner(stale) is None and remove_ours(stale, kind):
                removed.append(stale)
    return removed
