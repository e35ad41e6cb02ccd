"""Large k (issue 27): ray_ncut against faiss k-means and MiniBatchKMeans on embedding-like rows.

    python bench/large_k.py                                  # 200,000 x 256, k = 1,000 (CPU target)
    python bench/large_k.py --rows 50000 --dim 64 --k 200    # a quick look
    python bench/large_k.py --rows 1280000 --dim 768         # the GPU size

The rows: unit-norm, k clusters of Zipf-distributed sizes (every cluster at least one row),
each spread along its own random ``--subspace``-dimensional subspace around a random centre,
with isotropic noise, so that k-means (spherical clusters) is imperfect. Each system runs in
its own forked process on the same rows and reports ACC (Hungarian-matched), NMI, seconds
end to end (fit + labelling every row) and the process's peak resident memory. ray_ncut fits
``NeuralCut`` (defaults, true k) on ``--fit-rows`` random rows and labels all of them, as the
jobs train on a sample; faiss runs 25 iterations on every row (its own subsampling aside);
MiniBatchKMeans scikit-learn's defaults with n_init=3.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut.metrics import clustering_scores, contingency_partial  # noqa: E402


def embedding_clusters(n: int, d: int, k: int, seed: int = 0, subspace: int = 8, spread: float = 0.25,
                       noise: float = 0.05, zipf: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 unit rows and (n,) labels: k clusters, sizes ~ 1 / rank**zipf."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, k + 1) ** zipf
    y = rng.permutation(np.repeat(np.arange(k), 1 + rng.multinomial(n - k, weights / weights.sum())))
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = np.linalg.qr(rng.normal(size=(k, d, subspace)))[0].astype(np.float32)  # (k, d, subspace)
    X = np.empty((n, d), np.float32)
    for start in range(0, n, 10_000):  # (10,000, d, subspace) at a time
        part = y[start:start + 10_000]
        coef = rng.normal(0, spread, (len(part), subspace)).astype(np.float32)
        rows = centres[part] + np.einsum("nds,ns->nd", bases[part], coef)
        rows += rng.normal(0, noise / np.sqrt(d), rows.shape)
        X[start:start + len(part)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return X, y


def run_ray_ncut(X, k, seed, fit_rows):
    from ray_ncut import NeuralCut

    fit_on = np.random.default_rng(seed).permutation(len(X))[:fit_rows]
    model = NeuralCut(k, random_state=seed).fit(X[fit_on])
    return model.predict(X)


def run_faiss(X, k, seed, fit_rows):
    import faiss

    km = faiss.Kmeans(X.shape[1], k, niter=25, seed=seed)
    km.train(X)
    return km.index.search(X, 1)[1][:, 0]


def run_minibatch(X, k, seed, fit_rows):
    from sklearn.cluster import MiniBatchKMeans

    return MiniBatchKMeans(k, n_init=3, random_state=seed).fit_predict(X)


SYSTEMS = {"ray_ncut": run_ray_ncut, "faiss k-means": run_faiss, "MiniBatchKMeans": run_minibatch}


def _child(name, X, k, seed, fit_rows, conn):
    t0 = time.perf_counter()
    labels = SYSTEMS[name](X, k, seed, fit_rows)
    seconds = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    conn.send((np.asarray(labels, dtype=np.int64), seconds, peak_gib))


def measure(name, X, y, k, seed, fit_rows) -> dict:
    parent, child = mp.get_context("fork").Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(name, X, k, seed, fit_rows, child))
    proc.start()
    child.close()  # the child's end: recv() then ends when the child dies instead of waiting forever
    try:
        labels, seconds, peak = parent.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"{name}: its process died with exit code {proc.exitcode} before reporting") from None
    proc.join()
    scores = clustering_scores(contingency_partial(y, labels))
    return {"system": name, "acc": round(scores["acc"], 4), "nmi": round(scores["nmi"], 4),
            "seconds": round(seconds, 1), "peak_gib": round(peak, 2),
            "non_empty": int(len(np.unique(labels)))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--fit-rows", type=int, default=50_000, help="rows NeuralCut is fitted on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    unknown = sorted(set(args.systems.split(",")) - set(SYSTEMS))
    if unknown:
        p.error(f"--systems: unknown {unknown}; known: {','.join(SYSTEMS)}")
    X, y = embedding_clusters(args.rows, args.dim, args.k, args.seed)
    sizes = np.bincount(y)
    print(f"{args.rows:,} x {args.dim}, k = {args.k} (cluster sizes {sizes.max():,} to {sizes.min():,}), "
          f"{os.cpu_count()} CPUs", flush=True)
    results = []
    for name in args.systems.split(","):
        results.append(measure(name, X, y, args.k, args.seed, args.fit_rows))
        print(json.dumps(results[-1]), flush=True)
    base = {r["system"]: r for r in results}.get("faiss k-means")
    print("\n| system | ACC | NMI | seconds | peak GiB | non-empty | time / faiss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = f"{r['seconds'] / base['seconds']:.1f}x" if base else "-"
        print(f"| {r['system']} | {r['acc']:.3f} | {r['nmi']:.3f} | {r['seconds']} | {r['peak_gib']} | "
              f"{r['non_empty']} | {ratio} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
