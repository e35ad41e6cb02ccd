"""What a job owns, on a local disk or on object storage, behind one interface. No Ray.

A job opens its output once, :func:`open_output`, and from then on asks the object, never the
path, how to check, stage, write label files, publish and abort:

====================  ==============================================  ================================================
method                :class:`LocalOutput` (a folder)                 :class:`RemoteOutput` (``s3://``, any pyarrow URI)
====================  ==============================================  ================================================
``check``             path safety, ownership, ``--overwrite``          the same rules over the prefix's objects
``sibling(tag)``      a hidden folder beside the output               a local folder kept for the URI
``parts_dir``         ``staging/labels``, published with it           ``labels/`` of a new, uncommitted version
``publish(staging)``  renames (old output aside, new one in)          upload into the version, one PUT of the pointer
``abort``             nothing (the staging folder is the caller's)    delete the uncommitted version
``clean_stale``       dead runs' siblings; a half-swapped output back  dead runs' staging folders and versions
``read_json`` /       the published output's files                    the committed version's objects
``take_files``
====================  ==============================================  ================================================

Both carry the same ownership marker (:mod:`ray_ncut.outputs.marker`): a job deletes or replaces
only what it wrote itself. Staging folders are always local (:mod:`ray_ncut.outputs.local`'s
helpers: ``make_staging``, ``seal``, ``remove_ours``, ...).
"""

from __future__ import annotations

from .local import LocalOutput
from .marker import MARKER_FILE, Interrupted, OutputError
from .paths import absolute, is_uri
from .remote import RemoteOutput, committed, readable

__all__ = ["open_output", "Output", "LocalOutput", "RemoteOutput", "committed", "readable", "absolute", "is_uri",
           "MARKER_FILE", "OutputError", "Interrupted"]

Output = LocalOutput | RemoteOutput


def open_output(out: str, kind: str) -> Output:
    """The output at ``out`` (a local path or a URI) of ``kind`` ("model" or "labels")."""
    return RemoteOutput(out, kind) if is_uri(out) else LocalOutput(out, kind)
