"""The training job end to end: ``--data`` -> scan -> warm start -> training -> run directory. No Ray:
every pass over the data and every training run goes through one executor (:mod:`.executor`).

Run directory (``--out``)::

    RUN_DIR/
      model.pt, config.json   the model, in the format NeuralCut.load reads
      curve.csv               loss terms per step (step, loss, cut, orth)
      summary.json            data, rows, steps, time, final loss, workers, devices
      reference.npy           2,000 raw training rows: the next recluster's shared sample
      recluster.json          with --previous: ids kept / new / vanished, churn, cut before and after
      ray_train/              Ray Train's checkpoints
      _RAY_NCUT.json          the ownership marker (:mod:`ray_ncut.outputs`)

The run works in a staging folder beside it, ``.RUN_DIR.training/``, and publishes
like labelling does: the previous model stays intact and loadable until the new one
is complete and validated, then the two are swapped. An interrupted run keeps its
staging folder; ``--resume`` continues it from its last checkpoint.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch

from ..atomic import write_atomic, write_json_atomic
from ..choose_k import check_k_range
from ..config import ClusterConfig, GraphConfig, TrainConfig
from ..constraints import read_constraints
from ..data.readers import ColumnSpec, columns_for_model
from ..knn import neighbour_table
from ..loops import IN_PROCESS_DIR, TrainJob, latest_checkpoint
from ..metrics import accuracy, ari, nmi
from ..model import ClusterModel, CutHead, HeadConfig, ModelRecord
from ..outputs import Interrupted, Output, OutputError, absolute, open_output
from ..outputs.local import claim_staging, is_marked, make_staging, remove_ours, running_owner, seal
from ..prepare import prepare_training, resolve_affinity
from ..recluster import carry_ids, fit_of, read_reference, reference_sample
from ..recluster import describe as describe_recluster
from ..scaling import FeatureScaler
from ..siamese import SiameseConfig, embed, new_siamese, reading_features, siamese_inputs
from .executor import Executor, open_executor
from .scan import collect_rows, describe_columns, open_feature_set, scan_statistics

__all__ = ["TrainOptions", "train_run", "default_sample_rows"]

SUMMARY_FILE = "summary.json"
RECLUSTER_FILE = "recluster.json"
PREPARED_FILE = "prepared.pt"  # in the staging folder only: what --resume reuses
RAY_DIR = "ray_train"
MIN_ROWS_PER_CLUSTER = 10  # below this many rows a cluster on average, --k is probably a mistake: say so
KIND = "model"  # the ownership marker's kind for a model directory


def default_sample_rows(n_rows: int) -> int:
    """Training sample: all rows up to 100k; beyond that 100k (the head generalises; a
    larger sample costs scan and ingest time, not quality, at minibatch size 1000)."""
    return min(n_rows, 100_000)


@dataclass
class TrainOptions:
    data: str
    out: str
    config: ClusterConfig = field(default_factory=ClusterConfig)  # what the model is: the one configuration
    given: tuple = ()  # the config fields set on the command line: --resume refuses ones that contradict the run
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    constraints: str | None = None  # CSV of id_a,id_b,link pairs for the KCL term
    sample: int | None = None
    seed: int = 0
    workers: int | None = None  # None: one per GPU, else one per node (default_workers)
    gpus_per_worker: float | None = None  # None: use GPUs when the cluster has them
    checkpoint_every: int = 100
    max_failures: int = 2
    resume: bool = False
    overwrite: bool = False
    previous: str | None = None  # recluster: the previous model directory (warm start, stable ids)
    engine: str = "auto"  # "ray", "local" (this process), "auto" (dataset.connect)


def _plan_out(opts: TrainOptions) -> tuple[Output, str]:
    """Validate ``--out`` against ``--resume``/``--overwrite`` without changing anything;
    returns the output and its (local, absolute) staging folder."""
    inputs = (opts.data, opts.constraints, opts.previous)
    output = open_output(opts.out, KIND)
    out = output.check(overwrite=True, inputs=inputs)  # the path is safe and any output there ours
    staging = output.sibling("training")
    interrupted = os.path.lexists(staging)
    if interrupted and not is_marked(staging, KIND):
        raise OutputError(f"{staging} exists and was not written by ray_ncut; move it to train into {out}")
    owner = running_owner(staging) if interrupted else None
    if owner:
        raise OutputError(f"another training run of {out} is in progress (pid {owner['pid']} on {owner['host']}, "
                          f"working in {staging}); wait for it to end or stop it first")
    if opts.resume and not interrupted:
        done = " (the model there is complete; pass --overwrite to train a new one)" if output.exists() else ""
        raise OutputError(f"--resume: no interrupted run of {out} to continue: {staging} is missing{done}")
    if interrupted and not opts.resume and not opts.overwrite:
        raise OutputError(f"an interrupted run of {out} is kept at {staging}: pass --resume to continue it, "
                          "or --overwrite to discard it and start over")
    if not (opts.overwrite or opts.resume):
        output.check(overwrite=False, inputs=inputs)  # refuses an existing model
    return output, staging


def _open_staging(opts: TrainOptions, staging: str, progress) -> None:
    """Called once the input has been read and validated: only then is anything written."""
    if opts.resume:
        claim_staging(staging, KIND)  # a concurrent run now sees this one as running
        return
    if remove_ours(staging, KIND):
        progress(f"[ray_ncut] --overwrite: discarded the interrupted run at {staging}")
    make_staging(staging, KIND)


def _interrupted(stage: str, output: Output, staging: str) -> Interrupted:
    out = output.path
    kept = f"the previous model at {out} is unchanged" if output.exists() else f"nothing was published at {out}"
    if has_checkpoint(staging):
        how = f"its checkpoints are kept at {staging}: re-run the same command with --resume to continue"
    elif os.path.isdir(staging):
        how = f"no checkpoint was written yet; re-run the same command with --resume to start it again in {staging}"
    else:
        how = "re-run the same command to start again"
    return Interrupted(f"interrupted while {stage}; {kept}; {how}")


def has_checkpoint(staging: str) -> bool:
    """Whether an interrupted run left a checkpoint to resume from: one Ray Train has recorded
    (its snapshot file, for the embedding or the head), or one of the in-process path's."""
    recorded = glob.glob(os.path.join(staging, RAY_DIR, "*", "checkpoint_manager_snapshot.json"))
    in_process = (latest_checkpoint(os.path.join(staging, RAY_DIR, IN_PROCESS_DIR, run)) for run in ("embedding", "train"))
    return bool(recorded or any(in_process))


def _check_model(staging: str, X: np.ndarray) -> None:
    """Read the staged model back and label a few raw rows before it is published."""
    proba = ClusterModel.load(staging).predict_proba(X[:256])
    if not np.isfinite(proba).all():
        raise RuntimeError(f"the trained model at {staging} gives non-finite outputs; not publishing")


def _sample_quality(model: ClusterModel, X: np.ndarray, y: np.ndarray | None) -> dict | None:
    """ACC/NMI/ARI of the trained model on the (raw) training sample, where ground truth was read."""
    if y is None:
        return None
    pred = model.assign(X)[1]
    return {"rows": len(y), "acc": accuracy(y, pred), "nmi": nmi(y, pred), "ari": ari(y, pred)}


def _gather_constraints(ex: Executor, fs, pairs, scaler, progress) -> dict | None:
    """Rows named by the constraint pairs, scaled, and the pairs as positions among them."""
    if pairs is None:
        return None
    row_ids, Xc = collect_rows(ex, fs, pairs.ids)
    first, second, similar = pairs.index_into(row_ids)
    progress(f"[ray_ncut] constraints: {len(pairs)} pairs ({int(similar.sum())} must-link) over {len(row_ids)} rows")
    return {"X": scaler.transform(Xc).astype(np.float32), "first": first, "second": second, "similar": similar}


def _train_embedding(ex: Executor, job: TrainJob, X_scaled: np.ndarray, siamese: SiameseConfig, n_clusters: int,
                     choice: dict | None, progress) -> torch.Tensor:
    """The Siamese code (m, e) of the scaled sample for ``n_clusters`` clusters (the largest searched
    when k is chosen), the network trained by the executor."""
    why = f" ({choice['reason']})" if choice else ""
    how = "in this process" if ex.trains_here(job) else f"with Ray Train, {job.workers} worker(s)"
    progress(f"[ray_ncut] learned affinity{why}: training the Siamese embedding {how}, {siamese.steps} steps")
    t0 = time.perf_counter()
    X = torch.from_numpy(np.ascontiguousarray(X_scaled, dtype=np.float32))
    inputs, projection = siamese_inputs(X, siamese, n_clusters)  # (m, d) or (m, p)
    if projection is not None:
        progress(f"[ray_ncut] the embedding reads the sample's first {inputs.shape[1]} principal components "
                 f"of {X.shape[1]} features")
    neighbours = neighbour_table(inputs.numpy(), siamese.n_neighbors)  # (m, s)
    state = ex.train_embedding(job, inputs.numpy(), neighbours, siamese, progress)
    net, _ = new_siamese(inputs.shape[1], siamese, job.seed)
    net.load_state_dict(state)
    Z = embed(reading_features(net, projection), X)
    progress(f"[ray_ncut] embedding trained in {time.perf_counter() - t0:.1f}s")
    return Z


# ---------------------------------------------------------------- the prepared run, kept for --resume


def _resumed_config(opts: TrainOptions, staging: str) -> TrainOptions:
    """With --resume: the interrupted run's own settings, refusing flags that contradict them."""
    path = os.path.join(staging, PREPARED_FILE)
    if not (opts.resume and os.path.isfile(path)):
        return opts
    prepared = PreparedRun.load(path)
    clashes = prepared.config.contradictions(opts.config, opts.given)
    if prepared.data != opts.data:
        clashes.append(f"--data {opts.data} (the run has {prepared.data})")
    if prepared.seed != opts.seed:
        clashes.append(f"--seed {opts.seed} (the run has {prepared.seed})")
    if clashes:
        raise OutputError(f"--resume: {'; '.join(clashes)} contradicts the interrupted run in {staging}: leave "
                          "the flag out to continue it, or pass --overwrite instead to start over")
    return replace(opts, config=prepared.config)


@dataclass
class PreparedRun:
    """Everything before the Ray Train run of the head: saved in the staging folder (``prepared.pt``)
    so that ``--resume`` skips the Siamese training, the gamma search and the warm start."""

    config: ClusterConfig  # what the run was asked for
    data: str
    seed: int
    scaler: FeatureScaler
    head: HeadConfig  # k chosen when --k auto
    graph: GraphConfig  # affinity resolved
    train: TrainConfig  # gamma resolved, sizes raised for k
    auto: dict
    init_state: dict  # the warm-started head's state dict
    Z: np.ndarray | None  # (m, e) the sample's embedding, when the affinity is learned
    warm: str  # what started the head: "spectral", "random", "previous model"
    seconds: float

    _TYPED = {"config": ClusterConfig, "scaler": FeatureScaler, "head": HeadConfig, "graph": GraphConfig,
              "train": TrainConfig}

    def save(self, path: str) -> None:
        blob = {f.name: getattr(self, f.name) for f in fields(self)}  # (asdict would deep-copy the tensors)
        blob.update({name: blob[name].to_dict() for name in self._TYPED})
        write_atomic(path, lambda f: torch.save(blob, f))

    @classmethod
    def load(cls, path: str) -> "PreparedRun":
        blob = torch.load(path, map_location="cpu", weights_only=False)
        return cls(**{**blob, **{name: kind.from_dict(blob[name]) for name, kind in cls._TYPED.items()}})


def _prepare(ex, opts, job, X_scaled, scaler, previous, staging, stage, progress) -> PreparedRun:
    """The embedding, k (auto), gamma (auto) and the warm start; or, resuming, what the run prepared."""
    path = os.path.join(staging, PREPARED_FILE)
    if opts.resume and os.path.isfile(path):
        prepared = PreparedRun.load(path)
        progress(f"[ray_ncut] --resume: the preparation of the interrupted run is reused (k {prepared.head.n_clusters}, "
                 f"gamma {prepared.train.gamma:g}, warm start {prepared.warm})")
        return prepared
    config, t0 = opts.config, time.perf_counter()
    auto_k = config.n_clusters == "auto"
    graph, affinity_choice = resolve_affinity(config.graph(), scaler.mode)
    embedding = None
    if graph.affinity == "siamese":
        stage["now"] = "training the embedding"
        k_most = config.k_range[1] if auto_k else config.n_clusters
        embedding = _train_embedding(ex, replace(job, graph=graph), X_scaled, config.siamese(), k_most, affinity_choice,
                                     progress)
        stage["now"] = "preparing the training"
    head_config = HeadConfig(X_scaled.shape[1], config.k_range[0] if auto_k else config.n_clusters, config.hidden)
    warm_from_previous = previous is not None and previous.head.config == head_config and not auto_k
    train = config.train()
    if warm_from_previous:  # the previous head's weights replace the spectral warm start
        train = replace(train, init="random", distill_steps=0)
    prep = prepare_training(torch.from_numpy(X_scaled), head_config, graph, train, config.gamma, opts.seed,
                            config.siamese(), batch_neighbours=False, embedding=embedding,
                            k_range=config.k_range if auto_k else None)
    if warm_from_previous:
        prep.head.load_state_dict(previous.head.state_dict())
        progress(f"[ray_ncut] recluster: warm start from the previous model {opts.previous}")
    elif previous:
        was, now = previous.head.config, prep.head.config
        progress(f"[ray_ncut] recluster: the head (k={now.n_clusters}, widths {list(now.hidden)}) differs from the "
                 f"previous model's (k={was.n_clusters}, widths {list(was.hidden)}): spectral warm start; "
                 "ids carried by matching")
    if affinity_choice:
        prep.auto["affinity"] = affinity_choice
    if auto_k:
        progress(f"[ray_ncut] --k auto: {prep.auto['k']['reason']}")
    prepared = PreparedRun(
        config=config, data=opts.data, seed=opts.seed, scaler=scaler,
        head=prep.head.config, graph=graph, train=prep.train, auto=prep.auto,
        init_state={k: v.detach().clone() for k, v in prep.head.state_dict().items()},
        Z=None if prep.Z is None else prep.Z.numpy(), warm="previous model" if warm_from_previous else train.init,
        seconds=round(time.perf_counter() - t0, 3))
    prepared.save(path)
    progress(f"[ray_ncut] prepared in {prepared.seconds:.1f}s: {graph.affinity} affinity, "
             f"sigma {prep.auto['sigma']['sigma']:.4g} ({prep.auto['sigma']['mode']}), gamma {prep.train.gamma:g}"
             + (" (auto)" if config.gamma == "auto" else "") + f", warm start {prepared.warm}")
    return prepared


# ---------------------------------------------------------------- the job


def train_run(opts: TrainOptions, progress=print) -> dict:
    """Run the training job; returns the summary written to ``summary.json``.

    Raises ``ValueError`` (one line) on bad input before anything is written, and
    :class:`ray_ncut.outputs.Interrupted` on Ctrl-C, saying what was kept.
    """
    t_start = time.perf_counter()
    previous = ClusterModel.load(opts.previous) if opts.previous else None
    config = opts.config
    if config.n_clusters != "auto" and config.n_clusters < 2:
        raise ValueError(f"--k={config.n_clusters} should be >= 2")
    if opts.workers is not None and opts.workers < 1:
        raise ValueError(f"--workers={opts.workers} should be >= 1")
    output, staging = _plan_out(opts)
    opts = _resumed_config(opts, staging)
    if previous:  # the previous model's feature columns, by name
        opts = replace(opts, columns=columns_for_model(opts.columns, previous.record.features, opts.previous))
    fs = open_feature_set(opts.data, opts.columns)  # fails fast on paths and columns
    if previous:
        previous.check_dimension(fs.n_features, opts.data, f"the previous model {opts.previous}")
    if opts.config.n_clusters == "auto":
        check_k_range(opts.config.k_range, fs.n_rows, "--k-range")
    elif fs.n_rows < opts.config.n_clusters:
        raise ValueError(f"{opts.data} has n_rows={fs.n_rows}, fewer than k={opts.config.n_clusters}")
    pairs = read_constraints(opts.constraints) if opts.constraints else None
    progress(describe_columns(fs))
    k = opts.config.n_clusters
    if k != "auto" and fs.n_rows < MIN_ROWS_PER_CLUSTER * k:
        progress(f"[ray_ncut] warning: --k {k} on {fs.n_rows} rows leaves about {fs.n_rows / k:.1f} rows a cluster; "
                 "expect many tiny clusters (is k right?)")
    stage = {"now": "starting Ray"}
    try:
        return _train(opts, fs, pairs, previous, output, staging, stage, t_start, progress)
    except KeyboardInterrupt:
        raise _interrupted(stage["now"], output, staging) from None


def _scan(ex: Executor, opts, fs, previous, progress):
    """The scaler, the raw training sample (m, d), the row count and the sample's ground truth."""
    sample_rows = opts.sample or default_sample_rows(fs.n_rows)
    progress(f"[ray_ncut] scanning {opts.data}: {fs.n_rows} rows x {fs.n_features} features in {len(fs.units)} read units")
    with_label = opts.columns.label_column is not None  # built-ins serve their truth under any name
    scaler, X, n_rows, y_sample = scan_statistics(ex, fs, opts.config.scaling, sample_rows, opts.seed, with_label,
                                                  progress)
    if previous:  # one feature space from run to run: the previous model's scaling
        scaler = previous.scaler
    k_least = opts.config.k_range[0] if opts.config.n_clusters == "auto" else opts.config.n_clusters
    if len(X) < k_least:
        raise ValueError(f"training sample has {len(X)} rows, fewer than k={k_least}; raise --sample")
    return scaler, X, n_rows, y_sample


def _train(opts, fs, pairs, previous, output: Output, staging, stage, t_start, progress) -> dict:
    one_worker = opts.workers in (None, 1) and not opts.gpus_per_worker
    ex = open_executor(opts.engine, fs.n_rows * fs.n_features, one_worker, progress)
    workers, gpus = ex.plan_training(opts.workers, opts.gpus_per_worker)
    opts = replace(opts, workers=workers)
    stage["now"] = "scanning the data"
    scaler, X, n_rows, y_sample = _scan(ex, opts, fs, previous, progress)
    X_scaled = scaler.transform(X)
    t_scan = time.perf_counter() - t_start
    progress(f"[ray_ncut] scaling {scaler.mode}; training sample {len(X_scaled)} rows ({t_scan:.1f}s)")
    constraints = _gather_constraints(ex, fs, pairs, scaler, progress)

    stage["now"] = "preparing the training"
    _open_staging(opts, staging, progress)
    output.clean_stale(patterns=("old-*",))
    config = opts.config
    job = TrainJob(HeadConfig(fs.n_features, 2, config.hidden), config.graph(), config.train(), opts.seed,
                   opts.workers, gpus, opts.checkpoint_every, os.path.join(staging, RAY_DIR),
                   max_failures=opts.max_failures, record=ModelRecord(config=config, data={"uri": opts.data}))
    prepared = _prepare(ex, opts, job, X_scaled, scaler, previous, staging, stage, progress)
    scaler, graph, train = prepared.scaler, prepared.graph, prepared.train
    job = replace(job, head=prepared.head, graph=graph, train=train)
    how = "in this process (one CPU worker on one machine)" if ex.trains_here(job) else \
        f"with Ray Train, {opts.workers} {'GPU' if gpus else 'CPU'} worker(s)"
    progress(f"[ray_ncut] training {train.loss} {how}, {train.steps} steps of batch {train.batch_size}")
    stage["now"] = "training"
    t_train = time.perf_counter()
    state = ex.train_head(job, X_scaled, prepared.init_state, prepared.Z, constraints, progress)
    train_seconds = time.perf_counter() - t_train

    stage["now"] = "publishing the model"
    head = CutHead(job.head)
    head.load_state_dict(state.model)
    record = ModelRecord(
        config=config, seed=opts.seed, graph=graph, train=train, auto=prepared.auto,
        constraints=None if pairs is None else {"file": os.path.abspath(opts.constraints), "pairs": len(pairs),
                                                "must_link": int(pairs.must.sum())},
        data={"uri": opts.data, "columns": asdict(opts.columns), "rows": n_rows, "sample_rows": len(X_scaled)},
        features=fs.schema,  # labelling selects these columns by name and checks their types
    )
    model = ClusterModel(head, scaler, record)
    recluster = _carry_ids(opts, previous, model, X, staging, progress) if previous else None
    reference = reference_sample(X, opts.seed)
    model.record.fit_at_training = fit_of(model, reference, graph.n_neighbors)
    curve = state.curve
    model.save(staging, reference=reference, curve=curve)
    summary = {
        "data": opts.data, "rows": n_rows, "sample_rows": len(X_scaled), "features": fs.n_features,
        "k": job.head.n_clusters, "k_choice": prepared.auto.get("k"), "loss": train.loss, "steps": train.steps,
        "gamma": train.gamma, "sigma": prepared.auto["sigma"]["sigma"], "affinity": graph.affinity,
        "prepare_seconds": prepared.seconds, "resumed_from_step": state.resumed_from,
        "final_loss": curve[-1]["loss"], "final_cut": curve[-1]["cut"], "final_orth": curve[-1]["orth"],
        "workers": opts.workers, "nodes": len(state.nodes), "devices": "gpu" if gpus else "cpu",
        "gpus_per_worker": gpus, "scan_seconds": round(t_scan, 3), "train_seconds": round(train_seconds, 3),
        "loop_seconds": round(state.loop_seconds, 3), "sample_quality": _sample_quality(model, X, y_sample),
        "total_seconds": round(time.perf_counter() - t_start, 3), "out": output.path, "recluster": recluster,
    }
    write_json_atomic(os.path.join(staging, SUMMARY_FILE), summary)
    _check_model(staging, X)
    os.remove(os.path.join(staging, PREPARED_FILE))  # only an interrupted run needs it
    seal(staging, KIND)
    output.publish(staging)
    return summary


def _carry_ids(opts, previous: ClusterModel, model: ClusterModel, X: np.ndarray, staging: str, progress) -> dict:
    """Match the new model's clusters to the previous ids (recorded in its record); recluster.json."""
    match, report = carry_ids(previous, model, X, read_reference(opts.previous), model.record.graph.n_neighbors)
    report["previous"] = absolute(opts.previous)
    model.record = replace(model.record, cluster_ids=match.ids.tolist(), next_cluster_id=match.next_id,
                           previous=report["previous"])
    write_json_atomic(os.path.join(staging, RECLUSTER_FILE), report)
    progress(describe_recluster(report))
    return report
