"""The training loops, as plain functions, and the in-process path that runs them. No Ray.

:func:`head_chunks` and :func:`embedding_chunks` train in chunks of ``every`` steps and
yield after each chunk. The Ray Train worker loops (:mod:`ray_ncut.ray.train`) report and
checkpoint there; :func:`train_in_process` and :func:`embed_in_process` (one worker on the
driver's machine: no Ray Train start, no worker processes) write the same checkpoint state
to files, so ``--resume`` works the same way on both paths and the steps are the same.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from .atomic import write_atomic
from .config import GraphConfig, TrainConfig
from .engine import Constraints, fit_head, make_optimizer, training_batches
from .knn import neighbour_table
from .model import CutHead, HeadConfig, ModelRecord
from .siamese import SiameseConfig, new_siamese, siamese_steps

__all__ = ["TrainJob", "TrainState", "head_chunks", "embedding_chunks", "train_in_process", "embed_in_process",
           "describe_step", "latest_checkpoint", "IN_PROCESS_DIR"]

IN_PROCESS_DIR = "in_process"  # under the run's checkpoint folder: the in-process path's checkpoints
_KEEP = 2  # checkpoints kept per run


@dataclass
class TrainJob:
    """Everything a training run needs besides the data; the training job builds one."""

    head: HeadConfig
    graph: GraphConfig
    train: TrainConfig
    seed: int
    workers: int
    gpus_per_worker: float
    checkpoint_every: int
    storage_path: str  # checkpoints go under it
    run_name: str = "train"
    max_failures: int = 2
    record: ModelRecord | None = None  # the run's configuration and input, stored in every checkpoint

    def checkpoint_record(self) -> dict:
        """What every checkpoint of the run records: its configuration, the head's shape, the
        working configs and the seed (the same on the Ray Train and the in-process path)."""
        record = replace(self.record or ModelRecord(), graph=self.graph, train=self.train, seed=self.seed)
        return {**record.to_dict(), "head": self.head.to_dict()}


@dataclass
class TrainState:
    """One training run's state: what every checkpoint holds, on the Ray Train and the in-process
    path alike, and what a finished run hands back (the head's or the Siamese network's).

    Saved as a plain dict (:meth:`to_dict`, the fields that are set) so a checkpoint reads with
    ``torch.load`` alone; the embedding's checkpoints hold only ``model``, ``opt`` and ``step``.
    """

    model: dict  # the network's state dict
    step: int  # steps done
    opt: dict | None = None
    sched: dict | None = None
    curve: list = field(default_factory=list)  # the head's loss terms per step (:func:`fit_head`)
    resumed_from: int = 0  # the step this attempt started at
    loop_seconds: float = 0.0  # rank 0's time in the training loop during this attempt
    nodes: list = field(default_factory=list)  # where this attempt's workers ran
    record: dict | None = None  # TrainJob.checkpoint_record(): what --resume checks flags against

    def to_dict(self) -> dict:
        # not dataclasses.asdict: that deep-copies every tensor of the state dicts
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None and getattr(self, f.name) != []}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def save(self, path: str) -> None:
        write_atomic(path, lambda f: torch.save(self.to_dict(), f))

    @classmethod
    def load(cls, path: str) -> "TrainState":
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=False))


def head_chunks(model, opt, sched, X: torch.Tensor, Z: torch.Tensor | None, neighbours: torch.Tensor | None,
                graph: GraphConfig, train: TrainConfig, constraints: Constraints | None, seed: int, rank: int,
                start: int, every: int):
    """Train the head from step ``start`` to ``train.steps``; yields ``(step, terms, seconds)``
    after every ``every`` steps. Each rank and each resume draws its own batches, reproducibly."""
    gen = torch.Generator().manual_seed(seed + 7919 * rank + start)
    for chunk_start in range(start, train.steps, every):
        n = min(every, train.steps - chunk_start)
        t0 = time.perf_counter()
        batches = training_batches(X, train, n, gen, Z, neighbours)
        terms = fit_head(model, batches, graph, train, chunk_start, opt, sched, constraints=constraints, generator=gen)
        yield chunk_start + n, terms, time.perf_counter() - t0


def embedding_chunks(model, opt, X: torch.Tensor, neighbours: torch.Tensor, config: SiameseConfig, seed: int,
                     rank: int, world: int, start: int, every: int):
    """Train the Siamese embedding from step ``start``; yields ``(step, loss)`` every ``every`` steps."""
    gen = torch.Generator().manual_seed(seed + 7919 * rank + start)
    per_worker = max(1, config.batch_size // world)
    for chunk_start in range(start, config.steps, every):
        n = min(every, config.steps - chunk_start)
        yield chunk_start + n, siamese_steps(model, opt, X, neighbours, config, n, gen, per_worker)


def describe_step(step: int, steps: int, last: dict, rate: float) -> str:
    return (f"[ray_ncut] step {step}/{steps} loss {last['loss']:.4f} cut {last['cut']:.4f} "
            f"orth {last['orth']:.4f} ({rate:.1f} steps/s)")


# --------------------------------------------------------------------------- in process


def latest_checkpoint(folder: str) -> str | None:
    found = sorted(glob.glob(os.path.join(folder, "checkpoint_*.pt")))
    return found[-1] if found else None


def _save(folder: str, state: TrainState) -> None:
    os.makedirs(folder, exist_ok=True)
    state.save(os.path.join(folder, f"checkpoint_{state.step:09d}.pt"))
    for old in sorted(glob.glob(os.path.join(folder, "checkpoint_*.pt")))[:-_KEEP]:
        os.remove(old)


def train_in_process(job: TrainJob, X_scaled: np.ndarray, init_state: dict, Z: np.ndarray | None = None,
                     constraints: dict | None = None, progress=print) -> TrainState:
    """Train the head in this process (one worker, CPU); returns what ``run_training`` returns.

    Checkpoints (the same state a Ray Train checkpoint holds) go to
    ``job.storage_path/in_process/train/`` every ``job.checkpoint_every`` steps; a run that
    finds one there continues from it.
    """
    folder = os.path.join(job.storage_path, IN_PROCESS_DIR, job.run_name)
    X = torch.from_numpy(np.ascontiguousarray(X_scaled, dtype=np.float32))
    Zt = None if Z is None else torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
    neighbours = torch.from_numpy(neighbour_table(X_scaled, job.graph.n_neighbors)) if job.train.batch_neighbors else None
    pairs = None if not constraints else Constraints(*(torch.tensor(constraints[k]) for k in
                                                        ("X", "first", "second", "similar")))
    head = CutHead(job.head)
    opt, sched = make_optimizer(head, job.train)
    start, curve, path = 0, [], latest_checkpoint(folder)
    if path:
        state = TrainState.load(path)
        head.load_state_dict(state.model)
        opt.load_state_dict(state.opt)
        sched.load_state_dict(state.sched)
        start, curve = state.step, state.curve
        progress(f"[ray_ncut] resuming from step {start}")
    else:
        head.load_state_dict(init_state)
    loop_seconds = 0.0
    for step, terms, seconds in head_chunks(head, opt, sched, X, Zt, neighbours, job.graph, job.train, pairs,
                                            job.seed, 0, start, job.checkpoint_every):
        loop_seconds += seconds
        curve += terms
        progress(describe_step(step, job.train.steps, terms[-1], len(terms) / seconds))
        _save(folder, TrainState(head.state_dict(), step, opt.state_dict(), sched.state_dict(), curve, start,
                                 loop_seconds, ["this machine"], job.checkpoint_record()))
    return TrainState(head.state_dict(), max(start, job.train.steps), curve=curve, resumed_from=start,
                      loop_seconds=loop_seconds, nodes=["this machine"])


def embed_in_process(job: TrainJob, X_scaled: np.ndarray, neighbours: np.ndarray, config: SiameseConfig,
                     progress=print) -> dict:
    """Train the Siamese embedding in this process; returns the network's state dict."""
    folder = os.path.join(job.storage_path, IN_PROCESS_DIR, "embedding")
    X = torch.from_numpy(np.ascontiguousarray(X_scaled, dtype=np.float32))
    table = torch.from_numpy(np.ascontiguousarray(neighbours[:, : config.n_neighbors], dtype=np.int64))
    net, opt = new_siamese(X.shape[1], config, job.seed)
    start, path = 0, latest_checkpoint(folder)
    if path:
        state = TrainState.load(path)
        net.load_state_dict(state.model)
        opt.load_state_dict(state.opt)
        start = state.step
        progress(f"[ray_ncut] resuming the embedding from step {start}")
    for step, loss in embedding_chunks(net, opt, X, table, config, job.seed, 0, 1, start,
                                       max(job.checkpoint_every, 250)):
        progress(f"[ray_ncut] embedding step {step}/{config.steps} contrastive loss {loss:.4f}")
        _save(folder, TrainState(net.state_dict(), step, opt.state_dict()))
    return net.state_dict()
