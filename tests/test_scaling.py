"""Streaming scaling statistics equal one-shot ones."""

import numpy as np
import pytest

from ray_ncut.scaling import FeatureScaler, merge_moments, moments_partial


def test_streamed_moments_give_the_one_shot_scaler():
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 3.0, size=(1000, 4))
    X[:, 2] = 7.0  # a constant feature must not divide by zero
    merged = None
    for chunk in np.array_split(X, [3, 100, 101, 640]):
        merged = merge_moments(merged, moments_partial(chunk))
    streamed = FeatureScaler.from_moments("standard", merged)
    np.testing.assert_allclose(streamed.mean, X.mean(0), rtol=1e-10)
    np.testing.assert_allclose(streamed.std[:2], X.std(0)[:2], rtol=1e-8)
    Z = streamed.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, [0, 1, 3]].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Z[:, 2], 0)


def test_l2_rows_have_unit_norm_and_round_trip():
    X = np.random.default_rng(1).normal(size=(20, 5))
    s = FeatureScaler.fit("l2", X)
    np.testing.assert_allclose(np.linalg.norm(s.transform(X), axis=1), 1, rtol=1e-5)
    assert FeatureScaler.from_dict(s.to_dict()) == s


def test_unknown_scaling_is_rejected_with_its_value():
    with pytest.raises(ValueError, match="'zscore'"):
        FeatureScaler("zscore")
