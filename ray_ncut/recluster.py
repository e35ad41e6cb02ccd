"""Reclustering a grown data set: compare the new model with the previous one, carry the ids. No Ray.

The previous model directory holds ``reference.npy``, a uniform sample of the rows it was
trained on. Both models label those rows; :func:`ray_ncut.stable_ids.match_clusters` gives the
new model's clusters the previous ids (new clusters get ids never used before), and the report
says how many of those old rows changed cluster and how the normalized cut of the grown data's
sample moved from the previous model's partition to the new one's.
"""

from __future__ import annotations

import os

import numpy as np

from .drift import fit_state
from .knn import knn_cut
from .model import REFERENCE_FILE, ClusterModel
from .outputs import readable
from .stable_ids import IdMatch, churn, match_clusters

__all__ = ["REFERENCE_ROWS", "reference_sample", "read_reference", "carry_ids", "fit_of", "describe"]

REFERENCE_ROWS = 2000  # rows kept with a model for the next recluster: 8 KB a feature
CUT_ROWS = 20_000  # rows of the grown data's sample on which the two partitions' cuts are compared


def reference_sample(X: np.ndarray, seed: int, rows: int = REFERENCE_ROWS) -> np.ndarray:
    """A uniform sample (at most ``rows``) of the raw training rows X (m, d), in their order."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:rows])
    return np.ascontiguousarray(X[keep], dtype=np.float32)


def read_reference(model_dir: str) -> np.ndarray | None:
    path = os.path.join(readable(model_dir), REFERENCE_FILE)
    return np.load(path) if os.path.isfile(path) else None


def fit_of(model: ClusterModel, X: np.ndarray, n_neighbors: int = 10) -> dict:
    """The model's fit to raw rows X (n, d) (:func:`ray_ncut.drift.fit_state`): recorded at training
    time on the reference rows, it is what the labelling job's drift check compares with."""
    Z, output, confidence = model.assign(X)
    return fit_state(Z, output, confidence, model.n_clusters, n_neighbors)


def carry_ids(previous: ClusterModel, model: ClusterModel, sample: np.ndarray, reference: np.ndarray | None,
              n_neighbors: int = 10) -> tuple[IdMatch, dict]:
    """Stable ids for the new ``model`` and the report of the recluster.

    Parameters
    ----------
    previous, model : ClusterModel
        The previous model (its ``cluster_ids`` and ``next_cluster_id``) and the new one.
    sample : ndarray of shape (m, d)
        Raw rows of the grown data (the new training sample).
    reference : ndarray of shape (r, d) or None
        The previous model's reference rows (:func:`read_reference`): the shared sample both
        models label. ``None`` (a model saved without them) uses ``sample`` instead, where new
        rows can pull a previous id towards a new cluster.
    """
    next_id = previous.record.next_cluster_id
    next_id = int(previous.cluster_ids.max()) + 1 if next_id is None else int(next_id)
    shared = sample if reference is None else reference
    before = previous.predict(shared)
    current = model.assign(shared)[1]
    match = match_clusters(before, current, model.n_clusters, previous.cluster_ids, next_id)

    cut_rows = sample[:CUT_ROWS]
    Z = model.scaler.transform(cut_rows)  # one graph, the new model's scaling, for both partitions
    cut_before = knn_cut(Z, previous.assign(cut_rows)[1], previous.n_clusters, n_neighbors)
    cut_after = knn_cut(Z, model.assign(cut_rows)[1], model.n_clusters, n_neighbors)
    report = {
        "shared_sample": ("the previous model's reference rows" if reference is not None
                          else "the new training sample (the previous model kept no reference rows)"),
        "shared_rows": len(shared),
        "churn": churn(before, match.ids[current]),
        "matched": len(match.matched), "new": match.new, "vanished": match.vanished,
        "ids": match.ids.tolist(), "next_cluster_id": match.next_id,
        "ncut_before": cut_before["ncut"], "ncut_after": cut_after["ncut"], "cut_rows": len(cut_rows),
    }
    return match, report


def describe(report: dict) -> str:
    """One line for the job's output."""
    new = f", new {report['new']}" if report["new"] else ""
    gone = f", vanished {report['vanished']}" if report["vanished"] else ""
    return (f"[ray_ncut] recluster: {report['matched']} clusters kept their ids{new}{gone}; "
            f"{report['churn']:.1%} of {report['shared_rows']} old rows changed cluster; normalized cut "
            f"{report['ncut_before']:.4f} (previous model) -> {report['ncut_after']:.4f} (new)")
