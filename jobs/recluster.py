"""Recluster a grown data set: train a new cut head from the previous run's model, keep its cluster ids.

    python jobs/recluster.py --previous runs/day1 --data features/ --out runs/day2
    python jobs/recluster.py --previous runs/day2 --data features/ --k 12 --out runs/day3   # k may change
    python jobs/assign.py --model runs/day2 --data features/ --out labels/day2               # labels with the kept ids

Trains like jobs/train.py (every training flag applies) with three differences: the previous
model's feature scaling is kept; with the same k and widths its weights start the new head (else
the spectral warm start); and the new clusters are matched to the previous ids on the previous
model's reference rows (an optimal assignment of the two labellings), so that a cluster keeps its
number, a new cluster gets an id never used before, and a vanished one is reported. RUN_DIR gets
recluster.json (ids kept / new / vanished, share of old rows that changed cluster, normalized
cut before and after); jobs/assign.py then writes the kept ids. Exit codes as jobs/train.py.
"""

import sys

from ray_ncut.pipeline.commands import train_main


def main(argv=None) -> int:
    return train_main(argv, recluster=True, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
