"""What runs inside Ray's worker processes for the executor: a read task's body and the labelling actor.

Kept apart from :mod:`ray_ncut.ray.executor` (the driver side, which imports Ray Train and the
training loops) because a worker imports the module its task's code comes from, and every job
starts fresh workers: a read task here imports ray, numpy and the readers (~0.5 s), where
``ray_ncut.ray.executor`` would cost each worker ~3.7 s of imports (torch, Ray Train) before
its first unit. The labelling actor needs torch for the model, and nothing of Ray Train.
"""

from __future__ import annotations

import pickle

import numpy as np
import ray

from ..data.readers import DataError

__all__ = ["unit_mapper", "UnitAssignActor"]


def unit_mapper(units: list, fn):
    """A Ray Data batch function: ``{"item": unit indices}`` -> ``{"index", "result"}``, each result
    ``fn(units[i], i)`` pickled (or the :class:`DataError` it raised, returned: Ray would wrap it in a
    ``RayTaskError`` whose first line loses the message)."""

    def run(batch: dict) -> dict:
        results = [_or_data_error(fn, units[int(i)], int(i)) for i in batch["item"]]
        return {"index": batch["item"], "result": np.array([pickle.dumps(r) for r in results], dtype=object)}

    return run


def _or_data_error(fn, unit, index):
    try:
        return fn(unit, index)
    except DataError as e:
        return e


class UnitAssignActor:
    """Ray Data callable class: a batch of ``{"id": unit index, "unit": pickled ReadUnit}`` -> one
    pickled UnitResult per unit. The units travel in the batches, not in the constructor: Ray keeps
    large constructor arguments in the object store and logs an ERROR for every restartable actor
    that has them."""

    def __init__(self, model_dir, parts_dir, with_label, sample_rate, seed, drop_invalid):
        from ..assign import ClusterAssigner  # torch: in the actor, never in a read task

        self.assigner = ClusterAssigner(model_dir)
        self.parts_dir = parts_dir
        self.with_label, self.sample_rate, self.seed = with_label, sample_rate, seed
        self.drop_invalid = drop_invalid
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> dict:
        from ..assign import assign_unit

        results = []
        for i, unit in zip(batch["id"], batch["unit"]):
            r = assign_unit(self.assigner, pickle.loads(unit), int(i), self.parts_dir,
                            self.with_label, self.sample_rate, self.seed, drop_invalid=self.drop_invalid)
            r.node = self.node
            results.append(r)
        return {"result": np.array([pickle.dumps(r) for r in results], dtype=object)}
