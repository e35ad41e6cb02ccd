"""Built-in data sets: deterministic chunked generation and clear errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ray_ncut.data import builtin
from ray_ncut.data.builtin import (
    builtin_chunks,
    load_builtin,
    parse_builtin,
    synthetic_chunk,
)

ROOT = Path(__file__).resolve().parents[1]


def test_parse_fills_defaults_and_reads_query():
    spec = parse_builtin("builtin:blobs?n=5000&d=3&k=4")
    assert spec.params == {"seed": 0, "n": 5000, "d": 3, "k": 4, "std": 1.0}
    assert spec.n_rows == 5000 and spec.n_classes == 4
    assert str(parse_builtin(str(spec))) == str(spec)


@pytest.mark.parametrize(
    "uri, match",
    [
        ("builtin:circles", r"unknown built-in data set 'circles'"),
        ("builtin:rings?m=3", r"no parameter 'm'"),
        ("builtin:rings?n=lots", r"n='lots' is not a number"),
        ("builtin:blobs?k=1", r"k=1 is too small"),
    ],
)
def test_bad_specs_name_the_value(uri, match):
    with pytest.raises(ValueError, match=match):
        parse_builtin(uri)


def test_a_chunk_generated_alone_equals_its_slice_of_the_whole():
    spec = parse_builtin("builtin:blobs?n=2500&d=4&k=3")
    whole = list(builtin_chunks(spec, chunk_rows=1000))
    assert [c[0] for c in whole] == [0, 1000, 2000] and len(whole[-1][1]) == 500
    X2, y2 = synthetic_chunk(spec, 2, chunk_rows=1000)
    np.testing.assert_array_equal(X2, whole[2][1])
    np.testing.assert_array_equal(y2, whole[2][2])


def test_rings_have_two_radii_and_moons_two_labels():
    X, y = load_builtin("builtin:rings?n=2000&noise=0")
    r = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(r[y == 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(r[y == 1], 0.5, rtol=1e-5)
    X, y = load_builtin("builtin:moons?n=100")
    assert X.shape == (100, 2) and set(y) == {0, 1}


def test_digits_loads_all_rows():
    X, y = load_builtin("builtin:digits")
    assert X.shape == (1797, 64) and X.dtype == np.float32 and len(set(y)) == 10


def test_missing_fashion_mnist_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        load_builtin("builtin:fashion-mnist")


def test_compare_job_prints_both_methods_side_by_side():
    out = subprocess.run(
        [sys.executable, "jobs/compare.py", "--data", "builtin:blobs?n=1500&d=4&k=3", "--steps", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-4].split()[:5] == ["method", "acc", "nmi", "ari", "ncut"]
    ours = lines[-2].split()
    assert ours[:2] == ["ray_ncut", "NeuralCut"] and float(ours[2]) >= 0.99


def test_compare_job_rejects_an_unknown_data_set_in_one_line():
    out = subprocess.run(
        [sys.executable, "jobs/compare.py", "--data", "builtin:nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown built-in data set 'nope'; choose one of rings, moons, blobs, digits, fashion-mnist"]


def test_real_sets_come_in_small_read_only_chunks_loaded_once():
    from ray_ncut.data.readers import plan_units, read_unit

    units = plan_units("builtin:digits")
    assert [u.rows for u in units] == [1797]  # 10k-row units: one here, seven for Fashion-MNIST
    X = read_unit(units[0])["features"]
    with pytest.raises(ValueError, match="read-only"):
        X[0, 0] = 1.0  # the cached array is shared by every chunk read in this process
    assert builtin._load_real("digits")[0] is builtin._load_real("digits")[0]


def test_reading_a_built_in_set_does_not_import_torch():
    """Ray Data read tasks import ray_ncut.data and the scan's module; torch costs ~1 s there."""
    code = ("import sys, ray_ncut.pipeline.scan, ray_ncut.ray.dataset; from ray_ncut.data.readers import plan_units, read_unit; "
            "read_unit(plan_units('builtin:rings?n=100')[0]); "
            "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
