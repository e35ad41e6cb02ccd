"""Clustering quality on the suite's real sets: ray_ncut against the baselines a user would try.

    python bench/quality.py                          # every set, seeds 0,1,2
    python bench/quality.py --sets wine,digits --seeds 0
    python bench/quality.py --ray-ncut '{"n_neighbors": 30}' --name nn30   # a variant, same run

Systems, all given the same features (ray_ncut's own scaling, learnt on the set) and
the true k; none sees a label:

- ray_ncut: ``NeuralCut`` with its defaults (or the ``--ray-ncut`` overrides);
- scikit-learn KMeans (n_init=10);
- scikit-learn GaussianMixture (full covariances up to 100 features, diagonal above);
- scikit-learn SpectralClustering on a 10-neighbour kNN graph (its default);
- UMAP to 10-D (umap-learn, 15 neighbours, min_dist 0) + a full-covariance Gaussian mixture.

ACC (Hungarian-matched), NMI and ARI use the labels; "min recall" is the smallest
share of a true class that lands in its matched cluster. Every figure is a mean
over seeds; the table ends with ray_ncut's wins and losses against k-means and
against the best baseline (a tie is within 0.01 ACC). Results are written to
``--out`` after every set; baselines already measured for a set and seed are read
back from it (``--fresh`` re-measures them).

rings / moons with ``--big-rows N``: ray_ncut and k-means also label N generated
rows (chunked), as a user labels a corpus from a model trained on a sample.
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import datasets  # noqa: E402

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.compare import format_table  # noqa: E402
from ray_ncut.data.builtin import builtin_chunks, parse_builtin  # noqa: E402
from ray_ncut.metrics import clustering_scores, contingency_partial, merge_contingency  # noqa: E402
from ray_ncut.scaling import FeatureScaler  # noqa: E402

BASELINES = ("kmeans", "gmm", "spectral", "umap+gmm")
GMM_FULL_MAX_FEATURES = 100
TIE = 0.01  # ACC differences below this are reported as ties
SPECTRAL_MAX_ROWS = 20_000  # scikit-learn spectral clustering: one seed above this (its graph is fixed)


# --------------------------------------------------------------------------- systems


def fit_ray_ncut(X, k, seed, params):
    est = NeuralCut(n_clusters=k, random_state=seed, **params).fit(X)
    return est.labels_, est.predict, est


def fit_kmeans(Z, k, seed):
    from sklearn.cluster import KMeans

    km = KMeans(k, n_init=10, random_state=seed).fit(Z)
    return km.labels_, km.predict, km


def fit_gmm(Z, k, seed):
    from sklearn.mixture import GaussianMixture

    # Full covariances up to 100 features; above, k full d x d matrices are slow and singular
    # on pixels, so the mixture is diagonal there.
    kind = "full" if Z.shape[1] <= GMM_FULL_MAX_FEATURES else "diag"
    gmm = GaussianMixture(k, covariance_type=kind, random_state=seed).fit(Z)
    return gmm.predict(Z), gmm.predict, gmm


def fit_spectral(Z, k, seed):
    from sklearn.cluster import SpectralClustering

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        sc = SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed)
        return sc.fit_predict(Z), None, sc


def fit_umap_gmm(Z, k, seed):
    import umap
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_components=min(10, Z.shape[1]), n_neighbors=15, min_dist=0.0, random_state=seed)
        E = reducer.fit_transform(Z)
    gmm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(E)
    return gmm.predict(E), None, gmm


# --------------------------------------------------------------------------- scoring


def min_recall(table: np.ndarray) -> float:
    """Smallest share of a true class in its matched cluster (Hungarian); 0 = swallowed."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-table)
    recall = np.zeros(table.shape[0])
    recall[rows] = table[rows, cols] / np.maximum(table[rows].sum(1), 1)
    return float(recall.min())


def scores(part) -> dict:
    s = {k: v for k, v in clustering_scores(part).items() if k != "n"}
    s["min_recall"] = min_recall(part.table.astype(float))
    s["largest"] = float(part.table.sum(0).max() / part.table.sum())  # biggest cluster's share of rows
    return s


def label_big(name: str, rows: int, predict, scaled: bool, scaler):
    part = None
    for _, Xc, yc in builtin_chunks(parse_builtin(f"builtin:{name}?n={rows}")):
        part = merge_contingency(part, contingency_partial(yc, predict(scaler.transform(Xc) if scaled else Xc)))
    return part


# --------------------------------------------------------------------------- one set


def bench_set(name, seeds, systems, params, variant, cached, big_rows):
    X, y = datasets.load(name)
    k = int(y.max()) + 1
    scored = y >= 0  # shape sets label background noise -1: clustered by all, scored by none
    scaler = FeatureScaler.fit(params.get("scaling", "auto"), X)
    Z = scaler.transform(X)  # the features every baseline sees: ray_ncut's scaling of this set
    print(f"[quality] {name}: {X.shape[0]} rows x {X.shape[1]} features, k={k}, scaling {scaler.mode}", flush=True)
    results = []
    for seed in seeds:
        for system in systems:
            label = variant if system == "ray_ncut" else system
            key = (name, label, seed, scaler.mode)
            if key in cached:
                results.append(cached[key])
                continue
            if system == "spectral" and len(X) > SPECTRAL_MAX_ROWS and seed != seeds[0]:
                continue
            t0 = time.perf_counter()
            if system == "ray_ncut":
                labels, predict, est = fit_ray_ncut(X, k, seed, params)
            else:
                labels, predict, est = {"kmeans": fit_kmeans, "gmm": fit_gmm, "spectral": fit_spectral,
                                        "umap+gmm": fit_umap_gmm}[system](Z, k, seed)
            seconds = time.perf_counter() - t0
            r = {"set": name, "system": label, "seed": seed, "scaling": scaler.mode, "rows": len(X),
                 "shape": [len(X), X.shape[1], k], "seconds": seconds,
                 **scores(contingency_partial(y[scored], labels[scored]))}
            if big_rows and name in ("rings", "moons") and predict is not None:
                r["big"] = {"rows": big_rows, **scores(label_big(name, big_rows, predict, system != "ray_ncut", scaler))}
            results.append(r)
            print(f"  {label:22s} seed {seed}: acc {r['acc']:.3f} nmi {r['nmi']:.3f} largest {r['largest']:.2f} "
                  f"min recall {r['min_recall']:.2f} {seconds:.1f}s"
                  + (f"  | {big_rows} rows: acc {r['big']['acc']:.4f}" if "big" in r else ""), flush=True)
    return results


# --------------------------------------------------------------------------- table


def summarise(results):
    rows = []
    for key in dict.fromkeys((r["set"], r["system"]) for r in results):
        rs = [r for r in results if (r["set"], r["system"]) == key]
        acc = [r["acc"] for r in rs]
        rows.append({"set": key[0], "system": key[1], "seeds": len(rs), "acc": statistics.mean(acc),
                     "acc_spread": max(acc) - min(acc), "nmi": statistics.mean(r["nmi"] for r in rs),
                     "ari": statistics.mean(r["ari"] for r in rs), "min_recall": min(r["min_recall"] for r in rs),
                     "seconds": statistics.median(r["seconds"] for r in rs)})
    return rows


def verdicts(summary, variant):
    """Per set: ray_ncut's ACC against k-means and against the best baseline."""
    by = {(r["set"], r["system"]): r["acc"] for r in summary}
    out = []
    for name in dict.fromkeys(r["set"] for r in summary):
        if (name, variant) not in by:
            continue
        ours = by[(name, variant)]
        base = {s: by[(name, s)] for s in BASELINES if (name, s) in by}
        if not base:
            continue
        best_name = max(base, key=base.get)
        row = {"set": name, "ray_ncut": ours, **base, "vs_kmeans": ours - base.get("kmeans", np.nan),
               "vs_best": ours - base[best_name], "best": best_name}
        out.append(row)
    return out


def tally(rows) -> str:
    def count(col):
        d = [r[col] for r in rows if not np.isnan(r[col])]
        return (f"{sum(x >= TIE for x in d)} wins, {sum(abs(x) < TIE for x in d)} ties, "
                f"{sum(x <= -TIE for x in d)} losses (median {statistics.median(d):+.3f})") if d else "n/a"
    return f"against k-means: {count('vs_kmeans')}; against the best baseline: {count('vs_best')}"


def markdown(rows, shapes) -> str:
    """The README's compact table: ACC per set and system, ray_ncut's margin over k-means and over the best."""
    out = ["| set | kind | rows x features, k | ray_ncut | k-means | GMM | spectral | UMAP + GMM | vs k-means | vs best |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        n, d, k = shapes[r["set"]]
        cells = [f"{r[s]:.3f}" if s in r else "-" for s in ("ray_ncut", *BASELINES)]
        best = f"{max(r.get(s, -1) for s in BASELINES):.3f}"
        cells = [f"**{c}**" if c != "-" and c >= best else c for c in cells]  # at or above the best baseline
        out.append(f"| {r['set']} | {datasets.SETS[r['set']].kind} | {n:,} x {d}, {k} | " + " | ".join(cells)
                   + f" | {r['vs_kmeans']:+.3f} | {r['vs_best']:+.3f} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(datasets.SETS), help="comma-separated; default: all")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--systems", default="ray_ncut," + ",".join(BASELINES))
    p.add_argument("--ray-ncut", default="{}", help="JSON overrides of NeuralCut's defaults")
    p.add_argument("--name", default="ray_ncut", help="the name ray_ncut's row gets (for variants)")
    p.add_argument("--big-rows", type=int, default=0, help="rings/moons: also label this many generated rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fresh", action="store_true", help="re-measure baselines already in --out")
    p.add_argument("--out", default="bench/results/quality.json")
    args = p.parse_args(argv)
    import torch  # here, not above: ray_ncut is imported first (it sets OpenMP's waits before torch loads)

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    params = json.loads(args.ray_ncut)
    systems = args.systems.split(",")
    previous = []
    if os.path.exists(args.out) and not args.fresh:
        with open(args.out) as f:
            previous = json.load(f).get("runs", [])
    # Baselines depend only on (set, seed, the features' scaling); ray_ncut variants are always re-run.
    cached = {(r["set"], r["system"], r["seed"], r.get("scaling")): r for r in previous if r["system"] in BASELINES}
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "torch_threads": args.threads,
            "command": "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "sources": {n: {"kind": s.kind, "source": s.source} for n, s in datasets.SETS.items()}}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    names = args.sets.split(",")
    # Kept from --out: other sets, other variants, and every system not run now (those run now are re-listed).
    results = [r for r in previous if not (r["set"] in names and (r["system"] == args.name and "ray_ncut" in systems
                                                                   or r["system"] in BASELINES and r["system"] in systems))]
    for name in names:
        results += bench_set(name, seeds, systems, params, args.name, cached, args.big_rows)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:  # after every set, so a long run keeps what it measured
            json.dump({**meta, "runs": results}, f, indent=1)
        os.replace(tmp, args.out)
    summary = summarise([r for r in results if r["set"] in names])
    print()
    print(format_table(summary, ("set", "system", "seeds", "acc", "acc_spread", "nmi", "ari", "min_recall", "seconds")))
    rows = verdicts(summary, args.name)
    if rows:
        print()
        print(format_table(rows, ("set", "ray_ncut", *BASELINES, "vs_kmeans", "vs_best", "best")))
        print(f"\n{args.name}: {tally(rows)}")
        shapes = {r["set"]: r["shape"] for r in results if "shape" in r}
        if all(r["set"] in shapes for r in rows):
            print("\n" + markdown(rows, shapes))
    print(f"\nwritten to {args.out} ({meta['date']}, {meta['machine']})")


if __name__ == "__main__":
    main()
