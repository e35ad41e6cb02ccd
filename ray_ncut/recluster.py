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
import torch

from .drift import fit_state
from .knn import knn_cut
from .model import REFERENCE_FILE, CutHead, cluster_ids
from .scaling import FeatureScaler
from .stable_ids import IdMatch, churn, match_clusters

__all__ = ["REFERENCE_ROWS", "reference_sample", "read_reference", "carry_ids", "fit_of", "describe"]

REFERENCE_ROWS = 2000  # rows kept with a model for the next recluster: 8 KB a feature
CUT_ROWS = 20_000  # rows of the grown data's sample on which the two partitions' cuts are compared


def reference_sample(X: np.ndarray, seed: int, rows: int = REFERENCE_ROWS) -> np.ndarray:
    """A uniform sample (at most ``rows``) of the raw training rows X (m, d), in their order."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:rows])
    return np.ascontiguousarray(X[keep], dtype=np.float32)


def read_reference(model_dir: str) -> np.ndarray | None:
    path = os.path.join(model_dir, REFERENCE_FILE)
    return np.load(path) if os.path.isfile(path) else None


@torch.no_grad()
def _outputs(head: CutHead, scaler: FeatureScaler, X: np.ndarray) -> np.ndarray:
    """(n,) the head's output index for raw rows X (n, d)."""
    return head.predict_proba(torch.from_numpy(scaler.transform(X))).argmax(1).numpy()


@torch.no_grad()
def fit_of(head: CutHead, scaler: FeatureScaler, X: np.ndarray, n_neighbors: int = 10) -> dict:
    """The model's fit to raw rows X (n, d) (:func:`ray_ncut.drift.fit_state`): recorded at training
    time on the reference rows, it is what the labelling job's drift check compares with."""
    Z = scaler.transform(X)
    proba = head.predict_proba(torch.from_numpy(Z)).numpy()  # (n, k)
    return fit_state(Z, proba.argmax(1), proba.max(1), head.config.n_clusters, n_neighbors)


def carry_ids(previous: tuple[CutHead, dict], head: CutHead, scaler: FeatureScaler, sample: np.ndarray,
              reference: np.ndarray | None, n_neighbors: int = 10) -> tuple[IdMatch, dict]:
    """Stable ids for the new ``head`` and the report of the recluster.

    Parameters
    ----------
    previous : (CutHead, dict)
        The previous model and its config (``load_model_dir``).
    head, scaler : the new model (CPU) and its feature scaling.
    sample : ndarray of shape (m, d)
        Raw rows of the grown data (the new training sample).
    reference : ndarray of shape (r, d) or None
        The previous model's reference rows (:func:`read_reference`): the shared sample both
        models label. ``None`` (a model saved without them) uses ``sample`` instead, where new
        rows can pull a previous id towards a new cluster.
    """
    prev_head, prev_config = previous
    prev_scaler = FeatureScaler.from_dict(prev_config["scaler"])
    prev_ids = cluster_ids(prev_config, prev_head.config.n_clusters)
    next_id = int(prev_config.get("next_cluster_id", int(prev_ids.max()) + 1))
    shared = sample if reference is None else reference
    before = prev_ids[_outputs(prev_head, prev_scaler, shared)]
    current = _outputs(head, scaler, shared)
    match = match_clusters(before, current, head.config.n_clusters, prev_ids, next_id)

    cut_rows = sample[:CUT_ROWS]
    Z = scaler.transform(cut_rows)  # one graph, the new model's scaling, for both partitions
    cut_before = knn_cut(Z, _outputs(prev_head, prev_scaler, cut_rows), prev_head.config.n_clusters, n_neighbors)
    cut_after = knn_cut(Z, _outputs(head, scaler, cut_rows), head.config.n_clusters, n_neighbors)
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
