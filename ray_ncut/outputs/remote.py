"""Outputs on object storage (``s3://``, ``gs://``, any URI pyarrow opens): a versioned prefix and
a committed pointer. No Ray.

An object store has no rename, so the local publish (stage beside the output, rename it in)
does not carry over. An output URI ``P`` is laid out instead as::

    P/_RAY_NCUT.json     the pointer: kind, the committed version, every file of it (relative to P)
    P/v-<time>-<id>/     the committed output: model.pt, config.json, ... or labels/part-*.parquet, ...
    P/v-<time>-<id>/     a run in progress (its own _RAY_NCUT.json names its owner), or a dead run's remains

A run writes everything under a new version prefix, then **commits** it with one PUT of the
pointer (a single-object PUT is atomic and, on S3, read-after-write consistent), then deletes
the version the pointer named before. **Readers trust only the pointer**: read it, then read
``P/<committed>/`` (:func:`committed`, :func:`readable`). A run killed before its commit leaves
a version the pointer never names: invisible to readers, and removed by the next run of the
same output once its owner is known to be dead. The previous output stays readable until the
new pointer is written.

Ownership is the local rule (:mod:`ray_ncut.outputs.local`): ``--overwrite`` replaces ``P`` only if
every object under it is the pointer, a file it lists, or inside a version prefix carrying
ray_ncut's marker of the same kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid

from .local import clean_stale_folders
from .marker import (
    MARKER_FILE,
    WRITER,
    OutputError,
    files_under,
    marker_document,
    owner_running,
    preview,
    this_process,
)
from .paths import filesystem, is_same_or_parent, is_uri

__all__ = ["RemoteOutput", "committed", "readable"]


def _fs(uri: str):
    fs, root = filesystem(uri.rstrip("/"))
    return fs, root.rstrip("/")


def _get(fs, path: str) -> bytes | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def _put(fs, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as f:  # one PUT: a reader sees the old object or the new one
        f.write(data)


def _files(fs, root: str) -> list[str]:
    """Every object below ``root``, relative to it, sorted."""
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File)


def _json(fs, path: str):
    """The JSON document at ``path``, or ``None`` where there is none (or it does not parse)."""
    data = _get(fs, path)
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _versions(files: list[str]) -> set[str]:
    """The version prefixes (first path component) among an output's objects."""
    return {rel.split("/", 1)[0] for rel in files if "/" in rel}


def _marker(fs, folder: str, kind: str | None = None) -> dict | None:
    """The ray_ncut marker (or pointer) in ``folder``, of ``kind`` if given, else ``None``."""

    marker = _json(fs, f"{folder}/{MARKER_FILE}")
    if not isinstance(marker, dict) or marker.get("written_by") != WRITER:
        return None
    return marker if kind is None or marker.get("kind") == kind else None


def _pointer(fs, root: str, kind: str | None = None) -> dict | None:
    pointer = _marker(fs, root, kind)
    return pointer if pointer and pointer.get("committed") else None


def committed(uri: str) -> str | None:
    """The URI of the committed version of the output ``uri``, or ``None`` where nothing is committed."""
    fs, root = _fs(uri)
    pointer = _pointer(fs, root)
    return f"{uri.rstrip('/')}/{pointer['committed']}" if pointer else None


def readable(path: str) -> str:
    """A local folder holding the output ``path``: ``path`` itself when local, else a copy of its
    committed version, downloaded once per version into the temporary directory and reused.
    Meant for model directories (small); read labels in place, under :func:`committed`."""
    import pyarrow.fs as pafs

    if not is_uri(path):
        return path
    fs, root = _fs(path)
    pointer = _pointer(fs, root)
    if pointer is None:
        raise ValueError(f"{path} holds no committed ray_ncut output (no readable _RAY_NCUT.json pointer)")
    version = pointer["committed"]
    cache = os.path.join(_local_root("outputs", path), version)
    if not os.path.isdir(cache):
        tmp = f"{cache}.{uuid.uuid4().hex[:8]}.tmp"
        for rel in pointer["files"]:
            if not rel.startswith(version + "/"):
                continue
            local = os.path.join(tmp, rel[len(version) + 1 :])
            os.makedirs(os.path.dirname(local), exist_ok=True)
            pafs.copy_files(f"{root}/{rel}", local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        try:
            os.rename(tmp, cache)
        except OSError:  # a concurrent reader put the same version there first
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _local_root(what: str, uri: str) -> str:
    """A per-user local folder for ``uri`` (downloads, staging), the same for every run on this machine."""
    folder = os.path.join(tempfile.gettempdir(), f"ray_ncut-{os.getuid()}", what,
                          hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16])
    os.makedirs(folder, exist_ok=True)
    return folder


class RemoteOutput:
    """One output prefix on object storage: check it, write a version, commit it.

    The same methods as :class:`ray_ncut.outputs.local.LocalOutput`. The job stages in a local
    folder (:meth:`sibling`); ``begin()`` creates a version prefix (its marker names this process)
    that the label files go straight into (:meth:`parts_dir`); :meth:`publish` uploads the staging
    folder's files into the version and moves the pointer; :meth:`abort` deletes the version.
    """

    def __init__(self, uri: str, kind: str):
        self.uri, self.kind = uri.rstrip("/"), kind
        self.fs, self.root = _fs(self.uri)
        self.version: str | None = None

    @property
    def path(self) -> str:
        return self.uri

    @property
    def version_uri(self) -> str:
        return f"{self.uri}/{self.version}"

    def describe(self) -> str:
        """How a summary names the output: with where its readers start."""
        return f"{self.uri} (committed; readers follow {self.uri}/{MARKER_FILE})"

    def exists(self) -> bool:
        return _pointer(self.fs, self.root, self.kind) is not None

    def sibling(self, tag: str) -> str:
        """A local staging folder for this output, under a folder kept for its URI (so that
        ``--resume`` finds it again)."""
        return os.path.join(_local_root("staging", self.uri), f".{self.uri.rsplit('/', 1)[-1]}.{tag}")

    def parts_dir(self, staging: str, name: str) -> str:
        """Where the label files go: straight into a new, uncommitted version (invisible to readers)
        that every node can write to."""
        return f"{self.begin()}/{name}"

    def _committed_path(self) -> str | None:
        """The store path of the committed version (on this output's filesystem), or ``None``."""
        pointer = _pointer(self.fs, self.root)
        return f"{self.root}/{pointer['committed']}" if pointer else None

    def read_json(self, name: str) -> dict | None:
        """The committed version's JSON file ``name``, or ``None`` where there is none."""
        version = self._committed_path()
        return _json(self.fs, f"{version}/{name}") if version else None

    def take_files(self, names: dict[str, str]) -> None:
        """Copy the committed version's files (``{relative name: destination URI}`` under this
        output, such as a new version's label folder), server-side."""
        version = self._committed_path() if names else None
        for rel, dst in names.items():
            self.fs.copy_file(f"{version}/{rel}", self._store_path(dst))

    def _store_path(self, uri: str) -> str:
        """``uri`` (under this output) as a path on this output's filesystem."""
        if not uri.startswith(self.uri + "/"):
            raise ValueError(f"{uri!r} is not under the output {self.uri!r}")
        return self.root + uri[len(self.uri):]

    # ------------------------------------------------------------------ ownership

    def _foreign(self) -> list[str] | None:
        """Objects under the prefix ray_ncut did not write (the pointer, the files it lists and every
        version carrying this kind's marker are ours), or ``None`` when a pointer of another kind
        says none of it is ours."""

        pointer = _pointer(self.fs, self.root)
        if pointer is not None and pointer.get("kind") != self.kind:
            return None
        ours = set((pointer or {}).get("files", [])) | {MARKER_FILE}
        files = _files(self.fs, self.root)
        ours |= {v for v in _versions(files) if self._version_marker(v) is not None}  # a run's version, whole
        return [rel for rel in files if rel not in ours and rel.split("/", 1)[0] not in ours]

    def _version_marker(self, version: str) -> dict | None:
        return _marker(self.fs, f"{self.root}/{version}", self.kind)

    def check(self, overwrite: bool, inputs: tuple = ()) -> str:
        """The remote form of :meth:`ray_ncut.outputs.local.LocalOutput.check`; returns the URI.
        Changes nothing."""

        if "/" not in self.root:
            raise OutputError(f"--out {self.uri} is a whole bucket; choose a folder inside it")
        for uri in inputs:
            if is_uri(uri) and (is_same_or_parent(self.uri, uri.rstrip("/")) or is_same_or_parent(uri.rstrip("/"), self.uri)):
                raise OutputError(f"--out {self.uri} overlaps the input {uri}; choose a prefix outside it")
        foreign = self._foreign()
        if foreign is None:
            raise OutputError(f"--out {self.uri} is not replaceable: it holds a ray_ncut output of another kind; "
                              "choose a new prefix (nothing was changed)")
        if foreign:
            raise OutputError(f"--out {self.uri} is not replaceable: it holds {len(foreign)} "
                              f"object{'' if len(foreign) == 1 else 's'} not written by ray_ncut ({preview(foreign)}); "
                              "choose a new prefix (nothing was changed)")
        if self.exists() and not overwrite:
            raise OutputError(f"--out {self.uri} already exists; pass --overwrite to replace it "
                              "once the new output is complete")
        return self.uri

    # ------------------------------------------------------------------ writing

    def begin(self) -> str:
        """Start a new version (removing dead runs' versions first); returns its URI."""

        self._clean_stale_versions()
        self.version = f"v-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self._write_version_marker(complete=False, files=[], owner=this_process())
        return self.version_uri

    def _write_version_marker(self, complete: bool, files: list[str], owner: dict | None) -> None:

        marker = marker_document(self.kind, files, complete, owner)
        _put(self.fs, f"{self.root}/{self.version}/{MARKER_FILE}", json.dumps(marker, indent=2).encode())

    def commit(self, local: str) -> None:
        """Upload the files of the local folder ``local`` into the version, then move the pointer to
        it (the commit) and delete the version it named before."""
        import pyarrow.fs as pafs


        for rel in files_under(local):
            if os.path.basename(rel) != MARKER_FILE:
                pafs.copy_files(os.path.join(local, rel), f"{self.root}/{self.version}/{rel}",
                                source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)
        files = [rel for rel in _files(self.fs, f"{self.root}/{self.version}") if rel != MARKER_FILE]
        foreign = self._foreign()
        if foreign:  # something was put there while the job ran: it is never deleted
            raise OutputError(f"--out {self.uri} changed while the job ran: it holds {len(foreign)} object(s) "
                              f"not written by ray_ncut ({preview(foreign)}); nothing was committed")
        before = _pointer(self.fs, self.root, self.kind)
        pointer = {**marker_document(self.kind, [f"{self.version}/{rel}" for rel in [*files, MARKER_FILE]], True, None),
                   "committed": self.version}
        _put(self.fs, f"{self.root}/{MARKER_FILE}", json.dumps(pointer, indent=2).encode())  # the commit
        self._write_version_marker(complete=True, files=files, owner=None)
        if before and before["committed"] != self.version:
            self.fs.delete_dir(f"{self.root}/{before['committed']}")

    def publish(self, staging: str) -> None:
        """Upload the sealed local ``staging`` folder into this run's version (begun here unless
        :meth:`parts_dir` began it), commit it, then remove the local folder."""
        if self.version is None:
            self.begin()
        try:
            self.commit(staging)
        except BaseException:
            self.abort()
            raise
        shutil.rmtree(staging)

    def abort(self) -> None:
        """Delete this run's version (never the committed one)."""
        if self.version is None:
            return
        pointer = _pointer(self.fs, self.root, self.kind)
        if pointer is None or pointer["committed"] != self.version:
            self.fs.delete_dir(f"{self.root}/{self.version}")
        self.version = None

    def clean_stale(self, patterns: tuple = ("staging-*", "old-*")) -> list[str]:
        """Remove dead runs' local staging folders and their versions; returns what was removed."""
        removed = [p for pattern in patterns for p in clean_stale_folders(self.sibling(pattern), self.kind)]
        return removed + self._clean_stale_versions()

    def _clean_stale_versions(self) -> list[str]:
        """Delete the versions of dead runs (never the committed one, never one whose owner may run)."""

        pointer = _pointer(self.fs, self.root, self.kind)
        current = pointer["committed"] if pointer else None
        removed = []
        for version in sorted(_versions(_files(self.fs, self.root))):
            marker = self._version_marker(version)
            if version == current or marker is None or marker.get("complete") or owner_running(marker):
                continue
            self.fs.delete_dir(f"{self.root}/{version}")
            removed.append(version)
        return removed
