"""ray_ncut: neural normalized-cut clustering of large feature sets, on Ray.

The maths (affinity, losses, metrics) and the in-memory estimator import no Ray;
everything Ray-specific lives in :mod:`ray_ncut.ray`.

The names below are imported on first use: a Ray Data read task that only needs
``ray_ncut.data`` then starts without importing torch and scikit-learn (~2 s a
worker process on 2 cores).
"""

import importlib
import os

# Sleeping, not spinning, OpenMP waits: read once when torch loads OpenMP, so set before anything
# imports torch (a value of the user's is kept). Why: ray_ncut/threads.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402 - after the environment default above

__all__ = ["NeuralCut", "affinity", "losses", "metrics", "__version__"]

_MODULES = ("affinity", "losses", "metrics")


def __getattr__(name):
    if name == "NeuralCut":
        from .estimator import NeuralCut

        return NeuralCut
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ray_ncut' has no attribute {name!r}")
