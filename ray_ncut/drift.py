"""Is a full recluster due? The model's fit to new rows against its fit at training time. No Ray.

Two signs that the data moved away from what the model was trained on, each measured the same
way at training time (on the model's reference rows, :mod:`ray_ncut.recluster`) and on new rows
(a uniform sample of the rows a labelling run labelled):

- the **normalized cut** of the model's partition on the kNN graph of ``DRIFT_ROWS`` rows: rows
  from a new region land in clusters they do not fit, and cut many graph edges;
- the **share of low-confidence rows** (top softmax probability below ``LOW_CONFIDENCE``): rows
  between clusters, or away from all of them.

A recluster is due when either doubles and grows by at least ``MIN_RISE`` (absolute), so that a
model with an almost perfect cut (0.001 -> 0.002) does not raise the alarm over noise.
"""

from __future__ import annotations

import numpy as np

from .knn import knn_cut

__all__ = ["DRIFT_ROWS", "LOW_CONFIDENCE", "MIN_RISE", "fit_state", "drift_check", "describe"]

DRIFT_ROWS = 2000  # rows of each kNN graph: the same density at training time and later
LOW_CONFIDENCE = 0.5
MIN_RISE = 0.05


def fit_state(Z: np.ndarray, cluster: np.ndarray, confidence: np.ndarray, k: int, n_neighbors: int = 10,
              seed: int = 0) -> dict:
    """The model's fit to scaled rows Z (n, d) it labelled ``cluster`` (n,) with ``confidence`` (n,):
    ``{"ncut", "low_confidence", "rows"}``, the cut on a kNN graph of at most ``DRIFT_ROWS`` rows."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(Z))[:DRIFT_ROWS])
    cut = knn_cut(np.ascontiguousarray(Z[keep], dtype=np.float32), cluster[keep], k, n_neighbors)
    return {"ncut": float(cut["ncut"]), "low_confidence": float((confidence < LOW_CONFIDENCE).mean()),
            "rows": int(len(keep))}


def drift_check(trained: dict | None, new: dict) -> dict:
    """Compare the fit on new rows with the fit at training time; ``due`` says whether to recluster."""
    if not trained:
        return {"due": None, "reason": "the model records no training-time fit (saved without reference rows)",
                "new": new}
    reasons = []
    for name, what in (("ncut", "normalized cut"), ("low_confidence", "share of low-confidence rows")):
        before, now = trained[name], new[name]
        if now >= 2 * before and now - before >= MIN_RISE:
            reasons.append(f"{what} {before:.3f} at training -> {now:.3f}")
    return {"due": bool(reasons), "reason": "; ".join(reasons) or "within twice the training-time values",
            "trained": trained, "new": new}


def describe(check: dict) -> str:
    if check["due"] is None:
        return f"[ray_ncut] drift check: not available ({check['reason']})"
    verdict = "a full recluster is due" if check["due"] else "no recluster needed"
    return f"[ray_ncut] drift check: {verdict} ({check['reason']})"
