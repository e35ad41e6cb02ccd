"""Reading outputs the jobs committed on object storage (the import path ``docs/api.md`` documents).

The code is :mod:`ray_ncut.outputs.remote`; this module keeps its public names where users import them.
"""

from .outputs.remote import committed, readable

__all__ = ["committed", "readable"]
