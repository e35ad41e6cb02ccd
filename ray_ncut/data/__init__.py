"""Data sets the package makes or finds on the machine, and (later) readers of user data."""

from .builtin import BUILTIN_NAMES, load_builtin, parse_builtin

__all__ = ["BUILTIN_NAMES", "load_builtin", "parse_builtin"]
