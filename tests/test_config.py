"""The one configuration and the one model object: every path derives from them. No Ray."""

import argparse
import inspect
import json
import shutil
from dataclasses import fields

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from ray_ncut import NeuralCut
from ray_ncut.assign import ClusterAssigner
from ray_ncut.config import ClusterConfig, add_flags, config_from_args, given_flags
from ray_ncut.estimator import ESTIMATOR_ONLY
from ray_ncut.model import ClusterModel

FAST = {"steps": 40, "distill_steps": 20, "hidden": (32, 32), "batch_size": 300}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(1500, n_features=6, centers=4, cluster_std=0.8, random_state=2)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs):
    return NeuralCut(n_clusters=4, random_state=0, **FAST).fit(blobs[0])


def test_estimator_parameters_are_the_config_fields_with_the_same_defaults():
    params = inspect.signature(NeuralCut.__init__).parameters
    config_fields = {f.name: f.default for f in fields(ClusterConfig)}
    assert set(params) - {"self"} == set(config_fields) | set(ESTIMATOR_ONLY)
    for name, default in config_fields.items():
        assert params[name].default == default, name
    est = NeuralCut(n_clusters=5, steps=7, gamma="auto")
    assert est.cluster_config() == ClusterConfig(n_clusters=5, steps=7, gamma="auto")


def test_the_training_jobs_flags_are_the_config_fields_and_parse_back_to_the_config():
    from ray_ncut.pipeline.commands import build_train_parser, cluster_config

    wanted = ClusterConfig(n_clusters=7, k_range=(3, 9), loss="cnc", gamma="auto", n_neighbors=12, warm_neighbors=25,
                           sigma=0.5, local_scaling=True, affinity="knn", siamese_steps=50, kcl_weight=0.5,
                           scaling="l2", hidden=(16, 8), init="random", init_sample=900, distill_steps=11,
                           batch_size=400, batch_neighbors=3, steps=77, learning_rate=0.002)
    argv = []
    for f in fields(ClusterConfig):
        flag = f.metadata.get("flag")
        if flag is None:
            continue  # siamese_params: the estimator's alone (documented)
        value = getattr(wanted, f.name)
        assert value != f.default, f"pick a non-default {f.name} so that the round trip shows it"
        argv += [flag] if f.metadata["switch"] else [flag, ",".join(map(str, value)) if isinstance(value, tuple)
                                                     else str(value)]
    args = build_train_parser().parse_args([*argv, "--out", "x"])
    config, given = cluster_config(args)
    assert config == wanted
    assert set(given) == {f.name for f in fields(ClusterConfig) if f.metadata.get("flag")}


def test_flags_left_out_take_the_config_defaults_and_errors_name_the_flag():
    p = argparse.ArgumentParser()
    add_flags(p)
    assert config_from_args(p.parse_args([])) == ClusterConfig() and given_flags(p.parse_args([])) == {}
    with pytest.raises(ValueError, match=r"^--neighbors=0 should be >= 1$"):
        config_from_args(p.parse_args(["--neighbors", "0"]))
    with pytest.raises(ValueError, match=r"^--hidden should be comma-separated integer widths, got 'a,b'$"):
        config_from_args(p.parse_args(["--hidden", "a,b"]))


@pytest.mark.parametrize("params, message", [
    ({"dim": -3}, r"^siamese dim=-3 should be >= 1$"),
    ({"margin": 0}, r"^siamese margin=0 should be > 0$"),
    ({"hidden": (64, 0)}, r"^siamese hidden=\(64, 0\) should be widths >= 1$"),
    ({"components": -1}, r"^siamese components=-1 should be >= 0 \(0: no projection\)$"),
    ({"dimm": 3}, r"^siamese_params has unknown key\(s\) \['dimm'\]; known: \['dim', "),
])
def test_siamese_settings_are_checked_when_the_config_is_made_not_inside_torch(params, message):
    with pytest.raises(ValueError, match=message):
        ClusterConfig(affinity="siamese", siamese_params=params)
    with pytest.raises(ValueError, match=message):
        NeuralCut(2, siamese_params=params).fit(np.zeros((4, 2)))


def test_check_estimator_passes():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(NeuralCut(**FAST), on_fail=None)  # small settings: the API, not quality
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    # scikit-learn itself skips the array-API check unless SCIPY_ARRAY_API is set
    assert skipped <= {"check_array_api_input"}


def test_works_in_a_pipeline_and_clone_round_trips(blobs):
    X, y = blobs
    est = NeuralCut(n_clusters=4, random_state=0, **FAST)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin is not est
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z * 2.0), est)
    labels = pipe.fit_predict(X)
    np.testing.assert_array_equal(pipe.predict(X), labels)
    np.testing.assert_array_equal(twin.fit_predict(X * 2.0), labels)  # same seed, same input: same labels


def test_one_cluster_puts_every_row_in_it(blobs):
    est = NeuralCut(n_clusters=1).fit(blobs[0])
    assert set(est.labels_) == {0} and est.predict_proba(blobs[0][:3]).shape == (3, 1)


def test_one_model_object_on_every_path(fitted, blobs, tmp_path):
    X = blobs[0]
    assert isinstance(fitted.model_, ClusterModel)
    fitted.save(str(tmp_path / "m"))
    model = ClusterModel.load(str(tmp_path / "m"))
    np.testing.assert_array_equal(model.predict(X), fitted.predict(X))
    np.testing.assert_allclose(model.predict_proba(X), fitted.predict_proba(X), rtol=1e-6)
    assert model.config == fitted.cluster_config()
    assigner = ClusterAssigner(str(tmp_path / "m"))
    batch = assigner({"id": np.arange(len(X)), "features": X})
    np.testing.assert_array_equal(batch["cluster"], fitted.predict(X))
    loaded = NeuralCut.load(str(tmp_path / "m"))
    assert loaded.get_params() == fitted.get_params()


def test_a_format_1_model_directory_still_loads(fitted, blobs, tmp_path):
    """Before the one configuration, config.json kept the estimator's parameters as ``estimator``."""
    fitted.save(str(tmp_path / "m"))
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "m", old)
    record = json.loads((old / "config.json").read_text())
    settings = record.pop("config")
    record["estimator"] = {**{k: v for k, v in settings.items() if k not in ("siamese_steps",)},
                           "siamese_params": {"steps": 123}, "random_state": 0}
    record["format_version"] = 1
    (old / "config.json").write_text(json.dumps(record))
    loaded = NeuralCut.load(str(old))
    np.testing.assert_array_equal(loaded.predict(blobs[0]), fitted.predict(blobs[0]))
    assert loaded.steps == FAST["steps"] and loaded.siamese_steps == 123 and loaded.siamese_params is None
