"""Run a command and measure it: wall time and the peak memory of its whole process tree.

A Ray job's memory is spread over the driver, Ray's daemons (GCS, raylet) and the
worker processes they start, all descendants of the command. The sampler walks
the tree every ``interval`` seconds and sums each process's PSS (proportional set
size: shared pages, such as the object store's, are split between the processes
that map them, so the sum counts them once). Linux only (reads ``/proc``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

__all__ = ["Measured", "run_measured", "total_memory_gb"]


@dataclass
class Measured:
    returncode: int | None  # None when the command was stopped at a cap
    wall_s: float
    peak_gb: float  # peak of the summed PSS of the command and all its descendants
    driver_peak_gb: float  # peak RSS of the command's own process
    processes: int  # most processes seen in the tree at once
    stopped: str = ""  # "" or why it was stopped: "time cap 300 s", "memory cap 18.0 GB"


def total_memory_gb() -> float:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 1e6


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name field may hold spaces
        children.setdefault(ppid, []).append(int(name))
    return children


def _tree(root: int) -> list[int]:
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _kb(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def run_measured(cmd: list[str], log_path: str, timeout_s: float | None = None, memory_cap_gb: float | None = None,
                 interval: float = 0.25, env: dict | None = None) -> Measured:
    """Run ``cmd`` (output to ``log_path``), sampling its process tree until it exits.

    Stops the whole tree (it runs in its own process group) at ``timeout_s`` seconds
    or when the tree's memory passes ``memory_cap_gb``; ``Measured.stopped`` says which.
    """
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
        peak = driver_peak = 0.0
        most, stopped = 0, ""
        while proc.poll() is None:
            pids = _tree(proc.pid)
            most = max(most, len(pids))
            total = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) / 1e6
            peak = max(peak, total)
            driver_peak = max(driver_peak, _kb(f"/proc/{proc.pid}/status", "VmRSS:") / 1e6)
            elapsed = time.perf_counter() - t0
            if timeout_s is not None and elapsed > timeout_s:
                stopped = f"time cap {timeout_s:.0f} s"
            elif memory_cap_gb is not None and total > memory_cap_gb:
                stopped = f"memory cap {memory_cap_gb:.1f} GB"
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            time.sleep(interval)
        wall = time.perf_counter() - t0
    return Measured(None if stopped else proc.returncode, wall, peak, driver_peak, most, stopped)
