"""Fit + predict time of default ``NeuralCut`` on small sets, and where it goes (issue 26).

    python bench/fit_time.py                 # the three sets below, seed 0
    python bench/fit_time.py --repeats 3

Sets: 10,000 x 30 Gaussian classes in mixed units (standardised, kNN graph), the same in
one range (unit rows and the learned Siamese code), and scikit-learn's digits. Each fit runs
in a process that has already fitted once (imports and first-call costs paid: what a user's
second fit sees); the first fit's time is printed too. The time is the median of ``--repeats``
plain fits; the breakdown comes from one more fit under cProfile (cumulative time per stage; the
profiler slows a fit, 4.5 s against 3.96 s for 10,000 x 30 on 2026-12-06, so its stages add up to
more than the time).
k-means (n_init=10) on the same rows gives the ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.metrics import accuracy  # noqa: E402

STAGES = ("train_siamese", "spectral_labels", "distill", "fit_head", "subgraph_ncut", "fit_state")


def table(units: str, n: int = 10_000, d: int = 30, k: int = 8, seed: int = 0):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n, d, centers=k, cluster_std=3.0, random_state=seed)
    if units == "mixed":
        X = X * np.geomspace(1, 100, d)  # columns in units 1 to 100 apart
    else:
        X = 50 + 2 * X  # every column on one scale
    return X.astype(np.float32), y


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


SETS = {"table 10,000 x 30, mixed units": lambda: table("mixed"),
        "table 10,000 x 30, one range": lambda: table("one"),
        "digits 1,797 x 64": digits}


def timed_fit(X, k, seed):
    """Seconds of one fit + predict, and the fitted estimator."""
    start = time.perf_counter()
    est = NeuralCut(k, random_state=seed).fit(X)
    est.predict(X)
    return time.perf_counter() - start, est


def profiled_stages(X, k, seed) -> dict:
    """Cumulative seconds per stage of one fit + predict under cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    NeuralCut(k, random_state=seed).fit(X).predict(X)
    profile.disable()
    stages = {}
    for (path, _, name), stat in pstats.Stats(profile).stats.items():
        if name in STAGES and "ray_ncut" in path:
            stages[name] = stages.get(name, 0.0) + stat[3]
    return stages


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch
    from sklearn.cluster import KMeans

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    X, y = digits()
    start = time.perf_counter()
    NeuralCut(10, random_state=args.seed, affinity="knn").fit(X[:500])
    print(f"first fit in a fresh process (500 digits, imports and first calls): {time.perf_counter() - start:.1f} s")
    for name, make in SETS.items():
        X, y = make()
        k = len(np.unique(y))
        runs = [timed_fit(X, k, args.seed + r) for r in range(args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        stages = profiled_stages(X, k, args.seed)
        start = time.perf_counter()
        KMeans(k, n_init=10, random_state=args.seed).fit_predict(X)
        kmeans = time.perf_counter() - start
        est = runs[0][1]
        chosen = est.auto_.get("affinity", {}).get("chosen", "given")
        each = ", ".join(f"{r[0]:.2f}" for r in runs)
        print(f"{name}: fit + predict {seconds:.2f} s (median of {each}), k-means {kmeans:.2f} s, "
              f"ratio {seconds / kmeans:.0f}x; ACC {accuracy(y, est.labels_):.3f}; affinity {chosen}; "
              f"steps run {est.auto_.get('steps_run')}")
        print("    under cProfile: " + ", ".join(f"{s} {t:.2f} s" for s, t in stages.items()))


if __name__ == "__main__":
    main()
