"""Cluster a data set in memory with NeuralCut and k-means; print quality and time side by side.

    python jobs/compare.py                       # builtin:digits, k=10
    python jobs/compare.py --data builtin:blobs?n=20000&d=8&k=5 --k 5
"""

import argparse
import logging
import sys

from ray_ncut.compare import compare_with_kmeans, format_table
from ray_ncut.data import load_builtin, parse_builtin


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # a prefix never stands for a flag (--overwrit)
    p.add_argument("--data", default="builtin:digits", help="a builtin:NAME data set (default builtin:digits)")
    p.add_argument("--k", type=int, default=None, help="number of clusters (default: the data set's classes)")
    p.add_argument("--steps", type=int, default=None, help="cut-loss steps (default: NeuralCut's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        spec = parse_builtin(args.data)
        X, y = load_builtin(args.data)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    k = args.k or spec.n_classes
    print(f"{spec}: {X.shape[0]} rows x {X.shape[1]} features, k={k}", flush=True)
    steps = {"steps": args.steps} if args.steps else {}
    rows = compare_with_kmeans(X, y, k, seed=args.seed, **steps)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
