"""The command lines of the jobs: flags -> options -> the job -> a summary and an exit code.

``jobs/train.py``, ``jobs/recluster.py``, ``jobs/assign.py`` and ``jobs/cluster.py`` are shims
over :func:`train_main`, :func:`assign_main` and :func:`cluster_main`; each keeps its usage in
its own docstring, passed here as the ``--help`` description. The heavy modules (torch, the
jobs themselves) are imported inside the functions, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from ..cli import ENGINE_HELP, absolute_paths, run_job
from ..config import add_flags
from ..outputs import open_output

__all__ = ["build_train_parser", "train_options", "train_main", "add_labelling_flags", "assign_options",
           "assign_main", "cluster_main", "print_train_summary", "print_assign_summary"]


DEFAULT_DATA = "builtin:blobs?n=200000&d=16&k=10"


def build_train_parser(recluster: bool = False, description: str | None = None, out_help: str = "run directory to write"):
    """The training job's flags; ``recluster`` adds ``--previous`` (jobs/recluster.py); jobs/cluster.py
    adds the labelling flags.

    The model's flags come from :class:`ray_ncut.config.ClusterConfig` (one per field, with
    its help and default); the rest say where the data is and how the job runs.
    """
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # a prefix never stands for a flag (--overwrit)
    if recluster:
        p.add_argument("--previous", required=True, metavar="RUN_DIR",
                       help="the previous run's model directory: its weights start the new head (same k), its "
                            "feature scaling is kept, its cluster ids are carried over, and its settings are the "
                            "defaults of every model flag below")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=DEFAULT_DATA,
                   help="Parquet file/dir/glob (local or cloud URI), a .npy file, or builtin:NAME "
                        f"(default {DEFAULT_DATA})")
    g.add_argument("--features", help="one list/tensor column holding the feature vector (default 'features')")
    g.add_argument("--feature-columns", help="comma-separated scalar feature columns instead of --features")
    g.add_argument("--id-column", default="id", help="row id column, carried to outputs (default 'id')")
    g.add_argument("--label-column",
                   help="ground truth: never a feature; ACC/NMI/ARI on the training sample go into summary.json. "
                        "Columns named label, labels, y, target or class are never features unless named by "
                        "--feature-columns")
    g.add_argument("--sample", type=int, help="rows in the training sample (default: all up to 100,000)")
    g.add_argument("--constraints", metavar="FILE",
                   help="CSV of id_a,id_b,link (must|cannot) pairs; adds the KCL loss on them")
    k_help = ("(default: the previous model's k)" if recluster else
              "(required for your data; a built-in set defaults to its classes)")
    add_flags(p, defaults={"n_clusters": None},
              helps={"n_clusters": "number of clusters, >= 2, or 'auto' to choose it label-free within --k-range "
                                   + k_help})
    t = p.add_argument_group("how the job runs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=None,
                   help="Ray Train workers (default: one per GPU, else one per node using all its cores)")
    t.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs per worker (default: 1 when the cluster has a GPU per worker, else 0)")
    t.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    t.add_argument("--max-failures", type=int, default=2,
                   help="worker-group failures retried from the last checkpoint (default 2)")
    t.add_argument("--engine", choices=("auto", "ray", "local"), default="auto",
                   help=ENGINE_HELP)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help=out_help)
    o.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with the settings it was started "
                        "with (a model flag that contradicts them is refused)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out, only if ray_ncut wrote it and nothing else was added, "
                        "once the new model is complete")
    o.add_argument("--debug", action="store_true", help="print a traceback with an error")
    return p


def cluster_config(args):
    """The run's ClusterConfig: the defaults (or the previous model's settings) with the flags given."""
    from dataclasses import replace

    from ..config import config_from_args, given_flags
    from ..data.builtin import parse_builtin
    from ..model import ClusterModel

    given = given_flags(args)
    if given.get("n_clusters", "auto") != "auto" and given["n_clusters"] < 2:
        raise ValueError(f"--k={given['n_clusters']} should be >= 2 (the number of clusters)")
    previous = ClusterModel.load(args.previous) if getattr(args, "previous", None) else None
    config = config_from_args(args, previous.config if previous else None)
    if "n_clusters" in given:
        return config, tuple(given)
    if previous:
        config = replace(config, n_clusters=previous.n_clusters)
    elif args.data.startswith("builtin:"):
        config = replace(config, n_clusters=parse_builtin(args.data).n_classes)
    else:
        raise ValueError(f"--k is required for --data {args.data}: the number of clusters, e.g. --k 10, or --k auto")
    return config, tuple(given)


def train_options(args, out: str | None = None):
    """The training run the flags ask for (``out``: instead of ``--out``, for jobs/cluster.py)."""
    from ..data.readers import ColumnSpec
    from .train import TrainOptions

    config, given = cluster_config(args)
    return TrainOptions(
        data=args.data,
        out=out or args.out,
        config=config,
        given=given,
        columns=ColumnSpec.from_flags(args.features, args.feature_columns, args.id_column, args.label_column),
        constraints=args.constraints,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        checkpoint_every=args.checkpoint_every,
        max_failures=args.max_failures,
        resume=args.resume,
        overwrite=args.overwrite,
        previous=getattr(args, "previous", None),
        engine=args.engine,
    )


def _resumed(summary) -> str:
    step = summary["resumed_from_step"]
    return f", resumed from step {step}" if step else ""


def train_main(argv=None, recluster: bool = False, description: str | None = None) -> int:
    args = build_train_parser(recluster, description).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from .train import train_run

        absolute_paths(args, inputs=("data", "constraints", "previous"), outputs=("out",))
        print_train_summary(train_run(train_options(args)))

    return run_job(work, args.debug)


def print_train_summary(summary: dict) -> None:
    quality = summary.get("sample_quality")
    scores = (f" On the training sample: ACC {quality['acc']:.3f}, NMI {quality['nmi']:.3f}, "
              f"ARI {quality['ari']:.3f}." if quality else "")
    print(
        f"\nTrained a {summary['k']}-cluster {summary['loss']} head on {summary['sample_rows']} of "
        f"{summary['rows']} rows of {summary['data']} ({summary['features']} features) with "
        f"{summary['workers']} {summary['devices'].upper()} worker(s), gamma {summary['gamma']:g}, sigma {summary['sigma']:.4g}: "
        f"{summary['steps']} steps in "
        f"{summary['train_seconds']:.1f}s{_resumed(summary)} "
        f"(scan {summary['scan_seconds']:.1f}s, total {summary['total_seconds']:.1f}s); "
        f"final loss {summary['final_loss']:.4f} (cut {summary['final_cut']:.4f}, orth {summary['final_orth']:.4f}).{scores} "
        f"Model written to {open_output(summary['out'], 'model').describe()}: model.pt + config.json "
        "(load with NeuralCut.load or label with jobs/assign.py), curve.csv, summary.json, reference.npy."
    )
    recluster = summary.get("recluster")
    if recluster:
        print(f"Cluster ids carried from {recluster['previous']}: {recluster['matched']} kept, new {recluster['new']}, "
              f"vanished {recluster['vanished']}; {recluster['churn']:.1%} of the old rows changed cluster "
              "(recluster.json).")


def parse_assign_args(argv=None, description: str | None = None):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # a prefix never stands for a flag (--overwrit)
    p.add_argument("--model", required=True, help="run directory written by jobs/train.py (or NeuralCut.save)")
    p.add_argument("--data", help="Parquet file/dir/glob, a .npy file, or builtin:NAME "
                                   "(default: the data the model was trained on)")
    p.add_argument("--out", required=True, help="labels directory to publish")
    p.add_argument("--features", help="one list/tensor column holding the feature vector (default 'features')")
    p.add_argument("--feature-columns", help="comma-separated scalar feature columns instead of --features")
    p.add_argument("--id-column", default="id", help="row id column (default 'id'; derived from file and row if absent)")
    p.add_argument("--label-column", help="ground truth, for ACC/NMI/ARI in metrics.json (built-ins: any name)")
    add_labelling_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the metric's sample")
    p.add_argument("--engine", choices=("auto", "ray", "local"), default="auto", help=ENGINE_HELP)
    p.add_argument("--incremental", action="store_true",
                   help="label only input files that --out does not cover yet (new, or changed in size or "
                        "modification time, or labelled by another model), reuse the rest, and replace --out "
                        "(only if ray_ncut wrote it) with old and new rows as one complete output")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out once the new one is complete, only if ray_ncut wrote it "
                        "and nothing else was added")
    p.add_argument("--debug", action="store_true", help="print a traceback with an error")
    return p.parse_args(argv)


def add_labelling_flags(p) -> None:
    """How every row is labelled and measured (shared with jobs/cluster.py)."""
    p.add_argument("--ncut-neighbors", type=int, default=10, help="neighbours per row in the metric's kNN graph")
    p.add_argument("--ncut-sample", type=int, default=None,
                   help="rows of the uniform sample the kNN graph is built on (all rows if fewer; default 100,000, "
                        "fewer in high dimensions so that the exact search stays cheap: 17,857 at 784 features)")
    p.add_argument("--actors", type=int, help="labelling actors (default: 4 per GPU, sharing it, else one per CPU)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="skip rows with a NaN or infinite feature and count them in metrics.json "
                        "(default: such a row fails the job with one line naming it)")


def assign_options(args, model: str, data: str, out: str, incremental: bool = False):
    """The labelling run the flags ask for."""
    from ..data.readers import ColumnSpec
    from .label import AssignOptions

    return AssignOptions(
        model=model, data=data, out=out,
        columns=ColumnSpec.from_flags(args.features, args.feature_columns, args.id_column, args.label_column),
        ncut_neighbors=args.ncut_neighbors, ncut_sample=args.ncut_sample,
        overwrite=args.overwrite, seed=args.seed, actors=args.actors, drop_invalid=args.drop_invalid,
        incremental=incremental, engine=args.engine,
    )


def training_data(model_dir: str) -> str:
    from ..model import ClusterModel

    uri = (ClusterModel.load(model_dir).record.data or {}).get("uri")
    if not uri:
        raise ValueError(f"--data is required: {model_dir} does not record the data it was trained on")
    return uri


def assign_main(argv=None, description: str | None = None) -> int:
    args = parse_assign_args(argv, description)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from .label import assign_run

        absolute_paths(args, inputs=("model", "data"), outputs=("out",))
        data = args.data or training_data(args.model)
        print_assign_summary(assign_run(assign_options(args, args.model, data, args.out, args.incremental)))

    return run_job(work, args.debug)


def print_assign_summary(m: dict) -> None:
    nc = m["normalized_cut"]
    truth = m.get("ground_truth")
    scores = f" ACC {truth['acc']:.3f}, NMI {truth['nmi']:.3f}, ARI {truth['ari']:.3f};" if truth else ""
    cut = f" Normalized cut {nc['ncut']:.4f} on a {nc['n_neighbors']}-NN graph ({nc['sample']})." if nc else ""
    reused = m.get("incremental")
    fresh = (f" ({m['rows_labelled']} labelled now, {reused['rows_reused']} reused from "
             f"{reused['files_reused']} unchanged file(s))" if reused else "")
    print(
        f"\nLabelled {m['rows']} rows{fresh} of {m['data']['uri']} into {len(m['cluster_sizes'])} clusters in "
        f"{m['label_seconds']:.1f}s ({m['rows_per_second']:,.0f} rows/s; total {m['seconds']:.1f}s).{scores}{cut} "
        f"Published to {open_output(m['out'], 'labels').describe()}: labels/part-*.parquet (id, cluster, confidence), "
        "metrics.json, report.html (open it in a browser)."
    )
    dropped = m.get("dropped_invalid")
    if dropped and dropped["rows"]:
        print(f"--drop-invalid: skipped {dropped['rows']} rows with NaN or infinite features "
              f"(first: id {dropped['first_id']}); they have no label")
    ids = m.get("cluster_ids", list(range(len(m["cluster_sizes"]))))
    sizes = m["cluster_sizes"]
    if len(sizes) > 30:  # one line, whatever k
        order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
        empty = sum(1 for n in sizes if n == 0)
        print(f"cluster sizes: {len(sizes)} clusters, largest {', '.join(f'{ids[i]}: {sizes[i]}' for i in order[:5])}; "
              f"smallest {sizes[order[-1]]}; {empty} empty (all sizes in metrics.json)")
    elif ids == list(range(len(ids))):
        print("cluster sizes: " + json.dumps(m["cluster_sizes"]))
    else:  # a reclustered model: its clusters carry the previous run's ids
        print("cluster sizes by id: " + json.dumps(dict(zip(map(str, ids), m["cluster_sizes"]))))


def cluster_main(argv=None, description: str | None = None) -> int:
    """jobs/cluster.py: train, then label every row, in one Ray session: DIR/model and DIR/labels."""
    parser = build_train_parser(description=description, out_help="cluster directory: DIR/model and DIR/labels")
    add_labelling_flags(parser.add_argument_group("labelling"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from .label import assign_run
        from .train import train_run

        absolute_paths(args, inputs=("data", "constraints"), outputs=("out",))
        model, labels = os.path.join(args.out, "model"), os.path.join(args.out, "labels")
        print_train_summary(train_run(train_options(args, out=model)))
        print_assign_summary(assign_run(assign_options(args, model, args.data, labels)))
        print(f"Cluster directory {args.out}: model/ and labels/ (open labels/report.html)")

    return run_job(work, args.debug)
