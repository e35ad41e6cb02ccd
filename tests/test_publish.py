"""Ownership of local outputs (ray_ncut.outputs.local): what may be replaced, what never is. No Ray."""

import json
import os

import pytest

from ray_ncut.outputs import MARKER_FILE, LocalOutput, OutputError
from ray_ncut.outputs.local import is_ours, make_staging, running_owner, seal


def made_output(path, kind="labels", files=("metrics.json", "labels/part-000000.parquet")):
    """A complete output of ``kind`` at ``path``, written the way a job writes one."""
    staging = make_staging(LocalOutput(str(path), "labels").sibling("staging-test"), kind)
    for f in files:
        os.makedirs(os.path.dirname(os.path.join(staging, f)), exist_ok=True)
        with open(os.path.join(staging, f), "w") as fh:
            fh.write(f"content of {f}")
    seal(staging, kind)
    LocalOutput(str(path), kind).publish(staging)
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_seal_lists_every_file_and_a_published_output_is_ours(tmp_path):
    out = made_output(tmp_path / "labels")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["written_by"] == "ray_ncut" and marker["kind"] == "labels" and marker["complete"]
    assert marker["files"] == ["labels/part-000000.parquet", "metrics.json"]
    assert is_ours(str(out), "labels") and not is_ours(str(out), "model")
    assert not list(tmp_path.glob(".labels.*"))  # the staging folder became the output


@pytest.mark.parametrize("where", ["/", "~", ".", ".."])
def test_root_home_working_directory_and_their_parents_are_always_refused(in_tmp, where):
    with pytest.raises(OutputError, match="root directory|home directory|working directory"):
        LocalOutput(where, "model").check(overwrite=True)


def test_the_input_a_parent_of_it_and_a_folder_inside_it_are_refused(tmp_path):
    data = tmp_path / "in" / "data"
    data.mkdir(parents=True)
    (data / "part-0.parquet").write_text("x")
    with pytest.raises(OutputError, match="is the input"):
        LocalOutput(str(data), "labels").check(overwrite=True, inputs=(str(data),))
    with pytest.raises(OutputError, match="is a parent of the input"):
        LocalOutput(str(tmp_path / "in"), "labels").check(overwrite=True, inputs=(str(data / "part-0.parquet"),))
    with pytest.raises(OutputError, match="inside the input folder"):
        LocalOutput(str(data / "labels"), "labels").check(overwrite=True, inputs=(str(data),))
    with pytest.raises(OutputError, match="is a parent of the input"):  # a glob's folder counts
        LocalOutput(str(tmp_path / "in"), "labels").check(overwrite=True, inputs=(str(data / "*.parquet"),))
    assert LocalOutput(str(tmp_path / "out"), "labels").check(False, inputs=(str(data), "builtin:rings", "s3://b/x"))


def test_a_folder_holding_a_users_file_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"not written by ray_ncut \(notes.txt\)"):
            LocalOutput(str(out), "model").check(overwrite)
    assert (out / "notes.txt").read_text() == "mine"


def test_our_output_with_a_file_added_by_a_user_is_refused(tmp_path):
    out = made_output(tmp_path / "labels")
    (out / "labels" / "mine.csv").write_text("user data")
    with pytest.raises(OutputError, match=r"1 file ray_ncut did not write \(labels/mine.csv\)"):
        LocalOutput(str(out), "labels").check(overwrite=True)


def test_our_output_is_replaced_only_with_overwrite_and_only_of_its_kind(tmp_path):
    out = made_output(tmp_path / "labels")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        LocalOutput(str(out), "labels").check(overwrite=False)
    assert LocalOutput(str(out), "labels").check(overwrite=True) == str(out)
    with pytest.raises(OutputError, match="holds a ray_ncut labels output, not a model output"):
        LocalOutput(str(out), "model").check(overwrite=True)


def test_an_empty_folder_or_a_new_path_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert LocalOutput(str(tmp_path / "empty"), "model").check(overwrite=False)
    assert LocalOutput(str(tmp_path / "new"), "model").check(overwrite=False)
    with pytest.raises(OutputError, match="not a folder"):
        (tmp_path / "file").write_text("x")
        LocalOutput(str(tmp_path / "file"), "model").check(overwrite=True)


def test_publish_swaps_whole_and_refuses_when_a_user_file_appeared_meanwhile(tmp_path):
    out = made_output(tmp_path / "labels", files=("old.json",))
    made_output(out, files=("new.json",))
    assert sorted(os.listdir(out)) == [MARKER_FILE, "new.json"]

    staging = make_staging(LocalOutput(str(out), "labels").sibling("staging-2"), "labels")
    (tmp_path / "labels" / "added-by-user.txt").write_text("mine")  # while the job ran
    seal(staging, "labels")
    with pytest.raises(OutputError, match="changed while the job ran"):
        LocalOutput(str(out), "labels").publish(staging)
    assert (out / "added-by-user.txt").read_text() == "mine" and (out / "new.json").exists()


def test_publish_refuses_an_unsealed_staging_folder(tmp_path):
    staging = make_staging(str(tmp_path / ".x.staging-1"), "labels")
    with pytest.raises(RuntimeError, match="not a complete labels output"):
        LocalOutput(str(tmp_path / "x"), "labels").publish(staging)
    assert not (tmp_path / "x").exists()


def test_cleanup_removes_only_our_leftovers_and_restores_an_output_lost_between_renames(tmp_path):
    out = tmp_path / "labels"
    ours = make_staging(LocalOutput(str(out), "labels").sibling("staging-dead"), "labels")
    theirs = tmp_path / ".labels.staging-notours"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    # a run that died between the two renames of publish: no output, the previous one aside
    previous = made_output(tmp_path / "prev", files=("metrics.json",))
    os.rename(previous, LocalOutput(str(out), "labels").sibling("old-1234"))

    removed = LocalOutput(str(out), "labels").clean_stale()
    assert removed == [ours]
    assert (theirs / "keep.txt").exists()
    assert (out / "metrics.json").read_text() == "content of metrics.json"  # the previous output is back


def test_cleanup_leaves_a_running_runs_staging_and_removes_it_once_its_process_is_dead(tmp_path):
    """A concurrent run of the same output is never cleaned away; a killed one's leftovers are."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "labels"
    staging = LocalOutput(str(out), "labels").sibling("staging-other")
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ray_ncut.outputs.local import make_staging; "
        f"make_staging({staging!r}, 'labels'); print('made', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "made"
        owner = running_owner(staging)
        assert owner is not None and owner["pid"] == child.pid
        assert LocalOutput(str(out), "labels").clean_stale() == [] and os.path.isdir(staging)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert running_owner(staging) is None
    assert LocalOutput(str(out), "labels").clean_stale() == [staging] and not os.path.exists(staging)


def test_a_sealed_folder_or_one_from_this_process_is_not_running(tmp_path):
    staging = make_staging(LocalOutput(str(tmp_path / "m"), "labels").sibling("training"), "model")
    assert running_owner(staging) is None  # this process: its own leftovers are its to clean
    seal(staging, "model")
    assert running_owner(staging) is None
