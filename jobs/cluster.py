"""Train a cut head and label every row in one Ray session: DIR/model and DIR/labels.

    python jobs/cluster.py --data features.parquet --k 20 --out clusters/x --label-column label
    ray job submit --working-dir . -- python jobs/cluster.py --data s3://bucket/feats/ --k 100 --out s3://bucket/clusters/x

DIR/model is a model directory as jobs/train.py writes it and DIR/labels a labels directory as
jobs/assign.py writes it (labels, metrics.json, report.html); the same seed gives the same
labels as the two jobs run one after the other. Takes every flag of jobs/train.py and the
labelling flags of jobs/assign.py; Ray starts once. --overwrite replaces either output (only if
ray_ncut wrote it); --resume continues an interrupted training and then labels. On object storage
each output is committed by its pointer, DIR/model/_RAY_NCUT.json and DIR/labels/_RAY_NCUT.json
(docs/cluster.md).
Exit codes: 0 done, 2 bad input, 1 failed, 130 interrupted.
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import assign  # noqa: E402 - the labelling job, whose flags and summary this job shares
import train  # noqa: E402 - the training job, likewise


def main(argv=None) -> int:
    from ray_ncut.cli import absolute_paths, run_job

    parser = train.build_parser(description=__doc__, out_help="cluster directory: DIR/model and DIR/labels")
    assign.add_labelling_flags(parser.add_argument_group("labelling"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def work():
        from ray_ncut.ray.assign import assign_run
        from ray_ncut.ray.runs import train_run

        absolute_paths(args, inputs=("data", "constraints"), outputs=("out",))
        model, labels = os.path.join(args.out, "model"), os.path.join(args.out, "labels")
        train.print_summary(train_run(train.options_from_args(args, out=model)))
        assign.print_summary(assign_run(assign.options_from_args(args, model, args.data, labels)))
        print(f"Cluster directory {args.out}: model/ and labels/ (open labels/report.html)")

    return run_job(work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
