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
    """The training job's flags; ``recluster`` adds ``--previous`` (jobs/recluster.py)."""
    from ray_ncut.config import AFFINITIES, LOSSES, SCALINGS

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if recluster:
        p.add_argument("--previous", required=True, metavar="RUN_DIR",
                       help="the previous run's model directory: its weights start the new head (same k), its "
                            "feature scaling is kept, and its cluster ids are carried over")
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
    g.add_argument("--scaling", default="auto", choices=SCALINGS, help="feature scaling (default auto)")
    m = p.add_argument_group("model and loss")
    m.add_argument("--k", default=None,
                   help="number of clusters, >= 2, or 'auto' to choose it label-free within --k-range "
                        + ("(default: the previous model's k)" if recluster else
                           "(required for your data; a built-in set defaults to its classes)"))
    m.add_argument("--k-range", default="2,50", metavar="MIN,MAX",
                   help="the ks that --k auto considers, both included (default 2,50)")
    m.add_argument("--loss", default="ncut", choices=LOSSES, help="ncut (NeuNcut, default), rcut, cnc")
    m.add_argument("--gamma", default="2.0",
                   help="orthogonality penalty weight, squared form (default 2), or 'auto' for the label-free "
                        "search of the NeuNcut paper (section 4.6); the choice is written to the config")
    m.add_argument("--neighbors", type=int, default=10, help="kNN affinities kept per point (default 10)")
    m.add_argument("--sigma", default="auto", help="heat-kernel bandwidth: 'auto' (default) or a number")
    m.add_argument("--local-scaling", action="store_true", help="per-point bandwidths (self-tuning kernel)")
    m.add_argument("--affinity", default="auto", choices=AFFINITIES,
                   help="knn: kNN heat kernel on the scaled features; siamese: on a Siamese embedding trained on "
                        "kNN pairs (by Ray Train); auto (default): siamese when the scaling compares rows by "
                        "direction (16+ features on one scale: pixels, embeddings), else knn")
    m.add_argument("--siamese-steps", type=int, default=1000, help="training steps of the Siamese embedding (default 1000)")
    m.add_argument("--constraints", metavar="FILE",
                   help="CSV of id_a,id_b,link (must|cannot) pairs; adds the KCL loss on them")
    m.add_argument("--kcl-weight", type=float, default=1.0, help="weight of the KCL constraint loss (default 1)")
    m.add_argument("--hidden", default="256,256", help="MLP hidden widths (default 256,256)")
    m.add_argument("--init", default="spectral", choices=("spectral", "random"),
                   help="spectral warm start on the sample (default) or random")
    t = p.add_argument_group("training")
    t.add_argument("--batch-size", type=int, default=1000, help="points per minibatch subgraph, per worker")
    t.add_argument("--batch-neighbors", type=int, default=0,
                   help="nearest neighbours of each anchor added to a minibatch (default 0: uniform batches)")
    t.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, cosine-annealed (default 1e-3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=None,
                   help="Ray Train workers (default: one per GPU, else one per node using all its cores)")
    t.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs per worker (default: 1 when the cluster has a GPU per worker, else 0)")
    t.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    t.add_argument("--max-failures", type=int, default=2,
                   help="worker-group failures retried from the last checkpoint (default 2)")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="run directory to write")
    o.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    o.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out, only if ray_ncut wrote it and nothing else was added, "
                        "once the new model is complete")
    o.add_argument("--debug", action="store_true", help="print a traceback with an error")
    return p.parse_args(argv)


def _number(flag: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{flag} should be 'auto' or a number, got {value!r}") from None


def _k(args) -> int | str:
    from ray_ncut.data.builtin import parse_builtin

    if args.k is None:
        if getattr(args, "previous", None):
            return None  # the previous model's k
        if args.data.startswith("builtin:"):
            return parse_builtin(args.data).n_classes
        raise ValueError(f"--k is required for --data {args.data}: the number of clusters, e.g. --k 10, or --k auto")
    if args.k == "auto":
        return "auto"
    try:
        k = int(args.k)
    except ValueError:
        raise ValueError(f"--k should be an integer >= 2 or 'auto', got {args.k!r}") from None
    if k < 2:
        raise ValueError(f"--k={k} should be >= 2 (the number of clusters)")
    return k


def _k_range(args) -> tuple[int, int]:
    """MIN,MAX as two ints; their bounds (and MAX against the rows) are checked by the job."""
    try:
        k_min, k_max = (int(p) for p in args.k_range.split(","))
    except ValueError:
        raise ValueError(f"--k-range should be MIN,MAX (two integers), got {args.k_range!r}") from None
    return k_min, k_max


def options_from_args(args):
    from ray_ncut.config import GraphConfig, TrainConfig
    from ray_ncut.data.readers import ColumnSpec
    from ray_ncut.ray.runs import TrainOptions
    from ray_ncut.siamese import SiameseConfig

    sigma = args.sigma if args.sigma == "auto" else _number("--sigma", args.sigma)
    gamma = args.gamma if args.gamma == "auto" else _number("--gamma", args.gamma)
    return TrainOptions(
        data=args.data,
        out=args.out,
        n_clusters=_k(args),
        k_range=_k_range(args),
        columns=ColumnSpec.from_flags(args.features, args.feature_columns, args.id_column, args.label_column),
        graph=GraphConfig(n_neighbors=args.neighbors, sigma=sigma, local_scaling=args.local_scaling,
                          affinity=args.affinity),
        train=TrainConfig(loss=args.loss, gamma=2.0 if gamma == "auto" else gamma, batch_size=args.batch_size,
                          batch_neighbors=args.batch_neighbors, steps=args.steps, learning_rate=args.lr, init=args.init, kcl_weight=args.kcl_weight),
        gamma=gamma,
        constraints=args.constraints,
        siamese=SiameseConfig(n_neighbors=args.neighbors, steps=args.siamese_steps),
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        scaling=args.scaling,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        checkpoint_every=args.checkpoint_every,
        max_failures=args.max_failures,
        resume=args.resume,
        overwrite=args.overwrite,
        previous=getattr(args, "previous", None),
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
    quality = summary.get("sample_quality")
    scores = (f" On the training sample: ACC {quality['acc']:.3f}, NMI {quality['nmi']:.3f}, "
              f"ARI {quality['ari']:.3f}." if quality else "")
    print(
        f"\nTrained a {summary['k']}-cluster {summary['loss']} head on {summary['sample_rows']} of "
        f"{summary['rows']} rows of {summary['data']} ({summary['features']} features) with "
        f"{summary['workers']} {summary['devices'].upper()} worker(s), gamma {summary['gamma']:g}, sigma {summary['sigma']:.4g}: "
        f"{summary['steps']} steps in "
        f"{summary['train_seconds']:.1f}s{_resumed(summary)} (scan {summary['scan_seconds']:.1f}s, total {summary['total_seconds']:.1f}s); "
        f"final loss {summary['final_loss']:.4f} (cut {summary['final_cut']:.4f}, orth {summary['final_orth']:.4f}).{scores} "
        f"Model written to {summary['out']}."
    )
    recluster = summary.get("recluster")
    if recluster:
        print(f"Cluster ids carried from {recluster['previous']}: {recluster['matched']} kept, new {recluster['new']}, "
              f"vanished {recluster['vanished']}; {recluster['churn']:.1%} of the old rows changed cluster "
              "(recluster.json).")


if __name__ == "__main__":
    sys.exit(main())
