"""The Ray executor: what a job asks of Ray (:class:`ray_ncut.pipeline.executor.Executor`).

Read units are mapped by Ray Data tasks, labelled by a Ray Data actor pool (each actor loads
the model once, on a GPU when the cluster has them), and the head and the Siamese embedding
are trained by Ray Train, except one CPU worker on a one-machine cluster, which trains in the
job's process (:func:`ray_ncut.ray.train.in_process`).
"""

from __future__ import annotations

import gc
import pickle
import sys
import time
import traceback

import ray

from ..cli import PROGRESS_SECONDS
from ..data.readers import DataError
from ..loops import TrainJob, TrainState, embed_in_process, train_in_process
from .dataset import TASK_CPUS, connected_by_job, disconnect, init_ray
from .tasks import UnitAssignActor, unit_mapper

__all__ = ["RayExecutor", "UnitAssignActor", "pool_resources", "ACTORS_PER_GPU"]

# Actors sharing one GPU: each reads (and decodes) its own units on the CPU, so
# several per GPU keep the GPU fed while the others read.
ACTORS_PER_GPU = 4


class RayExecutor:
    """Joins or starts Ray as it is made (:func:`ray_ncut.ray.dataset.init_ray`)."""

    on_ray = True

    def __init__(self):
        init_ray()

    def map_units(self, units: list, fn, indices=None, progress=None, doing: str = "read") -> list:
        """One Ray Data task per unit, on whichever node has room; results pickled back to the driver.
        With ``progress``, a line every few seconds says how many units are ``doing``-ne."""
        indices = list(range(len(units))) if indices is None else list(indices)

        ds = ray.data.from_items(indices, override_num_blocks=max(1, len(indices)))
        by_unit, t0, last = {}, time.perf_counter(), 0.0
        for row in ds.map_batches(unit_mapper(units, fn), batch_size=1, num_cpus=TASK_CPUS).iter_rows():
            result = pickle.loads(row["result"])
            if isinstance(result, DataError):  # raised on the driver with its own line, not as a RayTaskError
                raise result
            by_unit[int(row["index"])] = result
            now = time.perf_counter() - t0
            if progress and (now - last > PROGRESS_SECONDS or len(by_unit) == len(indices)):
                progress(f"[ray_ncut] {doing} {len(by_unit)}/{len(indices)} read units ({now:.0f}s)")
                last = now
        return [by_unit[i] for i in indices]

    def label_units(self, units: list, todo: list[int], args: tuple, actors: int | None):
        size, per_actor = pool_resources(len(todo), actors)
        return _labelled_on_ray(units, todo, args, size, per_actor), f"with {size} actor(s)"

    def plan_training(self, workers: int | None, gpus_per_worker: float | None) -> tuple[int, float]:
        """One worker per GPU, else one per node; a GPU per worker where the cluster has one for each."""
        workers = workers or _ray_train().default_workers()
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) >= workers else 0.0
        return workers, gpus_per_worker

    def trains_here(self, job: TrainJob) -> bool:
        return _ray_train().in_process(job.workers, job.gpus_per_worker)

    # One CPU worker on a one-machine cluster trains in the job's process, with LocalExecutor's
    # loops (ray_ncut.loops; not LocalExecutor itself: pipeline/ imports this module).

    def train_embedding(self, job: TrainJob, X_scaled, neighbours, siamese, progress) -> dict:
        if self.trains_here(job):
            return embed_in_process(job, X_scaled, neighbours, siamese, progress)
        return _ray_train().run_embedding_training(job, X_scaled, neighbours, siamese)

    def train_head(self, job: TrainJob, X_scaled, init_state: dict, Z, constraints, progress) -> TrainState:
        if self.trains_here(job):
            return train_in_process(job, X_scaled, init_state, Z=Z, constraints=constraints, progress=progress)
        return _ray_train().run_training(job, X_scaled, init_state, Z=Z, constraints=constraints)

    def interrupted(self) -> None:
        # Called in the job's `except KeyboardInterrupt` block. The interrupted stack's frames
        # hold Ray Data's iterator when Ctrl-C landed between its steps; left to the exception's
        # lifetime it would shut its executor down after the disconnect below, reconnect to
        # Ray to cancel its tasks and print a traceback. Released here, it shuts down now.
        stopped = sys.exc_info()[2]
        if stopped is not None:
            traceback.clear_frames(stopped)
        gc.collect()
        if connected_by_job():  # stop this job's actors: one still writing a part would keep the folder
            disconnect()


def _ray_train():
    """:mod:`ray_ncut.ray.train`, imported once a job trains: a labelling job's driver skips Ray
    Train's imports (~0.8 s)."""
    from . import train

    return train


def pool_resources(n_units: int, actors: int | None) -> tuple[int, dict]:
    """Actor-pool size and per-actor resources: ``ACTORS_PER_GPU`` actors per GPU where the
    cluster has GPUs; otherwise one per CPU, each asking for half a CPU so that small
    clusters keep room for the driver and Ray's own tasks (whole-CPU actors deadlock a
    2-CPU laptop)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        size, per_actor = gpus * ACTORS_PER_GPU, {"num_gpus": 1 / ACTORS_PER_GPU, "num_cpus": TASK_CPUS}
    else:
        size, per_actor = max(1, int(res.get("CPU", 1))), {"num_cpus": TASK_CPUS}
    size = actors or size
    return max(1, min(size, n_units)), per_actor


def _labelled_on_ray(units: list, todo: list[int], args: tuple, size: int, per_actor: dict):
    """UnitResults of the units ``todo`` (indices into ``units``), from a Ray Data pool of ``size``
    labelling actors."""
    # The unit indices are made on the driver (no read tasks competing with the actors for
    # CPUs), and the pool may shrink: after a node is lost the job goes on with the actors
    # that fit on the nodes left instead of waiting for the lost capacity.
    items = ray.data.from_items([{"id": i, "unit": pickle.dumps(units[i])} for i in todo], override_num_blocks=len(todo))
    ds = items.map_batches(UnitAssignActor, fn_constructor_args=args, batch_size=1,
                           compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size, initial_size=size),
                           **per_actor)
    rows = iter(ds.iter_rows())
    try:
        for row in rows:
            yield pickle.loads(row["result"])
    finally:
        # Shut Ray Data's executor down here: left to garbage collection it would do so
        # after ray.shutdown() and print a traceback (the interrupted-job path).
        rows.close()
        gc.collect()

