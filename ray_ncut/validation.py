"""The checks every path makes on features, with one wording. No Ray.

The estimator, the readers (every read unit of every job) and the model all call
these, so a NaN is reported the same way whether it came through ``NeuralCut.fit``
or a Parquet file of a labelling run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_finite", "check_dimension", "first_non_finite"]


def first_non_finite(X: np.ndarray) -> tuple[int, int, float] | None:
    """(row, feature, value) of the first NaN or infinite entry of X (n, d), or None."""
    bad = ~np.isfinite(X)
    if not bad.any():
        return None
    row, col = map(int, np.argwhere(bad)[0])
    return row, col, float(X[row, col])


def check_finite(X: np.ndarray, where: str = "X", first_row: int = 0, error=ValueError, names=None) -> None:
    """Raise ``error`` naming the count and the first NaN/inf of X (n, d); ``first_row`` offsets row numbers;
    ``names`` (d,), where the features are named columns, names the column."""
    first = first_non_finite(X)
    if first is not None:
        row, col, value = first
        count = int((~np.isfinite(X)).sum())
        feature = f"column {names[col]!r}" if names is not None else f"feature {col}"
        raise error(f"{where} has {count} NaN or infinite value(s); the first at row {first_row + row}, "
                    f"{feature}: {value}")


def check_dimension(n_features: int, expected: int, where: str = "X", model: str = "the model") -> None:
    """Raise ValueError unless rows of ``where`` have the ``expected`` number of features."""
    if n_features != expected:
        raise ValueError(f"{where} has {n_features} features, but {model} expects {expected}")
