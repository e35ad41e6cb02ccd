"""Pairwise constraints from a file of id pairs (``--constraints FILE``). No Ray.

The file is CSV with a header and three columns::

    id_a,id_b,link
    17,4031,must
    17,998,cannot

``link`` is ``must`` / ``cannot`` (also ``must-link``, ``cannot-link``, ``1``, ``0``).
Ids are compared as text with the data's id column, so integer and string ids both
work. The pairs feed the KCL loss (:func:`ray_ncut.losses.kcl_loss`) beside the cut.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ConstraintPairs", "read_constraints"]

_MUST = {"must", "must-link", "must_link", "1", "true", "ml"}
_CANNOT = {"cannot", "cannot-link", "cannot_link", "0", "false", "cl"}
COLUMNS = ("id_a", "id_b", "link")


@dataclass
class ConstraintPairs:
    id_a: np.ndarray  # (p,) str
    id_b: np.ndarray  # (p,) str
    must: np.ndarray  # (p,) bool

    @property
    def ids(self) -> set[str]:
        return set(self.id_a.tolist()) | set(self.id_b.tolist())

    def __len__(self) -> int:
        return len(self.must)

    def index_into(self, row_ids: list[str]):
        """Pairs as positions in ``row_ids`` (the rows gathered for them): ``first, second, similar``.

        Raises ValueError naming an id the data does not have.
        """
        where = {rid: i for i, rid in enumerate(row_ids)}
        missing = sorted(self.ids - where.keys())
        if missing:
            raise ValueError(f"--constraints: {len(missing)} id(s) not found in the data, e.g. {missing[0]!r}")
        first = np.array([where[a] for a in self.id_a], dtype=np.int64)
        second = np.array([where[b] for b in self.id_b], dtype=np.int64)
        return first, second, self.must.copy()


def read_constraints(path: str) -> ConstraintPairs:
    """Read and validate a constraints CSV; every problem is one ValueError naming the value."""
    if not os.path.isfile(path):
        raise ValueError(f"--constraints file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"--constraints {path}: missing column(s) {missing}; header is {reader.fieldnames}")
        a, b, must = [], [], []
        for line, row in enumerate(reader, start=2):
            link = (row["link"] or "").strip().lower()
            if link not in _MUST | _CANNOT:
                raise ValueError(f"--constraints {path} line {line}: link should be 'must' or 'cannot', got {row['link']!r}")
            a.append(row["id_a"].strip())
            b.append(row["id_b"].strip())
            must.append(link in _MUST)
    if not must:
        raise ValueError(f"--constraints {path} has no pairs")
    return ConstraintPairs(np.array(a), np.array(b), np.array(must, dtype=bool))
