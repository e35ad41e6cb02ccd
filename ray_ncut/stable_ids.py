"""Stable cluster ids across reclustering runs: the new model's clusters matched to the previous
model's ids, so that a cluster keeps its number from one run to the next. No Ray.

Both models label the same rows (a shared sample). Their contingency table, previous id x new
cluster, is matched by an optimal assignment (Hungarian, maximum total overlap). A pair is kept
only where most of the new cluster's rows carried that previous id (``min_share``); every other
new cluster gets an id never used before, and a previous id with no kept pair has vanished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["IdMatch", "match_clusters", "churn"]


@dataclass
class IdMatch:
    """The outcome of :func:`match_clusters`."""

    ids: np.ndarray  # (k,) int64: the stable id of each new cluster index
    matched: dict  # new cluster index -> the previous id it keeps
    new: list  # the ids given to new clusters (never used before)
    vanished: list  # previous ids no new cluster keeps
    next_id: int  # the first id not used by any run so far

    def to_dict(self) -> dict:
        return {"ids": self.ids.tolist(), "matched": {int(j): int(i) for j, i in self.matched.items()},
                "new": [int(i) for i in self.new], "vanished": [int(i) for i in self.vanished],
                "next_id": int(self.next_id)}


def match_clusters(previous: np.ndarray, current: np.ndarray, k: int, previous_ids, next_id: int,
                   min_share: float = 0.5) -> IdMatch:
    """Give each of the new model's ``k`` clusters a stable id.

    Parameters
    ----------
    previous : ndarray of shape (n,)
        The previous model's stable id of each shared row.
    current : ndarray of shape (n,)
        The new model's cluster index (0..k-1) of the same rows.
    k : int
        The new model's number of clusters (a cluster may hold none of the rows).
    previous_ids : sequence of int
        Every id the previous model can give (its clusters, also those holding no shared row).
    next_id : int
        The first id never used by any earlier run; new clusters are numbered from it.
    min_share : float
        A matched pair is kept when at least this share of the new cluster's rows carried the
        previous id.
    """
    previous, current = np.asarray(previous), np.asarray(current)
    if previous.shape != current.shape or previous.ndim != 1:
        raise ValueError(f"previous and current should be 1-D of one length, got {previous.shape} and {current.shape}")
    if len(current) and (current.min() < 0 or current.max() >= k):
        raise ValueError(f"current holds cluster {int(current.max())}, outside 0..{k - 1}")
    previous_ids = np.asarray(sorted(set(int(i) for i in previous_ids)), dtype=np.int64)
    unknown = np.setdiff1d(previous, previous_ids)
    if len(unknown):
        raise ValueError(f"previous holds id {int(unknown[0])}, not among previous_ids")
    if len(previous_ids) and next_id <= previous_ids.max():
        raise ValueError(f"next_id={next_id} should exceed every previous id (max {int(previous_ids.max())})")

    table = np.zeros((len(previous_ids), k), np.int64)  # (previous ids, new clusters) overlap
    np.add.at(table, (np.searchsorted(previous_ids, previous), current), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    sizes = table.sum(0)  # (k,) rows of each new cluster
    matched = {int(j): int(previous_ids[i]) for i, j in zip(rows, cols)
               if table[i, j] > 0 and table[i, j] >= min_share * sizes[j]}
    ids = np.empty(k, np.int64)
    new = []
    for j in range(k):
        if j in matched:
            ids[j] = matched[j]
        else:
            ids[j] = next_id
            new.append(next_id)
            next_id += 1
    vanished = sorted(set(previous_ids.tolist()) - set(matched.values()))
    return IdMatch(ids=ids, matched=matched, new=new, vanished=vanished, next_id=next_id)


def churn(previous: np.ndarray, current_ids: np.ndarray) -> float:
    """Share of rows whose stable id changed between the two runs."""
    previous, current_ids = np.asarray(previous), np.asarray(current_ids)
    return float((previous != current_ids).mean()) if len(previous) else 0.0
