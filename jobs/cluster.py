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

import sys

from ray_ncut.pipeline.commands import cluster_main


def main(argv=None) -> int:
    return cluster_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
