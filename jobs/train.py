"""Train a cut head on a feature set with Ray Data + Ray Train and write a run directory.

    python jobs/train.py --out runs/demo                               # builtin default
    python jobs/train.py --data s3://bucket/features/ --k 100 --out runs/x --workers 8
    ray job submit -- python jobs/train.py --data builtin:blobs --k 10 --out /shared/runs/b

Runs on the cluster ray.init() finds (RAY_ADDRESS, or inside `ray job submit`);
otherwise starts an embedded local one.
"""

import argparse
import logging
import sys

DEFAULT_DATA = "builtin:blobs?n=200000&d=16&k=10"


def parse_args(argv=None):
    from ray_ncut.config import AFFINITIES, LOSSES, SCALINGS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", default=DEFAULT_DATA,
                   help="Parquet file/dir/glob (local or cloud URI), a .npy file, or builtin:NAME "
                        f"(default {DEFAULT_DATA})")
    g.add_argument("--features", help="one list/tensor column holding the feature vector (default 'features')")
    g.add_argument("--feature-columns", help="comma-separated scalar feature columns instead of --features")
    g.add_argument("--id-column", default="id", help="row id column, carried to outputs (default 'id')")
    g.add_argument("--sample", type=int, help="rows in the training sample (default: all up to 100,000)")
    g.add_argument("--scaling", default="auto", choices=SCALINGS, help="feature scaling (default auto)")
    m = p.add_argument_group("model and loss")
    m.add_argument("--k", type=int, default=None, help="number of clusters (default: the builtin's classes, else 10)")
    m.add_argument("--loss", default="ncut", choices=LOSSES, help="ncut (NeuNcut, default), rcut, cnc")
    m.add_argument("--gamma", default="2.0",
                   help="orthogonality penalty weight, squared form (default 2), or 'auto' for the label-free "
                        "search of the NeuNcut paper (section 4.6); the choice is written to the config")
    m.add_argument("--neighbors", type=int, default=10, help="kNN affinities kept per point (default 10)")
    m.add_argument("--sigma", default="auto", help="heat-kernel bandwidth: 'auto' (default) or a number")
    m.add_argument("--local-scaling", action="store_true", help="per-point bandwidths (self-tuning kernel)")
    m.add_argument("--affinity", default="knn", choices=AFFINITIES,
                   help="knn (default): kNN heat kernel on the scaled features; siamese: on a Siamese embedding "
                        "trained on kNN pairs")
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
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p.parse_args(argv)


def _number(flag: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{flag} should be 'auto' or a number, got {value!r}") from None


def options_from_args(args):
    from ray_ncut.config import GraphConfig, TrainConfig
    from ray_ncut.data.builtin import parse_builtin
    from ray_ncut.data.readers import ColumnSpec
    from ray_ncut.ray.runs import TrainOptions
    from ray_ncut.siamese import SiameseConfig

    k = args.k or (parse_builtin(args.data).n_classes if args.data.startswith("builtin:") else 10)
    sigma = args.sigma if args.sigma == "auto" else _number("--sigma", args.sigma)
    gamma = args.gamma if args.gamma == "auto" else _number("--gamma", args.gamma)
    return TrainOptions(
        data=args.data,
        out=args.out,
        n_clusters=k,
        columns=ColumnSpec.from_flags(args.features, args.feature_columns, args.id_column),
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
    )


def _resumed(summary) -> str:
    step = summary["resumed_from_step"]
    return f", resumed from step {step}" if step else ""


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        from ray_ncut.ray.runs import train_run

        summary = train_run(options_from_args(args))
    except ValueError as e:  # bad input: one line, non-zero exit
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - training failed after its retries
        print(f"error: training failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    print(
        f"\nTrained a {summary['k']}-cluster {summary['loss']} head on {summary['sample_rows']} of "
        f"{summary['rows']} rows of {summary['data']} ({summary['features']} features) with "
        f"{summary['workers']} {summary['devices'].upper()} worker(s), gamma {summary['gamma']:g}, sigma {summary['sigma']:.4g}: "
        f"{summary['steps']} steps in "
        f"{summary['train_seconds']:.1f}s{_resumed(summary)} (scan {summary['scan_seconds']:.1f}s, total {summary['total_seconds']:.1f}s); "
        f"final loss {summary['final_loss']:.4f} (cut {summary['final_cut']:.4f}, orth {summary['final_orth']:.4f}). "
        f"Model written to {summary['out']}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
