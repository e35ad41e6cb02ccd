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

Two more signs catch inputs that are wrong rather than new, which the cut alone misses (every row
in one cluster has a cut of 0):

- a **feature moved**: its mean over the new rows lies more than ``FEATURE_SHIFT`` training-time
  standard deviations from its training-time mean, or its spread changed by more than a factor of
  ``SPREAD_FACTOR`` (columns shuffled or in other units; in the scaled space the head reads);
- the **cluster shares moved**: half the rows or more would have to change cluster for the shares
  of the new rows to match the training-time shares (total variation ``SHARE_SHIFT``).
"""

from __future__ import annotations

import numpy as np

from .knn import knn_cut

__all__ = ["DRIFT_ROWS", "LOW_CONFIDENCE", "MIN_RISE", "FEATURE_SHIFT", "SPREAD_FACTOR", "SHARE_SHIFT", "fit_state",
           "drift_check", "describe"]

DRIFT_ROWS = 2000  # rows of each kNN graph: the same density at training time and later
LOW_CONFIDENCE = 0.5
MIN_RISE = 0.05
FEATURE_SHIFT = 1.0  # training-time standard deviations a feature's mean may move
SPREAD_FACTOR = 3.0  # how much a feature's standard deviation may grow or shrink
SHARE_SHIFT = 0.5  # total variation between the cluster shares at training and now


def fit_state(Z: np.ndarray, cluster: np.ndarray, confidence: np.ndarray, k: int, n_neighbors: int = 10,
              seed: int = 0) -> dict:
    """The model's fit to scaled rows Z (n, d) it labelled ``cluster`` (n,) with ``confidence`` (n,):
    ``{"ncut", "low_confidence", "rows"}``, the cut on a kNN graph of at most ``DRIFT_ROWS`` rows."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(Z))[:DRIFT_ROWS])
    cut = knn_cut(np.ascontiguousarray(Z[keep], dtype=np.float32), cluster[keep], k, n_neighbors)
    Z64 = np.asarray(Z, dtype=np.float64)
    return {"ncut": float(cut["ncut"]), "low_confidence": float((confidence < LOW_CONFIDENCE).mean()),
            "rows": int(len(keep)), "feature_mean": Z64.mean(0).tolist(), "feature_std": Z64.std(0).tolist(),
            "shares": (np.bincount(cluster, minlength=k) / max(len(cluster), 1)).tolist()}


def _feature_moves(trained: dict, new: dict, names) -> list[str]:
    """The features whose mean moved more than FEATURE_SHIFT training standard deviations, or whose
    spread changed more than SPREAD_FACTOR-fold (the worst first, at most three named)."""
    if "feature_mean" not in trained or "feature_mean" not in new:
        return []  # a model saved before feature statistics were recorded
    m0, s0 = np.asarray(trained["feature_mean"]), np.asarray(trained["feature_std"])
    m1, s1 = np.asarray(new["feature_mean"]), np.asarray(new["feature_std"])
    if m0.shape != m1.shape or m0.size == 0:
        return []
    floor = 1e-6 * max(float(s0.max()), 1e-12)  # a feature constant at training
    shift = np.abs(m1 - m0) / np.maximum(s0, floor)
    spread = np.maximum(s1, floor) / np.maximum(s0, floor)
    moved = [(shift[j], f"{_name(names, j)}'s mean moved {shift[j]:.1f} training standard deviations")
             for j in range(len(shift)) if shift[j] > FEATURE_SHIFT]
    moved += [(abs(np.log(spread[j])), f"{_name(names, j)}'s spread changed {spread[j]:.2g}-fold")
              for j in range(len(spread)) if not 1 / SPREAD_FACTOR <= spread[j] <= SPREAD_FACTOR]
    if not moved:
        return []
    worst = [text for _, text in sorted(moved, key=lambda m: -m[0])]
    more = f" and {len(worst) - 3} more" if len(worst) > 3 else ""
    return ["; ".join(worst[:3]) + more + " (columns shuffled, retyped or in other units?)"]


def _name(names, j: int) -> str:
    return f"feature {names[j]!r}" if names is not None and j < len(names) else f"feature {j}"


def drift_check(trained: dict | None, new: dict, names=None) -> dict:
    """Compare the fit on new rows with the fit at training time; ``due`` says whether to recluster.
    ``names`` (d,): the feature columns, to name a feature that moved."""
    if not trained:
        return {"due": None, "reason": "the model records no training-time fit (saved without reference rows)",
                "new": new}
    reasons = _feature_moves(trained, new, names)
    for name, what in (("ncut", "normalized cut"), ("low_confidence", "share of low-confidence rows")):
        before, now = trained[name], new[name]
        if now >= 2 * before and now - before >= MIN_RISE:
            reasons.append(f"{what} {before:.3f} at training -> {now:.3f}")
    if len(trained.get("shares", ())) == len(new.get("shares", ())) > 0:
        moved = 0.5 * float(np.abs(np.subtract(trained["shares"], new["shares"])).sum())
        if moved >= SHARE_SHIFT:
            reasons.append(f"cluster shares moved: {moved:.0%} of the rows would have to change cluster to match "
                           f"training (shares now {[round(p, 3) for p in new['shares']]})")
    return {"due": bool(reasons), "reason": "; ".join(reasons) or "within twice the training-time values",
            "trained": trained, "new": new}


def describe(check: dict) -> str:
    if check["due"] is None:
        return f"[ray_ncut] drift check: not available ({check['reason']})"
    verdict = "a full recluster is due" if check["due"] else "no recluster needed"
    return f"[ray_ncut] drift check: {verdict} ({check['reason']})"
