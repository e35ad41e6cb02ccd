"""In-memory side-by-side comparison of NeuralCut with k-means: quality and time.

Used by ``jobs/compare.py`` (the README's first command) and the benchmarks.
Both labellings are scored on the *same* kNN graph (built on NeuralCut's scaled
features), so their normalized cuts are comparable.
"""

from __future__ import annotations

import time

import numpy as np

from .estimator import NeuralCut
from .knn import sparse_knn_graph
from .metrics import clustering_scores, contingency_partial, normalized_cut

__all__ = ["compare_with_kmeans", "format_table"]


def _score(name, labels, seconds, y, W) -> dict:
    row = {"method": name, "seconds": seconds, "ncut": normalized_cut(W, labels)}
    if y is not None:
        row.update({k: v for k, v in clustering_scores(contingency_partial(y, labels)).items() if k != "n"})
    return row


def compare_with_kmeans(X: np.ndarray, y: np.ndarray | None, n_clusters: int, seed: int = 0, **params) -> list[dict]:
    """Fit NeuralCut and scikit-learn KMeans on X (n, d); one scored row each."""
    from sklearn.cluster import KMeans

    est = NeuralCut(n_clusters=n_clusters, random_state=seed, **params)
    t0 = time.perf_counter()
    ours = est.fit_predict(X)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    km = KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(X)
    t_km = time.perf_counter() - t0

    W = sparse_knn_graph(est.scaler_.transform(X), est.graph_config_.n_neighbors)
    return [_score("ray_ncut NeuralCut", ours, t_ours, y, W), _score("scikit-learn KMeans", km, t_km, y, W)]


def format_table(rows: list[dict], columns=("method", "acc", "nmi", "ari", "ncut", "seconds")) -> str:
    """Plain-text table; missing values print as '-'."""
    cols = [c for c in columns if any(c in r for r in rows)]

    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, body)])
