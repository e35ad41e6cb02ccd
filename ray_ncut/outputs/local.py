"""An output folder on a local (or mounted) filesystem: ownership, path checks, staging and atomic publish.

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

Publishing (:meth:`LocalOutput.publish`) swaps a complete, sealed staging directory in with renames
inside one parent directory: a fresh output is one atomic rename; an existing one is
renamed aside, the new one renamed in, then the old one deleted. A crash at any point
leaves a complete output (old or new) on disk, never a partial one.

Layout beside an output ``PARENT/NAME``::

    PARENT/NAME/                  the published output (marker inside)
    PARENT/.NAME.staging-<run>/   a labelling run in progress (removed when it fails)
    PARENT/.NAME.training/        a training run in progress (kept when interrupted: --resume)
    PARENT/.NAME.old-<run>/       the previous output, for the instant of the swap

An output on object storage is a :class:`ray_ncut.outputs.remote.RemoteOutput` (a version prefix
and a committed pointer, the same ownership rule); its staging folders are local too, under a
folder kept for that URI. The staging helpers here serve both.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
import uuid

from ..atomic import write_json_atomic
from .marker import (
    MARKER_FILE,
    OutputError,
    files_under,
    marker_document,
    owner_running,
    preview,
    read_marker,
    this_process,
)
from .paths import is_same_or_parent, local_input_path

__all__ = ["LocalOutput", "make_staging", "claim_staging", "seal", "remove_ours", "running_owner", "is_marked",
           "is_ours", "is_complete", "record_added_file", "clean_stale_folders"]


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


def clean_stale_folders(pattern: str, kind: str) -> list[str]:
    """Remove the folders matching the glob ``pattern`` that carry this kind's marker and whose owning
    process no longer runs (a concurrent run's folder is left alone); returns them."""
    removed = []
    for stale in glob.glob(pattern):
        if running_owner(stale) is None and remove_ours(stale, kind):
            removed.append(stale)
    return removed


# --------------------------------------------------------------------------- the output


class LocalOutput:
    """A job's output folder ``path`` of one ``kind`` ("model" or "labels") on a local filesystem.

    The same methods as :class:`ray_ncut.outputs.remote.RemoteOutput`, so a job never asks which
    one it holds: :meth:`check` before any work, :meth:`sibling` for its staging folder,
    :meth:`parts_dir` for the label files, :meth:`publish` the sealed staging folder, :meth:`abort`.
    """

    def __init__(self, out: str, kind: str):
        self.path, self.kind = _resolve(out), kind

    def describe(self) -> str:
        """How a summary names the output."""
        return self.path

    def exists(self) -> bool:
        """Whether a published output is there."""
        return os.path.isdir(self.path)

    def check(self, overwrite: bool, inputs: tuple = ()) -> str:
        """Validate the output path before any work; returns it absolute. Changes nothing.

        Refused whatever the flags: ``/``, the home directory, the working directory, an
        input, any parent of these, and any path inside an input folder. An existing
        non-empty output is refused without ``overwrite``, and with it unless it is a
        ray_ncut output of this kind holding only files the job wrote.
        """
        target, kind = self.path, self.kind
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

    def sibling(self, tag: str) -> str:
        """A hidden folder beside the output (same filesystem, so renames between them are atomic)."""
        parent, name = os.path.split(self.path)
        return os.path.join(parent, f".{name}.{tag}")

    def parts_dir(self, staging: str, name: str) -> str:
        """Where the label files go: a folder ``name`` in the staging folder, published with it."""
        folder = os.path.join(staging, name)
        os.makedirs(folder)
        return folder

    def read_json(self, name: str) -> dict | None:
        """The published output's JSON file ``name``, or ``None`` where there is none (or it does not parse)."""
        try:
            with open(os.path.join(self.path, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def take_files(self, names: dict[str, str]) -> None:
        """Put the published output's files (``{relative name: destination path}``) at their
        destinations: hard links, or copies across filesystems."""
        for rel, dst in names.items():
            try:
                os.link(os.path.join(self.path, rel), dst)
            except OSError:
                shutil.copy2(os.path.join(self.path, rel), dst)

    def publish(self, staging: str) -> None:
        """Swap the sealed ``staging`` folder in as the output.

        The output is checked once more just before the swap (a file a user put there while the
        job ran is never deleted): it must be absent, empty, or a ray_ncut output of this kind
        holding only its own files. A crash at any point leaves the old output or the new one.
        """
        out, kind = self.path, self.kind
        if not is_complete(staging, kind):
            raise RuntimeError(f"{staging} is not a complete {kind} output; not publishing")
        old = None
        if os.path.isdir(out) and os.listdir(out):
            if not is_ours(out, kind):
                raise OutputError(f"--out {out} changed while the job ran: {_describe_foreign(out, kind)}; "
                                  f"the new output is kept at {staging}")
            old = self.sibling(f"old-{uuid.uuid4().hex[:8]}")
            os.rename(out, old)
        elif os.path.isdir(out):
            os.rmdir(out)  # an empty folder: renaming onto it would work too, but say what we mean
        os.rename(staging, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Nothing to undo: until :meth:`publish` the job wrote only into its staging folder."""

    def clean_stale(self, patterns: tuple = ("staging-*", "old-*")) -> list[str]:
        """Remove leftovers of dead runs beside the output that carry our marker; returns them.

        A run that died between the two renames of :meth:`publish` left no output and the
        previous one at ``.NAME.old-*``: that one is first renamed back into place.
        """
        if not os.path.lexists(self.path):
            olds = [p for p in glob.glob(self.sibling("old-*")) if is_complete(p, self.kind)]
            if olds:
                os.rename(max(olds, key=os.path.getmtime), self.path)
        return [p for pattern in patterns for p in clean_stale_folders(self.sibling(pattern), self.kind)]
