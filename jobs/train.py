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

import sys

from ray_ncut.pipeline.commands import train_main


def main(argv=None) -> int:
    return train_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
