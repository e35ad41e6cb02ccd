"""Ownership of outputs (ray_ncut.publish): what may be replaced, what never is. No Ray."""

import json
import os

import pytest

from ray_ncut.publish import (
    MARKER_FILE,
    OutputError,
    check_out,
    clean_stale_siblings,
    is_ours,
    make_staging,
    publish,
    running_owner,
    seal,
    sibling,
)


def made_output(path, kind="labels", files=("metrics.json", "labels/part-000000.parquet")):
    """A complete output of ``kind`` at ``path``, written the way a job writes one."""
    staging = make_staging(sibling(path, "staging-test"), kind)
    for f in files:
        os.makedirs(os.path.dirname(os.path.join(staging, f)), exist_ok=True)
        with open(os.path.join(staging, f), "w") as fh:
            fh.write(f"content of {f}")
    seal(staging, kind)
    publish(staging, str(path), kind)
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
        check_out(where, "model", overwrite=True)


def test_the_input_a_parent_of_it_and_a_folder_inside_it_are_refused(tmp_path):
    data = tmp_path / "in" / "data"
    data.mkdir(parents=True)
    (data / "part-0.parquet").write_text("x")
    with pytest.raises(OutputError, match="is the input"):
        check_out(str(data), "labels", overwrite=True, inputs=(str(data),))
    with pytest.raises(OutputError, match="is a parent of the input"):
        check_out(str(tmp_path / "in"), "labels", overwrite=True, inputs=(str(data / "part-0.parquet"),))
    with pytest.raises(OutputError, match="inside the input folder"):
        check_out(str(data / "labels"), "labels", overwrite=True, inputs=(str(data),))
    with pytest.raises(OutputError, match="is a parent of the input"):  # a glob's folder counts
        check_out(str(tmp_path / "in"), "labels", overwrite=True, inputs=(str(data / "*.parquet"),))
    assert check_out(str(tmp_path / "out"), "labels", False, inputs=(str(data), "builtin:rings", "s3://b/x"))


def test_a_folder_holding_a_users_file_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"not written by ray_ncut \(notes.txt\)"):
            check_out(str(out), "model", overwrite)
    assert (out / "notes.txt").read_text() == "mine"


def test_our_output_with_a_file_added_by_a_user_is_refused(tmp_path):
    out = made_output(tmp_path / "labels")
    (out / "labels" / "mine.csv").write_text("user data")
    with pytest.raises(OutputError, match=r"1 file ray_ncut did not write \(labels/mine.csv\)"):
        check_out(str(out), "labels", overwrite=True)


def test_our_output_is_replaced_only_with_overwrite_and_only_of_its_kind(tmp_path):
    out = made_output(tmp_path / "labels")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        check_out(str(out), "labels", overwrite=False)
    assert check_out(str(out), "labels", overwrite=True) == str(out)
    with pytest.raises(OutputError, match="holds a ray_ncut labels output, not a model output"):
        check_out(str(out), "model", overwrite=True)


def test_an_empty_folder_or_a_new_path_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_out(str(tmp_path / "empty"), "model", overwrite=False)
    assert check_out(str(tmp_path / "new"), "model", overwrite=False)
    with pytest.raises(OutputError, match="not a folder"):
        (tmp_path / "file").write_text("x")
        check_out(str(tmp_path / "file"), "model", overwrite=True)


def test_publish_swaps_whole_and_refuses_when_a_user_file_appeared_meanwhile(tmp_path):
    out = made_output(tmp_path / "labels", files=("old.json",))
    made_output(out, files=("new.json",))
    assert sorted(os.listdir(out)) == [MARKER_FILE, "new.json"]

    staging = make_staging(sibling(out, "staging-2"), "labels")
    (tmp_path / "labels" / "added-by-user.txt").write_text("mine")  # while the job ran
    seal(staging, "labels")
    with pytest.raises(OutputError, match="changed while the job ran"):
        publish(staging, str(out), "labels")
    assert (out / "added-by-user.txt").read_text() == "mine" and (out / "new.json").exists()


def test_publish_refuses_an_unsealed_staging_folder(tmp_path):
    staging = make_staging(str(tmp_path / ".x.staging-1"), "labels")
    with pytest.raises(RuntimeError, match="not a complete labels output"):
        publish(staging, str(tmp_path / "x"), "labels")
    assert not (tmp_path / "x").exists()


def test_cleanup_removes_only_our_leftovers_and_restores_an_output_lost_between_renames(tmp_path):
    out = tmp_path / "labels"
    ours = make_staging(sibling(out, "staging-dead"), "labels")
    theirs = tmp_path / ".labels.staging-notours"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    # a run that died between the two renames of publish: no output, the previous one aside
    previous = made_output(tmp_path / "prev", files=("metrics.json",))
    os.rename(previous, sibling(out, "old-1234"))

    removed = clean_stale_siblings(str(out), "labels")
    assert removed == [ours]
    assert (theirs / "keep.txt").exists()
    assert (out / "metrics.json").read_text() == "content of metrics.json"  # the previous output is back


def test_cleanup_leaves_a_running_runs_staging_and_removes_it_once_its_process_is_dead(tmp_path):
    """A concurrent run of the same output is never cleaned away; a killed one's leftovers are."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "labels"
    staging = sibling(out, "staging-other")
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ray_ncut.publish import make_staging; "
        f"make_staging({staging!r}, 'labels'); print('made', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "made"
        owner = running_owner(staging)
        assert owner is not None and owner["pid"] == child.pid
        assert clean_stale_siblings(str(out), "labels") == [] and os.path.isdir(staging)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert running_owner(staging) is None
    assert clean_stale_siblings(str(out), "labels") == [staging] and not os.path.exists(staging)


def test_a_sealed_folder_or_one_from_this_process_is_not_running(tmp_path):
    staging = make_staging(sibling(tmp_path / "m", "training"), "model")
    assert running_owner(staging) is None  # this process: its own leftovers are its to clean
    seal(staging, "model")
    assert running_owner(staging) is None
