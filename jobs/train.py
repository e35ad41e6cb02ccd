"""Train a cut head on a feature set with Ray Data + Ray Train and write a run directory.

    python jobs/train.py --out runs/demo                               # builtin default
    python jobs/train.py --data features.parquet --k 20 --label-column label --out runs/x
    python jobs/train.py --data 'builtin:blobs?n=200000&d=16&k=10' --out runs/b
    ray job submit -- python jobs/train.py --data s3://bucket/features/ --k 100 --out /shared/runs/x

Runs on the cluster named by RAY_ADDRESS (as inside `ray job submit`), else on the one
Ray cluster running on this machine, else on an embedded local one. Writes nothing until
the input has been read and checked; the previous model at --out stays loadable until
the new one is complete. Exit codes: 0 done, 2 bad input, 1 failed, 130 interrupted.
"""

import argparse
import logging
import sys

DEFAULT_DATA = "builtin:blobs?n=200000&d=16&k=10"


def parse_args(argv=None, recluster: bool = False, description: str = __doc__):
    return build_parser(recluster, description).parse_args(argv)


def build_parser(recluster: bool = False, description: str = __doc__, out_help: str = "run directory to write"):
    """The training job's flags; ``recluster`` adds ``--previous`` (jobs/recluster.py); jobs/cluster.py
    adds the labelling flags.

    The model's flags come from :class:`ray_ncut.config.ClusterConfig` (one per field, with
    its help and default); the rest say where the data is and how the job runs.
    """
    from ray_ncut.cli import ENGINE_HELP
    from ray_ncut.config import add_flags

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

    from ray_ncut.config import config_from_args, given_flags
    from ray_ncut.data.builtin import parse_builtin
    from ray_ncut.model import ClusterModel

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


def options_from_args(args, out: str | None = None):
    """The training run the flags ask for (``out``: instead of ``--out``, for jobs/cluster.py)."""
    from ray_ncut.data.readers import ColumnSpec
    from ray_ncut.ray.runs import TrainOptions

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


def main(argv=None, recluster: bool = False, description: str = __doc__) -> int:
    from ray_ncut.cli import absolute_paths, run_job

    args = parse_args(argv, recluster, description)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from ray_ncut.ray.runs import train_run

        absolute_paths(args, inputs=("data", "constraints", "previous"), outputs=("out",))
        print_summary(train_run(options_from_args(args)))

    return run_job(work, args.debug)


def print_summary(summary: dict) -> None:
    from ray_ncut.storage import describe_out

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
        f"Model written to {describe_out(summary['out'])}: model.pt + config.json (load with NeuralCut.load or label with "
        "jobs/assign.py), curve.csv, summary.json, reference.npy."
    )
    recluster = summary.get("recluster")
    if recluster:
        print(f"Cluster ids carried from {recluster['previous']}: {recluster['matched']} kept, new {recluster['new']}, "
              f"vanished {recluster['vanished']}; {recluster['churn']:.1%} of the old rows changed cluster "
              "(recluster.json).")


if __name__ == "__main__":
    sys.exit(main())
