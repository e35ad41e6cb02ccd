"""Label every row of a feature set with a trained model; publish labels and metrics atomically.

    python jobs/assign.py --model runs/demo --out labels/demo      # the data the model was trained on
    python jobs/assign.py --model runs/demo --data 'builtin:blobs?n=200000&d=16&k=10' --out labels/demo
    ray job submit -- python jobs/assign.py --model /mnt/runs/x --data s3://bucket/feats/ --out /mnt/labels/x

Writes LABELS_DIR/labels/part-*.parquet (id, cluster int32, confidence float32), metrics.json,
_SUCCESS and an ownership marker. An existing LABELS_DIR is kept unless --overwrite, and is then
replaced (only if ray_ncut wrote it and nothing else was added) once the new output is complete
and validated. Exit codes: 0 done, 2 bad input, 1 failed, 130 interrupted.
"""

import argparse
import json
import logging
import sys


def parse_args(argv=None):
    from ray_ncut.cli import ENGINE_HELP

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
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


def options_from_args(args, model: str, data: str, out: str, incremental: bool = False):
    """The labelling run the flags ask for."""
    from ray_ncut.data.readers import ColumnSpec
    from ray_ncut.ray.assign import AssignOptions

    return AssignOptions(
        model=model, data=data, out=out,
        columns=ColumnSpec.from_flags(args.features, args.feature_columns, args.id_column, args.label_column),
        ncut_neighbors=args.ncut_neighbors, ncut_sample=args.ncut_sample,
        overwrite=args.overwrite, seed=args.seed, actors=args.actors, drop_invalid=args.drop_invalid,
        incremental=incremental, engine=args.engine,
    )


def training_data(model_dir: str) -> str:
    from ray_ncut.model import ClusterModel

    uri = ClusterModel.load(model_dir).record.get("data", {}).get("uri")
    if not uri:
        raise ValueError(f"--data is required: {model_dir} does not record the data it was trained on")
    return uri


def main(argv=None) -> int:
    from ray_ncut.cli import absolute_paths, run_job

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from ray_ncut.ray.assign import assign_run

        absolute_paths(args, inputs=("model", "data"), outputs=("out",))
        data = args.data or training_data(args.model)
        print_summary(assign_run(options_from_args(args, args.model, data, args.out, args.incremental)))

    return run_job(work, args.debug)


def print_summary(m: dict) -> None:
    from ray_ncut.storage import describe_out

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
        f"Published to {describe_out(m['out'])}: labels/part-*.parquet (id, cluster, confidence), metrics.json, report.html "
        "(open it in a browser)."
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


if __name__ == "__main__":
    sys.exit(main())
