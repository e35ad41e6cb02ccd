"""Labels are never silently wrong: feature columns are matched by name, never by position.

A model records its feature columns and their types (config.json's ``features``); labelling
selects the columns by name in the model's order, and refuses a missing, renamed or retyped one
in one line, writing nothing. Every file of a folder must hold what the first one does. These run
the jobs in their own process (``--engine local``); one case runs the scan on the session's Ray
cluster, where a bad file must give the same line and not a RayTaskError.
"""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from jobs_helpers import job
from ray_ncut import NeuralCut

SMALL = ["--steps", "60", "--batch-size", "128", "--hidden", "32,32", "--engine", "local"]


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """The wine table as Parquet (13 float columns, an id, ground truth), and a model trained on it."""
    data = load_wine(as_frame=True)
    table = data.data.assign(id=[f"wine-{i:03d}" for i in range(len(data.target))], target=data.target)
    root = tmp_path_factory.mktemp("wine")
    (root / "in").mkdir()
    table.to_parquet(root / "in" / "wine.parquet")
    done = job("train.py", ["--data", root / "in" / "wine.parquet", "--k", "3", "--out", root / "model", *SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "table": table, "features": list(data.data.columns), "model": root / "model"}


def label(wine, table: pd.DataFrame, out, *extra):
    path = wine["root"] / f"{out.name}.parquet"
    table.to_parquet(path)
    return job("assign.py", ["--model", wine["model"], "--data", path, "--out", out, "--engine", "local", *extra])


def labels_of(out) -> pd.Series:
    return pd.read_parquet(out / "labels").set_index("id").sort_index()["cluster"]


def one_error_line(done) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in done.stderr
    return lines[-1]


def test_the_model_records_its_feature_columns_and_types(wine):
    record = json.loads((wine["model"] / "config.json").read_text())["features"]
    assert record == {"columns": wine["features"], "types": ["double"] * 13, "dim": 13}


def test_reordered_columns_give_the_same_labels_and_say_so(wine, tmp_path):
    t = wine["table"]
    first = label(wine, t, tmp_path / "original")
    reordered = label(wine, t[wine["features"][::-1] + ["target", "id"]], tmp_path / "reordered")
    assert first.returncode == 0 and reordered.returncode == 0, reordered.stderr[-2000:]
    pd.testing.assert_series_equal(labels_of(tmp_path / "original"), labels_of(tmp_path / "reordered"))
    assert "matched by name to the model" in reordered.stdout
    assert "the input holds them in another order: read in the model's" in reordered.stdout
    assert "another order" not in first.stdout
    # --feature-columns naming the same columns in another order is the same selection
    named = label(wine, t, tmp_path / "named", "--feature-columns", ",".join(sorted(wine["features"])))
    assert named.returncode == 0, named.stderr[-2000:]
    pd.testing.assert_series_equal(labels_of(tmp_path / "original"), labels_of(tmp_path / "named"))


def test_a_renamed_column_is_refused_in_one_line_naming_it(wine, tmp_path):
    out = tmp_path / "renamed"
    done = label(wine, wine["table"].rename(columns={"alcohol": "alc"}), out)
    line = one_error_line(done)
    assert line.startswith(f"error: feature column 'alcohol', which the model {wine['model']} was trained on, is "
                           f"missing from {wine['root'] / 'renamed.parquet'} (renamed or dropped?)")
    assert "'alc'" in line and not out.exists()


def test_a_retyped_column_is_refused_in_one_line_naming_it(wine, tmp_path):
    t = wine["table"].copy()
    t["magnesium"] = t["magnesium"].astype(str)  # not a number at all
    t["proline"] = (t["proline"] * 10).round().astype("int64")  # another kind of number
    t["hue"] = t["hue"].astype("float32")  # a width change only: the same values
    out, original = tmp_path / "retyped", wine["table"]
    line = one_error_line(label(wine, t, out))
    assert "feature column 'magnesium'" in line and "not a number" in line and not out.exists()
    line = one_error_line(label(wine, t.assign(magnesium=original["magnesium"]), out))
    assert line == (f"error: feature column 'proline' in {wine['root'] / 'retyped.parquet'} has type int64, but the "
                    f"model {wine['model']} was trained on it as double; cast it back (a retyped column may hold "
                    "other values)")
    assert not out.exists()
    done = label(wine, t.assign(magnesium=original["magnesium"], proline=original["proline"]), out)
    assert done.returncode == 0, done.stderr[-2000:]  # float32 for float64: the same kind


def test_feature_columns_that_are_not_the_models_are_refused(wine, tmp_path):
    out = tmp_path / "other"
    line = one_error_line(label(wine, wine["table"], out, "--feature-columns", "alcohol,ash"))
    assert line.startswith("error: --feature-columns should name the 13 columns the model") and not out.exists()


def test_a_dataframe_model_saved_by_neuralcut_is_labelled_by_name_too(wine, tmp_path):
    t = wine["table"]
    est = NeuralCut(3, steps=60, hidden=(32, 32), random_state=0).fit(t[wine["features"]])
    est.save(tmp_path / "est")
    assert list(NeuralCut.load(tmp_path / "est").feature_names_in_) == wine["features"]
    path = tmp_path / "reordered.parquet"
    t[wine["features"][::-1] + ["id"]].to_parquet(path)
    done = job("assign.py", ["--model", tmp_path / "est", "--data", path, "--out", tmp_path / "labels",
                             "--engine", "local"])
    assert done.returncode == 0, done.stderr[-2000:]
    got = labels_of(tmp_path / "labels")
    np.testing.assert_array_equal(got.loc[t["id"]].to_numpy(), est.predict(t[wine["features"]]))


def mixed_folder(wine, tmp_path):
    """A folder of two files: the wine table, and one with three of its columns and no id."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    wine["table"].iloc[:100].to_parquet(folder / "a.parquet")
    wine["table"].iloc[100:][["alcohol", "flavanoids", "color_intensity"]].to_parquet(folder / "b.parquet")
    return folder


def test_a_folder_of_files_with_different_columns_is_refused_naming_the_file(wine, tmp_path):
    folder = mixed_folder(wine, tmp_path)
    done = job("train.py", ["--data", folder, "--k", "3", "--out", tmp_path / "m", *SMALL])
    assert one_error_line(done).startswith(f"error: {folder / 'b.parquet'} has no feature column 'malic_acid', "
                                           f"which {folder / 'a.parquet'} has")
    done = job("train.py", ["--data", folder, "--k", "3", "--out", tmp_path / "m", *SMALL,
                            "--feature-columns", "alcohol,flavanoids,color_intensity"])
    assert one_error_line(done).startswith(f"error: {folder / 'b.parquet'} has no id column 'id', "
                                           f"which {folder / 'a.parquet'} has")
    assert not (tmp_path / "m").exists()


@pytest.mark.ray
def test_a_bad_file_found_in_a_ray_task_keeps_its_one_line(ray_cluster, wine, tmp_path):
    """A file whose schema matches but whose values do not (a NaN) is found by the scan, in a Ray
    task: the job's line names it, as in its own process."""
    folder = tmp_path / "nan"
    folder.mkdir()
    t = wine["table"]
    t.iloc[:100].to_parquet(folder / "a.parquet")
    t.iloc[100:].assign(alcohol=np.r_[np.nan, t["alcohol"].to_numpy()[101:]]).to_parquet(folder / "b.parquet")
    lines = []
    for engine in ("ray", "local"):
        done = job("train.py", ["--data", folder, "--k", "3", "--out", tmp_path / "m", *SMALL[:-2],
                                "--engine", engine])
        lines.append(one_error_line(done))
    assert lines[0] == lines[1] and "RayTaskError" not in lines[0] and "row id wine-100" in lines[0], lines


def test_outputs_written_beside_a_file_input_are_never_read_as_data(wine, tmp_path):
    """A model and labels written into the folder of a Parquet file input: a later read of the
    folder skips them (they carry ray_ncut's marker) and says so, instead of taking the label files'
    ``cluster, confidence`` as features."""
    folder = tmp_path / "feats"
    folder.mkdir()
    wine["table"].to_parquet(folder / "part1.parquet")
    done = job("train.py", ["--data", folder / "part1.parquet", "--k", "3", "--out", folder / "run", *SMALL])
    assert done.returncode == 0, done.stderr[-2000:]
    done = job("assign.py", ["--model", folder / "run", "--out", folder / "labels", "--engine", "local"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert list((folder / "labels" / "labels").glob("part-*.parquet"))
    again = job("train.py", ["--data", folder, "--k", "3", "--out", tmp_path / "again", *SMALL])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "features: 13 columns (alcohol, malic_acid" in again.stdout
    assert "skipped 2 ray_ncut output folder(s) inside the input: labels, run" in again.stdout
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["rows"] == len(wine["table"])
