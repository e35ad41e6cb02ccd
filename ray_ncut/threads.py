"""How many threads the compute libraries use: set once at every entry point. No Ray.

torch (and faiss) start one OpenMP thread per core of the machine, and OpenMP threads that wait
for work spin. When anything else uses the CPU (another job, CI, a notebook) the spinning threads
take turns with it and with each other: on a busy 2-core machine the README's first command took
575 s instead of 30 s, and digits in memory 409 s instead of 65 s (shared/NEWCOMER-2026-12-02.md).
Two things fix it:

- waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``). OpenMP reads this once, when torch loads
  it, so ``ray_ncut/__init__.py`` sets it on import, before anything imports torch: import
  ray_ncut first (a value you set yourself is kept);
- as many threads as the cores this process **may** use (:func:`usable_cores`), not as the
  machine has: its CPU affinity, its cgroup's CPU quota (containers, Kubernetes limits), or the
  CPUs Ray assigned to it (Ray sets ``OMP_NUM_THREADS`` in its workers from their ``num_cpus``).

``bench/contention.py`` measures a fit with and without a concurrent CPU load (docs/scale.md).
"""

from __future__ import annotations

import os
import sys

__all__ = ["WAIT_POLICY", "usable_cores", "configure_threads"]

WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")


def _cgroup_cpus(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_*``), or None."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores(environ=os.environ, cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may compute on: ``OMP_NUM_THREADS`` where it is set (by you, or by
    Ray from a worker's ``num_cpus``), else the smaller of its CPU affinity and its cgroup quota
    (rounded down, at least 1).

    The driver of a ``ray job submit`` job is the exception: Ray gives it ``OMP_NUM_THREADS=1`` as
    a default, not an assignment, so it uses the cores it may run on like a job started by hand.
    """
    given = environ.get("OMP_NUM_THREADS", "")
    submitted_driver = "RAY_JOB_CONFIG_JSON_ENV_VAR" in environ and given == "1"
    if given.isdigit() and int(given) > 0 and not submitted_driver:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpus(cgroup_root)
    if quota is not None:
        cores = min(cores, int(quota))
    return max(1, cores)


def configure_threads(threads: int | None = None, at_most: bool = False) -> int:
    """Give torch (and faiss, if loaded) ``threads`` threads (default :func:`usable_cores`) with
    sleeping waits; returns the count. Every job and Ray worker calls it once as it starts;
    ``NeuralCut.fit`` calls it with ``at_most``, which only lowers a count above the usable cores
    (a count you chose with ``torch.set_num_threads`` below it is kept)."""
    os.environ.setdefault(*WAIT_POLICY)  # effective only where torch is not loaded yet
    n = threads or usable_cores()
    import torch

    if at_most:
        n = min(n, torch.get_num_threads())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
        faiss.omp_set_num_threads(n)
    return n
