"""The marker a job writes into every output it owns (``_RAY_NCUT.json``), shared by local
folders (:mod:`ray_ncut.outputs.local`) and object-storage versions (:mod:`ray_ncut.outputs.remote`), and
the process-liveness check of a marker's owner. A leaf: imports nothing of the package but
its version.
"""

from __future__ import annotations

import json
import os
import socket
import time

from .._version import __version__

MARKER_FILE = "_RAY_NCUT.json"
WRITER = "ray_ncut"


class OutputError(ValueError):
    """An output path that a job must not write to, or not replace."""


class Interrupted(Exception):
    """A job stopped by Ctrl-C; the message says what was kept and how to go on."""


def files_under(path: str) -> list[str]:
    """Every file and symlink below ``path``, relative to it, sorted."""
    found = []
    for root, dirs, files in os.walk(path):
        rel = os.path.relpath(root, path)
        # a symlinked directory is listed as an entry, never followed
        entries = files + [d for d in dirs if os.path.islink(os.path.join(root, d))]
        found += [os.path.normpath(os.path.join(rel, name)) for name in entries]
    return sorted(found)


def read_marker(path: str) -> dict | None:
    try:
        with open(os.path.join(path, MARKER_FILE)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == WRITER else None


def preview(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell it from a
    later process that reuses its number; ``None`` where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    """The owner record of this process (host, pid, start time) that markers carry."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}


def owner_running(marker: dict) -> bool:
    """Whether the process a marker names as its owner may still run.

    Sealed markers have no running owner, and neither has this very process's. One written on
    another host is taken as running (it cannot be checked from here); one written on this
    host is running while its process (same pid, same start time) is.
    """
    owner = marker.get("owner")
    if not owner or marker.get("complete") or owner.get("pid") == os.getpid():
        return False
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    started = process_start(int(owner["pid"]))
    return started is None or owner.get("start") in (None, started)


def marker_document(kind: str, files: list[str], complete: bool, owner: dict | None) -> dict:
    """The content of a marker: who wrote the output, its kind, whether it is complete, its files
    and (while a run may still add to it) the owning process. Local folders and object-store
    versions carry the same document."""
    return {"written_by": WRITER, "kind": kind, "version": __version__, "complete": complete,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files, "owner": owner}
