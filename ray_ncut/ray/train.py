"""Data-parallel training of the cut head with Ray Train (V2 API of Ray 2.60).

The driver scans the data (scaling statistics, training sample), runs the spectral
warm start on the sample, and hands the scaled sample to ``TorchTrainer``. Each
worker draws minibatch subgraphs from its shard of the sample and runs the plain
:func:`ray_ncut.loops.head_chunks` (around :func:`ray_ncut.engine.fit_head`); DDP averages
the gradients. One CPU worker on a one-machine cluster trains in the driver's process
instead (:func:`in_process`, :mod:`ray_ncut.loops`). Rank 0 checkpoints
every ``checkpoint_every`` steps; every rank calls ``ray.train.report`` (a barrier).

When the affinity is learned, a first ``TorchTrainer`` run trains the Siamese
embedding the same way (:func:`run_embedding_training`, around the plain
:func:`ray_ncut.siamese.siamese_steps`) before the driver's warm start.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading

import numpy as np
import ray
import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer

from ..config import GraphConfig, TrainConfig
from ..engine import Constraints, make_optimizer
from ..knn import neighbour_table
from ..loops import TrainJob, TrainState, describe_step, embedding_chunks, head_chunks
from ..model import CutHead, HeadConfig
from ..siamese import SiameseConfig, new_siamese
from ..threads import configure_threads

__all__ = ["TrainJob", "run_training", "run_embedding_training", "worker_resources", "default_workers", "torch_threads",
           "in_process"]

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


def default_workers() -> int:
    """One worker per GPU where the cluster has GPUs; otherwise one per node, using all of
    the node's cores (measured: DDP between CPU workers on one node only adds overhead)."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return gpus or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def in_process(workers: int, gpus_per_worker: float) -> bool:
    """Whether a run trains in the driver's process instead of with Ray Train: one CPU worker on a
    one-machine cluster, where Ray Train's controller and worker only add their start-up (about
    13 s, twice with a learned affinity) and DDP has nothing to average. Ray Train runs everything
    else: several workers, GPUs (which the driver's node may lack), several nodes."""
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    return workers == 1 and gpus_per_worker == 0 and alive == 1


def worker_resources(workers: int, gpus_per_worker: float) -> dict:
    """CPU (and GPU) per train worker, leaving a CPU free for Ray Data on small clusters."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    per_worker = max(0.25, min(1.0, (cpus - 1.0) / workers))
    res = {"CPU": per_worker}
    if gpus_per_worker > 0:
        res["GPU"] = gpus_per_worker
    return res


def torch_threads(workers: int) -> int:
    """Threads per worker: the cluster's cores shared evenly. A worker reserves at most one
    CPU (so that small clusters keep room for Ray Data) but computes with its share."""
    return max(1, int(ray.cluster_resources().get("CPU", 1.0) // workers))


# --------------------------------------------------------------------------- worker side


def _load_shard(sample_ref, rank: int, world: int, device, input_dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This worker's rows of the sample (every ``world``-th row from ``rank``): features
    X (n_shard, d) and, when the affinity is learned, their embedding Z (n_shard, e),
    stored side by side in one array. The sample is small (at most ~100k rows) and sits
    once in the object store; workers on the driver's node read it without a copy."""
    XZ = torch.from_numpy(np.array(ray.get(sample_ref)[rank::world])).to(device)  # a writable copy of the shard
    return XZ[:, :input_dim], (XZ[:, input_dim:] if XZ.shape[1] > input_dim else None)


def _quiet_ray_info() -> None:
    """In a Ray Train worker: drop INFO records (Ray Train logs every report and checkpoint at
    INFO, some under loggers outside ``ray.train``); ray_ncut's progress lines are prints."""
    logging.disable(logging.INFO)


def _progress(message: str) -> None:
    # Ray Train patches print() to log *and* echo, so a plain print shows twice.
    print(message, file=sys.__stdout__, flush=True)


def _constraints(cfg: dict, device) -> Constraints | None:
    c = cfg.get("constraints")
    if not c:
        return None
    return Constraints(*(torch.tensor(c[k]) for k in ("X", "first", "second", "similar"))).to(device)


def _unwrapped(model) -> dict:
    """The state dict of ``model``, without DDP's ``module.`` prefix."""
    return (model.module if hasattr(model, "module") else model).state_dict()


def _checkpoint(state: TrainState) -> Checkpoint:
    """A Ray Train checkpoint holding ``state`` (the file the in-process path writes, in a folder)."""
    tmp = tempfile.mkdtemp(prefix="ray_ncut_ckpt_")
    state.save(os.path.join(tmp, STATE_FILE))
    return Checkpoint.from_directory(tmp)


def _worker_nodes(world: int) -> list[str]:
    """The Ray node ids the run's workers are on (every rank takes part), for the summary."""
    node = ray.get_runtime_context().get_node_id()
    if world == 1 or not torch.distributed.is_initialized():
        return [node]
    every = [None] * world
    torch.distributed.all_gather_object(every, node)
    return sorted(set(every))


def load_state(checkpoint: Checkpoint) -> TrainState:
    with checkpoint.as_directory() as d:
        return TrainState.load(os.path.join(d, STATE_FILE))


def train_loop_per_worker(cfg: dict) -> None:
    """Ray Train worker loop: a thin shell around :func:`fit_head`."""
    _quiet_ray_info()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    configure_threads(cfg["threads"])  # the worker's share of the cores, not its reservation
    device = ray.train.torch.get_device()
    graph, train = GraphConfig.from_dict(cfg["graph"]), TrainConfig.from_dict(cfg["train"])
    X, Z = _load_shard(cfg["sample"][0], rank, ctx.get_world_size(), device, cfg["head"]["input_dim"])
    # Neighbourhood minibatches come from this worker's shard: its own neighbour table.
    neighbours = None
    if train.batch_neighbors:
        neighbours = torch.from_numpy(neighbour_table(X.cpu().numpy(), graph.n_neighbors)).to(device)
    constraints = _constraints(cfg, device)

    head = CutHead(HeadConfig.from_dict(cfg["head"]))
    start, curve = 0, []
    ckpt = ray.train.get_checkpoint()
    state = load_state(ckpt) if ckpt else None
    head.load_state_dict(state.model if state else cfg["init_state"])
    model = ray.train.torch.prepare_model(head)  # DDP (when world > 1) on the worker's device
    nodes = _worker_nodes(ctx.get_world_size())
    opt, sched = make_optimizer(model, train)
    if state:
        opt.load_state_dict(state.opt)
        sched.load_state_dict(state.sched)
        start, curve = state.step, state.curve
        if rank == 0:
            _progress(f"[ray_ncut] resuming from step {start}")

    every = cfg["checkpoint_every"]
    loop_seconds = 0.0  # time inside fit_head since this attempt started
    for step, terms, seconds in head_chunks(model, opt, sched, X, Z, neighbours, graph, train, constraints,
                                            cfg["seed"], rank, start, every):
        loop_seconds += seconds
        curve += terms
        last = terms[-1]
        metrics = {"step": step, "loss": last["loss"], "cut": last["cut"], "orth": last["orth"],
                   "steps_per_s": len(terms) / seconds}
        if rank == 0:
            _progress(describe_step(step, train.steps, last, metrics["steps_per_s"]))
            state = TrainState(_unwrapped(model), step, opt.state_dict(), sched.state_dict(), curve, start,
                               loop_seconds, nodes, cfg["record"])
            ray.train.report(metrics, checkpoint=_checkpoint(state))
        else:
            ray.train.report(metrics, checkpoint=None)


def embedding_loop_per_worker(cfg: dict) -> None:
    """Ray Train worker loop for the Siamese embedding: a thin shell around :func:`siamese_steps`.

    Every worker holds the whole sample and its neighbour table (positives may be any
    row) and draws its own anchors; DDP averages the gradients, so the global batch is
    the configured one. With one worker it repeats the in-memory training step for step.
    """
    _quiet_ray_info()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    configure_threads(cfg["threads"])
    device = ray.train.torch.get_device()
    config = SiameseConfig(**cfg["siamese"])
    X = torch.from_numpy(np.array(ray.get(cfg["sample"][0]))).to(device)  # (n, d)
    neighbours = torch.from_numpy(np.array(ray.get(cfg["neighbours"][0]))).to(device)  # (n, s)
    net, opt = new_siamese(X.shape[1], config, cfg["seed"], device)
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        state = load_state(ckpt)
        net.load_state_dict(state.model)
        opt.load_state_dict(state.opt)
        start = state.step
        if rank == 0:
            _progress(f"[ray_ncut] resuming the embedding from step {start}")
    model = ray.train.torch.prepare_model(net)
    for step, loss in embedding_chunks(model, opt, X, neighbours, config, cfg["seed"], rank, world, start,
                                       cfg["checkpoint_every"]):
        if rank == 0:
            _progress(f"[ray_ncut] embedding step {step}/{config.steps} contrastive loss {loss:.4f}")
        state = TrainState(_unwrapped(model), step, opt.state_dict()) if rank == 0 else None
        ray.train.report({"step": step, "loss": loss}, checkpoint=_checkpoint(state) if state else None)
    if start >= config.steps:  # resumed after the last step: hand the finished state back
        state = TrainState(_unwrapped(model), start, opt.state_dict()) if rank == 0 else None
        ray.train.report({"step": start}, checkpoint=_checkpoint(state) if state else None)


# --------------------------------------------------------------------------- driver side


def run_training(job: TrainJob, X_scaled: np.ndarray, init_state: dict, Z: np.ndarray | None = None,
                 constraints: dict | None = None) -> TrainState:
    """Train on the scaled sample X (m, d) with ``job.workers`` Ray Train workers.

    ``Z`` (m, e) is the learned embedding the affinities use, if any; ``constraints``
    holds the KCL pairs as numpy arrays ``X, first, second, similar`` (every worker
    gets all of them).

    Returns the final checkpoint's :class:`ray_ncut.loops.TrainState` (its ``nodes``: the Ray
    node ids of the last attempt's workers); re-running with the same storage path and run name resumes from the
    latest checkpoint, and so does a retry after a worker failure.
    """
    cfg = {
        "head": job.head.to_dict(),
        "graph": job.graph.to_dict(),
        "train": job.train.to_dict(),
        "seed": job.seed,
        "checkpoint_every": job.checkpoint_every,
        "threads": torch_threads(job.workers),
        "init_state": init_state,
        # In a list, so that Ray passes the reference itself rather than resolving it.
        "sample": [ray.put(np.ascontiguousarray(X_scaled if Z is None else np.hstack([X_scaled, Z]), dtype=np.float32))],
        "constraints": constraints,
        "record": job.checkpoint_record(),
    }
    return _run(train_loop_per_worker, cfg, job, job.run_name)


def run_embedding_training(job: TrainJob, X_scaled: np.ndarray, neighbours: np.ndarray, config: SiameseConfig) -> dict:
    """Train the Siamese embedding on the scaled sample X (m, d) with ``job.workers`` Ray
    Train workers; ``neighbours`` (m, s) is the sample's neighbour table. Returns the
    network's state dict (a :func:`ray_ncut.siamese.new_siamese` network). Its checkpoints
    sit beside the head's under the run name ``embedding``, so ``--resume`` continues it too.
    """
    cfg = {
        "siamese": config.to_dict(),
        "seed": job.seed,
        "checkpoint_every": max(job.checkpoint_every, 250),
        "threads": torch_threads(job.workers),
        "sample": [ray.put(np.ascontiguousarray(X_scaled, dtype=np.float32))],
        "neighbours": [ray.put(np.ascontiguousarray(neighbours[:, : config.n_neighbors], dtype=np.int64))],
    }
    return _run(embedding_loop_per_worker, cfg, job, "embedding").model


def _run(loop, cfg: dict, job: TrainJob, run_name: str) -> TrainState:
    """One ``TorchTrainer`` run of ``loop``; returns its final checkpoint's state."""
    trainer = TorchTrainer(
        loop,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(
            num_workers=job.workers,
            use_gpu=job.gpus_per_worker > 0,
            resources_per_worker=worker_resources(job.workers, job.gpus_per_worker),
            # CPU workers are one per node by default (default_workers): spread them over the nodes
            placement_strategy="PACK" if job.gpus_per_worker > 0 else "SPREAD",
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=job.storage_path,
            failure_config=FailureConfig(max_failures=job.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # ray_ncut prints its own progress; Ray Train's INFO lines (worker group, checkpoint
            # and report notices) stay in the session's log files
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    result = _fit_off_the_main_thread(trainer)
    return load_state(result.checkpoint)


def _fit_off_the_main_thread(trainer: TorchTrainer):
    """``trainer.fit()`` in a helper thread, so that Ctrl-C reaches the job.

    On the main thread, Ray Train 2.60 installs its own SIGINT handler, which aborts the
    run and exits the process (status 0 or 1) without a word about what was kept. Off
    it, Ray installs none: Ctrl-C raises KeyboardInterrupt here, the job says what it
    kept, and disconnecting from Ray ends the run (its controller is owned by this driver).
    """
    box: dict = {}

    def fit():
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread as it is
            box["error"] = e

    thread = threading.Thread(target=fit, name="ray_ncut-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["result"]
