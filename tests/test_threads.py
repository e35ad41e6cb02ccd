"""Threads from the cores a process may use (ray_ncut.threads), with sleeping OpenMP waits. No Ray."""

import os
import subprocess
import sys

import pytest

from ray_ncut.threads import configure_threads, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path, v2=None, v1=None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(str(v1[0]))
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(str(v1[1]))
    return str(tmp_path)


@pytest.mark.parametrize("files, expected", [
    ({}, AFFINITY),  # no cgroup files: the affinity
    ({"v2": "max 100000\n"}, AFFINITY),  # no quota
    ({"v2": "100000 100000\n"}, 1),  # one CPU's worth
    ({"v2": "50000 100000\n"}, 1),  # half a CPU: still one thread
    ({"v1": (100000, 100000)}, 1),
    ({"v1": (-1, 100000)}, AFFINITY),  # v1's "no quota"
])
def test_the_cgroup_quota_caps_the_affinity(tmp_path, files, expected):
    assert usable_cores({}, cgroup(tmp_path, **files)) == min(expected, AFFINITY)


def test_omp_num_threads_is_an_assignment_except_rays_default_for_a_submitted_driver(tmp_path):
    root = cgroup(tmp_path)
    assert usable_cores({"OMP_NUM_THREADS": "3"}, root) == 3  # yours, or Ray's from a worker's num_cpus
    assert usable_cores({"OMP_NUM_THREADS": "1"}, root) == 1
    submitted = {"OMP_NUM_THREADS": "1", "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}
    assert usable_cores(submitted, root) == AFFINITY
    assert usable_cores({"OMP_NUM_THREADS": "junk"}, root) == AFFINITY


def test_configure_threads_sets_torch_and_only_lowers_with_at_most():
    import torch

    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads(AFFINITY, at_most=True) == 1  # a lower count chosen by the user is kept
        torch.set_num_threads(AFFINITY + 3)
        assert configure_threads(AFFINITY, at_most=True) == AFFINITY
    finally:
        torch.set_num_threads(before)


def test_importing_ray_ncut_before_torch_makes_openmp_waits_sleep():
    probe = "import os, ray_ncut, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # a user's own setting is kept
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
