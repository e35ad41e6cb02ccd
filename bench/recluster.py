"""Reclustering on real sets: do day-1 rows keep their cluster id when the data set doubles?

    python bench/recluster.py                        # digits, mnist5k, olive, wine; seed 0
    python bench/recluster.py --sets digits --seeds 0,1,2

Day 1 is a random half of a set's rows, day 2 all of them. ray_ncut: ``jobs/train.py`` on day 1,
then ``jobs/recluster.py`` on day 2 (the library calls the two jobs make, one Ray session). The
baseline a user would try: k-means on day 1, k-means refit on day 2 (n_init=10), its clusters
matched to day 1's ids by the same optimal matching (``ray_ncut.stable_ids``) on day-1 rows.
Churn is the share of day-1 rows whose id changed between the two days (lower is better); ACC is
day 2's, against the labels no system sees. Medians over seeds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import KMeans

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from datasets import load  # noqa: E402

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.data.readers import ColumnSpec  # noqa: E402
from ray_ncut.metrics import accuracy  # noqa: E402
from ray_ncut.pipeline.train import TrainOptions, train_run  # noqa: E402
from ray_ncut.stable_ids import churn, match_clusters  # noqa: E402


def _parquet(path, X, ids):
    pq.write_table(pa.table({"id": ids, "features": list(X)}), path)


def ray_ncut_days(X, k, day1, seed, root):
    """Stable ids of every row after day 1 and after day 2, through the training and recluster jobs."""
    _parquet(os.path.join(root, "day1.parquet"), X[day1], day1)
    _parquet(os.path.join(root, "day2.parquet"), X, np.arange(len(X)))
    quiet = lambda *_: None  # noqa: E731
    cols = ColumnSpec.from_flags("features", None, "id", None)
    train_run(TrainOptions(data=os.path.join(root, "day1.parquet"), out=os.path.join(root, "m1"), n_clusters=k,
                           columns=cols, seed=seed), progress=quiet)
    summary = train_run(TrainOptions(data=os.path.join(root, "day2.parquet"), out=os.path.join(root, "m2"),
                                     n_clusters=None, columns=cols, seed=seed, previous=os.path.join(root, "m1")),
                        progress=quiet)
    first, second = NeuralCut.load(os.path.join(root, "m1")), NeuralCut.load(os.path.join(root, "m2"))
    return first.predict(X), second.predict(X), summary["recluster"]


def kmeans_days(X, k, day1, seed):
    """k-means on day 1, refit on day 2, day-2 clusters matched to day-1 ids on day-1 rows."""
    std = X[day1].std(0)
    Xs = (X - X[day1].mean(0)) / np.where(std > 0, std, 1.0)  # standardised on day 1; constant columns kept as is
    first = KMeans(k, n_init=10, random_state=seed).fit(Xs[day1])
    second = KMeans(k, n_init=10, random_state=seed + 1).fit_predict(Xs)
    before = first.predict(Xs)
    ids = match_clusters(before[day1], second[day1], k, range(k), next_id=k).ids
    return before, ids[second]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="digits,mnist5k,olive,wine")
    p.add_argument("--seeds", default="0")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"# bench/recluster.py, {datetime.date.today()}, {os.cpu_count()} CPUs, {platform.machine()}, seeds {seeds}")
    print("set            k  churn ray_ncut  churn k-means  ratio  ACC day2 ray_ncut  ACC day2 k-means")
    for name in args.sets.split(","):
        X, y = load(name)
        k = len(np.unique(y))
        rows = {"ours": [], "km": [], "acc": [], "acc_km": []}
        for seed in seeds:
            day1 = np.sort(np.random.default_rng(seed).permutation(len(X))[: len(X) // 2])
            with tempfile.TemporaryDirectory() as root:
                before, after, _ = ray_ncut_days(X, k, day1, seed, root)
            km_before, km_after = kmeans_days(X, k, day1, seed)
            rows["ours"].append(churn(before[day1], after[day1]))
            rows["km"].append(churn(km_before[day1], km_after[day1]))
            rows["acc"].append(accuracy(y, after))
            rows["acc_km"].append(accuracy(y, km_after))
        m = {key: statistics.median(v) for key, v in rows.items()}
        ratio = m["ours"] / m["km"] if m["km"] else float("nan")
        print(f"{name:<13} {k:>2}  {m['ours']:>14.3f}  {m['km']:>13.3f}  {ratio:>5.2f}  {m['acc']:>17.3f}  "
              f"{m['acc_km']:>16.3f}", flush=True)


if __name__ == "__main__":
    main()
