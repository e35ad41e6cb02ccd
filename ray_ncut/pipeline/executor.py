"""Where a job's work runs, chosen once: :class:`LocalExecutor` (this process) or the Ray executor.

A job asks an executor for four things and nothing else: map a function over read units
(the scan, the id check), label read units, and train the Siamese embedding and the cut head.
:class:`LocalExecutor` does each with a plain loop in the job's process and never imports
ray; :class:`ray_ncut.ray.executor.RayExecutor` does them with Ray Data tasks, an actor pool
and Ray Train. :func:`open_executor` picks one from ``--engine`` and the data's size.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Protocol

from ..assign import ClusterAssigner, UnitResult, assign_unit
from ..loops import TrainJob, TrainState, embed_in_process, train_in_process

__all__ = ["Executor", "LocalExecutor", "LabelArgs", "open_executor", "wants_ray", "ENGINES", "IN_PROCESS_VALUES"]

# A job that would start its own Ray cluster on this machine only to run one CPU worker over at
# most this many feature values (rows x features: 400 MB of float32) works in its own process
# instead: Ray's start and its tasks' and actors' start-ups cost more than such work (digits:
# 9 s of 39; docs/scale.md). Fashion-MNIST (55M values) is under it, 10M x 64 rows is over.
IN_PROCESS_VALUES = 100_000_000
ENGINES = ("auto", "ray", "local")

# What a labelling worker needs besides its units: (model directory, parts folder, with_label,
# sample_rate, seed, drop_invalid), the arguments of ray_ncut.assign.assign_unit.
LabelArgs = tuple


class Executor(Protocol):
    on_ray: bool

    def map_units(self, units: list, fn: Callable, indices=None, progress=None, doing: str = "read") -> list:
        """``[fn(units[i], i) for i in indices]`` (all units by default), in that order; ``fn``'s
        results should be small (sums, hashes, a sample), never a unit's rows."""

    def label_units(self, units: list, todo: list[int], args: LabelArgs, actors: int | None
                    ) -> tuple[Iterator[UnitResult], str]:
        """A stream of the units ``todo``'s UnitResults (any order; a unit may come twice after a
        retry), and how they are labelled, for the progress line. Closing the stream stops the work."""

    def plan_training(self, workers: int | None, gpus_per_worker: float | None) -> tuple[int, float]:
        """``(workers, gpus_per_worker)`` with the defaults resolved."""

    def trains_here(self, job: TrainJob) -> bool:
        """Whether ``job`` trains in this process (loops.*_in_process) rather than with Ray Train."""

    def train_embedding(self, job: TrainJob, X_scaled, neighbours, siamese, progress) -> dict:
        """The Siamese network's state dict, trained on the scaled sample."""

    def train_head(self, job: TrainJob, X_scaled, init_state: dict, Z, constraints, progress) -> TrainState:
        """The trained head's final state (its weights, loss curve, where it resumed, ...)."""

    def interrupted(self) -> None:
        """Ctrl-C: stop what this job started (a labelling actor still writing would keep the folder)."""


class LocalExecutor:
    """Every stage in this process, one after the other: no Ray, no worker processes."""

    on_ray = False

    def map_units(self, units: list, fn: Callable, indices=None, progress=None, doing: str = "read") -> list:
        indices = range(len(units)) if indices is None else indices
        return [fn(units[i], i) for i in indices]

    def label_units(self, units: list, todo: list[int], args: LabelArgs, actors: int | None
                    ) -> tuple[Iterator[UnitResult], str]:
        return _labelled_here(units, todo, args), "in this process"

    def plan_training(self, workers: int | None, gpus_per_worker: float | None) -> tuple[int, float]:
        return workers or 1, gpus_per_worker or 0.0

    def trains_here(self, job: TrainJob) -> bool:
        return True

    def train_embedding(self, job: TrainJob, X_scaled, neighbours, siamese, progress) -> dict:
        return embed_in_process(job, X_scaled, neighbours, siamese, progress)

    def train_head(self, job: TrainJob, X_scaled, init_state: dict, Z, constraints, progress) -> TrainState:
        return train_in_process(job, X_scaled, init_state, Z=Z, constraints=constraints, progress=progress)

    def interrupted(self) -> None:
        pass


def _labelled_here(units: list, todo: list[int], args: LabelArgs) -> Iterator[UnitResult]:
    model, parts, with_label, sample_rate, seed, drop_invalid = args
    assigner = ClusterAssigner(model)
    for i in todo:
        r = assign_unit(assigner, units[i], i, parts, with_label, sample_rate, seed, drop_invalid=drop_invalid)
        r.node = "this process"
        yield r


def open_executor(engine: str, values: int, one_worker: bool, progress=None) -> Executor:
    """The executor for a job over ``values`` feature values (rows x features); joins or starts Ray
    where the job runs there (:func:`wants_ray`)."""
    if wants_ray(engine, values, one_worker):
        from ..ray.executor import RayExecutor  # imported only here: a local job never imports ray

        return RayExecutor()
    if progress:
        progress("[ray_ncut] small data on this machine: working in this process (no Ray cluster started)")
    return LocalExecutor()


def wants_ray(engine: str, values: int, one_worker: bool) -> bool:
    """``engine``: ``"ray"``, ``"local"``, or ``"auto"``: Ray wherever a cluster is named or already
    joined or running on this machine, more than one worker is asked for, a GPU is present or the
    data holds more than :data:`IN_PROCESS_VALUES` values; this process otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"--engine should be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "local" and not one_worker:
        raise ValueError("--engine local works in this process with one CPU worker: drop --workers, "
                         "--gpus-per-worker and --actors, or use --engine ray")
    if engine != "auto":
        return engine == "ray"
    if _ray_connected() or os.environ.get("RAY_ADDRESS"):  # a cluster was named or joined: use it
        return True
    if not one_worker or values > IN_PROCESS_VALUES:
        return True
    import torch

    if torch.cuda.is_available():
        return True
    from ..ray.dataset import clusters_on_this_machine  # Ray's own process scan (ray is imported, not started)

    return clusters_on_this_machine() > 0


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")  # not imported: not connected either
    return ray is not None and ray.is_initialized()
