"""Label every row of a feature set with a trained model; publish labels and metrics atomically.

    python jobs/assign.py --model runs/demo --out labels/demo      # the data the model was trained on
    python jobs/assign.py --model runs/demo --data 'builtin:blobs?n=200000&d=16&k=10' --out labels/demo
    ray job submit -- python jobs/assign.py --model /mnt/runs/x --data s3://bucket/feats/ --out /mnt/labels/x

Writes LABELS_DIR/labels/part-*.parquet (id, cluster int32, confidence float32), metrics.json,
_SUCCESS and an ownership marker. An existing LABELS_DIR is kept unless --overwrite, and is then
replaced (only if ray_ncut wrote it and nothing else was added) once the new output is complete
and validated. Exit codes: 0 done, 2 bad input, 1 failed, 130 interrupted.
"""

import sys

from ray_ncut.pipeline.commands import assign_main


def main(argv=None) -> int:
    return assign_main(argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
