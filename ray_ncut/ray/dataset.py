"""Joining or starting Ray for a job: the one place a job's Ray connection is made and undone."""

from __future__ import annotations

import logging
import os
import signal
import threading

import ray

from ..cli import stop_on_sigterm

__all__ = ["init_ray", "connected_by_job", "disconnect", "clusters_on_this_machine", "TASK_CPUS"]

# Ray Data read/map tasks ask for half a CPU: on a 2-CPU laptop whole-CPU requests
# by actors and train workers starve the read tasks and the job hangs silently.
TASK_CPUS = 0.5


_CONNECTED_HERE = False  # whether init_ray made this process's Ray connection


def connected_by_job() -> bool:
    return _CONNECTED_HERE and ray.is_initialized()


def disconnect() -> None:
    """Undo :func:`init_ray`: disconnect, stopping an embedded cluster it started."""
    global _CONNECTED_HERE
    _CONNECTED_HERE = False
    ray.shutdown()


def init_ray() -> None:
    """Connect to the cluster named by RAY_ADDRESS (as inside ``ray job submit``), else to
    the one Ray cluster running on this machine, else start an embedded local one (also
    when a cluster that died without ``ray stop`` left its address behind).

    Where several clusters run on this machine and RAY_ADDRESS names none, Ray 2.60 would
    connect to whichever started last (maybe someone else's, with other credentials);
    the job starts its own embedded cluster instead, and says so.
    """
    global _CONNECTED_HERE
    # ray_ncut prints its own progress; Ray Data's per-operator INFO lines drown it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    _CONNECTED_HERE = True
    running = None if os.environ.get("RAY_ADDRESS") else clusters_on_this_machine()
    if running is not None and running > 1:
        print("[ray_ncut] several Ray clusters run on this machine and RAY_ADDRESS names none: "
              "starting an embedded one for this job", flush=True)
        _init_embedded_beside_others()
        how = "started an embedded Ray cluster"
    elif running == 0:
        # Not ray.init(): it would try the address a dead cluster left in Ray's temp folder
        # (ray_current_cluster, removed only by `ray stop`) for minutes before giving up.
        _init_shielded(address="local")
        how = "started an embedded Ray cluster"
    else:
        _init_shielded()
        named = "named by RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "running on this machine"
        how = f"joined the Ray cluster {named}"
    stop_on_sigterm()  # again: ray.init installed Ray's own SIGTERM handler
    # ray_ncut prints a progress line per stage; Ray Data's bars would interleave with it (and,
    # without tqdm, log "tqdm is not installed" in the middle of the job's lines).
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"[ray_ncut] {how} at {_describe_cluster()}", flush=True)


def _describe_cluster() -> str:
    """``ADDRESS (N node(s), C CPUs, G GPUs)`` of the connected cluster."""
    res = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    gpus = f", {res['GPU']:g} GPUs" if res.get("GPU") else ""
    return f"{ray.get_runtime_context().gcs_address} ({nodes} node(s), {res.get('CPU', 0):g} CPUs{gpus})"


# A job that would start its own Ray cluster on this machine only to run one CPU worker over at
# most this many feature values (rows x features: 400 MB of float32) works in its own process
def _init_embedded_beside_others() -> None:
    """Start an embedded cluster on a GCS port chosen here, with RAY_ADDRESS naming it.

    Ray Train's internal actors look their cluster up from RAY_ADDRESS, else by scanning
    the machine; with several clusters the scan picks the newest (another) and they log
    tracebacks. The cluster's processes inherit this environment, so they find their own.
    """
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by the node ray.init starts
    try:
        _init_shielded(address="local")  # "local" starts a cluster whatever RAY_ADDRESS says
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def clusters_on_this_machine() -> int:
    """How many Ray clusters run on this machine: Ray's own scan of its processes (starts nothing)."""
    from ray._private.services import find_gcs_addresses  # what ray.init itself consults

    return len(find_gcs_addresses())


def _init_shielded(**kwargs) -> None:
    """``ray.init`` with SIGINT ignored while it starts processes, which inherit that.

    Ctrl-C in a terminal signals the whole foreground process group. Without this, the
    processes of an embedded cluster (GCS, raylet, workers) would take it too and die in
    any order, each printing its own traceback; with it, only the job sees Ctrl-C, says
    what it kept, and then stops its cluster in order (``ray.shutdown``).
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _on_main_thread() else None
    try:
        ray.init(logging_level=logging.WARNING, log_to_driver=True, **kwargs)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


