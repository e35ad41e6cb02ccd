"""ray_ncut: neural normalized-cut clustering of large feature sets, on Ray.

The maths (affinity, losses, metrics) and the in-memory estimator import no Ray;
everything Ray-specific lives in :mod:`ray_ncut.ray`.
"""

__version__ = "0.1.0"

from . import affinity, losses, metrics  # noqa: E402
from .estimator import NeuralCut  # noqa: E402

__all__ = ["NeuralCut", "affinity", "losses", "metrics", "__version__"]
