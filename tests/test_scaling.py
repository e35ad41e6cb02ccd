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


def test_auto_standardises_a_table_whose_columns_differ_in_scale_by_1000x():
    rng = np.random.default_rng(2)
    # 20 measurements: 16 in metres, 4 in millimetres, so two groups of scales 1000x apart
    X = np.hstack([rng.normal(1.0, 0.2, (500, 16)), rng.normal(1000.0, 200.0, (500, 4))])
    s = FeatureScaler.fit("auto", X)
    assert s.mode == "standard"
    np.testing.assert_allclose(s.transform(X).std(0), 1.0, rtol=1e-3)  # every column weighs the same


def test_auto_compares_unit_norm_images_by_direction():
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 255, (400, 64))
    X[:, :8] = 0.0  # constant border pixels do not count against a shared scale
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # unit-norm images
    assert FeatureScaler.fit("auto", X).mode == "l2"


@pytest.mark.parametrize("d", [2, 8, 15])
def test_auto_keeps_low_dimensional_rows_whole_even_in_one_unit(d):
    # In few dimensions the norm of a row says much of where it is (two rings differ by radius)
    X = np.random.default_rng(4).normal(size=(300, d))
    assert FeatureScaler.fit("auto", X).mode == "standard"


def test_auto_rule_is_the_same_streamed_or_one_shot():
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 1, (1000, 32)) * np.r_[np.ones(16), np.full(16, 3.9)]  # just inside the shared-scale bound
    merged = None
    for chunk in np.array_split(X, 7):
        merged = merge_moments(merged, moments_partial(chunk))
    assert FeatureScaler.from_moments("auto", merged).mode == FeatureScaler.fit("auto", X).mode == "l2"
    X[:, 0] *= 100  # one feature in another unit
    assert FeatureScaler.fit("auto", X).mode == "standard"
