"""What a path names: a local path or a URI (object storage, or any filesystem pyarrow opens). A leaf."""

from __future__ import annotations

import os

__all__ = ["is_uri", "absolute", "filesystem", "is_same_or_parent", "local_input_path"]


def is_uri(path) -> bool:
    """Whether ``path`` (a string or ``os.PathLike``) is a URI rather than a local path."""
    return "://" in (os.fspath(path) if path else "")


def absolute(path: str) -> str:
    """``path`` as recorded in outputs: a URI as it is, a local path made absolute."""
    return path if is_uri(path) else os.path.abspath(path)


def filesystem(uri: str):
    """``(pyarrow filesystem, path)`` for a local path or any URI pyarrow opens (s3://, gs://, ...)."""
    import pyarrow.fs as pafs  # pyarrow only where a store is opened: the marker and path rules need none

    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def is_same_or_parent(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def local_input_path(uri: str | None) -> str | None:
    """The local file or folder an input names (``None`` for built-ins and URIs); a glob gives the
    folder before its first wildcard."""
    if not uri or uri.startswith("builtin:") or is_uri(uri):
        return None
    if any(ch in uri for ch in "*?["):
        uri = os.path.dirname(uri[: min(uri.index(ch) for ch in "*?[" if ch in uri)]) or "."
    return uri
