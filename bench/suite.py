"""The benchmark suite: ray_ncut end to end against the baselines, one command, one table.

    python bench/suite.py                                  # every data set and system (~1 h on 2 cores)
    python bench/suite.py --sets digits,rings-1m --systems ray_ncut,kmeans

Every (data set, system) pair runs as its own process tree in the same run, so its
wall time and peak memory are its own (:mod:`procmem`: summed PSS of the process
and every descendant, Ray's daemons and workers included).

- ray_ncut: the two jobs a user runs, ``jobs/train.py`` then ``jobs/assign.py
  --label-column label``, each with ``--engine ray`` (``--engine``): each starts an embedded Ray
  cluster, the path every run over 100M feature values takes, so that 1M and 10M rows compare
  like with like (``--engine auto`` runs small sets in the jobs' own processes, as a laptop
  user with no cluster gets them); stage times come
  from their ``summary.json`` / ``metrics.json``. ACC/NMI/ARI are the job's own,
  over every row. The labelling rate is compared with a bare single-process torch
  forward (scaling + softmax + argmax, all threads, rows already in memory) of
  the same model on up to 1M rows of the same data: ``label_rows_s`` is the whole
  labelling stage (actor pool start-up included), ``steady_rows_s`` the rate once
  the first unit is back (the pool is up), which ``x_bare_forward`` compares.
- baselines: scikit-learn KMeans and MiniBatchKMeans and faiss k-means (library
  defaults; k-means++), and scikit-learn SpectralClustering (``affinity=
  "nearest_neighbors"``, 10 neighbours), each on all rows in memory, scaled the
  way ray_ncut scales them (``FeatureScaler("auto")``). Spectral clustering is
  stopped at ``--spectral-timeout`` seconds or when its memory passes
  ``--memory-cap`` of RAM; the row then says which limit it reached, and when.
- Ncut: every labelling is scored on one kNN heat-kernel graph per data set (the
  labelling job's graph: 10 neighbours, automatic sigma) over the first 100k rows
  (the synthetic rows are i.i.d.; the real sets have fewer rows).

Writes ``--out`` (JSON: meta, rows, checks) and the same rows as CSV beside it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from procmem import run_measured, total_memory_gb  # noqa: E402

from ray_ncut.compare import format_table  # noqa: E402
from ray_ncut.data import load_builtin  # noqa: E402
from ray_ncut.data.builtin import builtin_chunks, parse_builtin  # noqa: E402
from ray_ncut.metrics import clustering_scores, contingency_partial  # noqa: E402
from ray_ncut.scaling import FeatureScaler  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SETS = {
    "rings-1m": "builtin:rings?n=1000000",
    "rings-10m": "builtin:rings?n=10000000",
    "moons-1m": "builtin:moons?n=1000000",
    "moons-10m": "builtin:moons?n=10000000",
    "blobs-2m": "builtin:blobs?n=2000000&d=64&k=20",
    "fashion-mnist": "builtin:fashion-mnist",
    "digits": "builtin:digits",
}
SYSTEMS = ("ray_ncut", "kmeans", "minibatch-kmeans", "faiss-kmeans", "spectral")
BASELINE_NAMES = {"kmeans": "scikit-learn KMeans", "minibatch-kmeans": "scikit-learn MiniBatchKMeans",
                  "faiss-kmeans": "faiss k-means", "spectral": "scikit-learn spectral"}
SCORE_ROWS = 100_000  # the Ncut graph's rows
BARE_ROWS = 1_000_000  # rows of the bare forward pass
TABLE = ("set", "system", "rows", "acc", "nmi", "ari", "ncut", "total_s", "x_ray_ncut_time", "peak_gb",
         "label_rows_s", "steady_rows_s", "x_bare_forward", "stages", "note")


# --------------------------------------------------------------------------- data


def first_rows(spec: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n rows of a built-in set, generated chunk by chunk (never the whole set)."""
    Xs, ys, have = [], [], 0
    for _, X, y in builtin_chunks(parse_builtin(spec)):
        Xs.append(X[: n - have])
        ys.append(y[: n - have])
        have += len(Xs[-1])
        if have >= n:
            break
    return np.concatenate(Xs), np.concatenate(ys)


# --------------------------------------------------------------------------- baselines (child process)


def _fit_labels(system: str, Z: np.ndarray, k: int, seed: int) -> np.ndarray:
    if system == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(k, random_state=seed).fit_predict(Z)
    if system == "minibatch-kmeans":
        from sklearn.cluster import MiniBatchKMeans

        return MiniBatchKMeans(k, random_state=seed).fit_predict(Z)
    if system == "faiss-kmeans":
        import faiss

        km = faiss.Kmeans(Z.shape[1], k, niter=25, seed=seed + 1, verbose=False)
        km.train(Z)
        return km.index.search(Z, 1)[1].ravel()
    from sklearn.cluster import SpectralClustering

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return SpectralClustering(k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed).fit_predict(Z)


def run_baseline(system: str, spec: str, seed: int, out_prefix: str) -> None:
    """Child process: load, scale, fit; writes ``out_prefix.json`` and the scored rows' labels."""
    t0 = time.perf_counter()
    X, y = load_builtin(spec)
    t_load = time.perf_counter()
    Z = np.ascontiguousarray(FeatureScaler.fit("auto", X).transform(X))  # (n, d) float32
    del X
    t_scale = time.perf_counter()
    labels = _fit_labels(system, Z, int(y.max()) + 1, seed)
    t_fit = time.perf_counter()
    np.save(out_prefix + ".npy", labels[:SCORE_ROWS].astype(np.int32))
    result = {k: v for k, v in clustering_scores(contingency_partial(y, labels)).items() if k != "n"}
    result["stages"] = {"load": t_load - t0, "scale": t_scale - t_load, "fit": t_fit - t_scale}
    with open(out_prefix + ".json", "w") as f:
        json.dump(result, f)


def _last_line(path: str) -> str:
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1][:200] if lines else "no output"


def measure_baseline(system, name, spec, seed, work, args) -> dict:
    prefix = os.path.join(work, f"{name}-{system}")
    caps = {"timeout_s": args.spectral_timeout, "memory_cap_gb": args.memory_cap * total_memory_gb()} \
        if system == "spectral" else {}
    m = run_measured([sys.executable, __file__, "--one", system, "--spec", spec, "--seed", str(seed),
                      "--result", prefix], prefix + ".log", **caps)
    row = {"system": BASELINE_NAMES[system], "total_s": m.wall_s, "peak_gb": m.peak_gb}
    if m.stopped or m.returncode != 0:
        why = m.stopped or f"exit {m.returncode}: {_last_line(prefix + '.log')}"
        row["note"] = f"did not finish: {why}, after {m.wall_s:.0f} s at {m.peak_gb:.1f} GB"
        return row
    with open(prefix + ".json") as f:
        result = json.load(f)
    row.update({k: result[k] for k in ("acc", "nmi", "ari")})
    row["stages"] = " ".join(f"{k} {v:.1f}" for k, v in result["stages"].items())
    row["_scored_labels"] = np.load(prefix + ".npy")
    return row


# --------------------------------------------------------------------------- ray_ncut (the jobs)


def bare_forward_rate(model_dir: str, X: np.ndarray, repeats: int = 3, chunk: int = 65536) -> float:
    """Rows/s of scaling + softmax(head(x)) + argmax over X (n, d) in this process, all threads
    (on the GPU where the model loads onto one, the host-to-device copy included)."""
    import torch

    from ray_ncut.model import ClusterModel

    torch.set_num_threads(os.cpu_count())
    model = ClusterModel.load(model_dir, device="auto")  # the GPU where there is one
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, len(X), chunk):
            model.assign(X[s : s + chunk])
        rates.append(len(X) / (time.perf_counter() - t0))
    return statistics.median(rates)


def measure_ray_ncut(name, spec, seed, work, args, X_bare) -> dict:
    run, labels = os.path.join(work, f"{name}-run"), os.path.join(work, f"{name}-labels")
    k = parse_builtin(spec).n_classes
    env = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    train = run_measured([sys.executable, os.path.join(ROOT, "jobs", "train.py"), "--data", spec, "--k", str(k),
                          "--out", run, "--seed", str(seed), "--overwrite", "--engine", args.engine,
                          *args.train_args.split()],
                         run + ".log", env=env)
    if train.returncode != 0:
        return {"system": "ray_ncut", "note": f"train job failed (exit {train.returncode}, see {run}.log)"}
    assign = run_measured([sys.executable, os.path.join(ROOT, "jobs", "assign.py"), "--model", run, "--data", spec,
                           "--out", labels, "--label-column", "label", "--overwrite", "--engine", args.engine],
                          labels + ".log", env=env)
    if assign.returncode != 0:
        return {"system": "ray_ncut", "note": f"assign job failed (exit {assign.returncode}, see {labels}.log)"}
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(labels, "metrics.json")) as f:
        m = json.load(f)
    bare = bare_forward_rate(run, X_bare)
    truth, a = m["ground_truth"], m["stage_seconds"]
    stages = (f"train job {train.wall_s:.1f} (scan {s['scan_seconds']:.1f}, prepare {s['prepare_seconds']:.1f}, "
              f"train {s['train_seconds']:.1f} of which loop {s['loop_seconds']:.1f}) + assign job {assign.wall_s:.1f} "
              f"(start {a['start']:.1f}, label {a['label']:.1f}, validate {a['validate']:.1f}, ncut {a['ncut']:.1f})")
    return {
        "system": "ray_ncut", "acc": truth["acc"], "nmi": truth["nmi"], "ari": truth["ari"],
        "total_s": train.wall_s + assign.wall_s, "peak_gb": max(train.peak_gb, assign.peak_gb),
        "label_rows_s": m["rows_per_second"], "steady_rows_s": m["steady_rows_per_second"],
        "x_bare_forward": m["steady_rows_per_second"] / bare, "stages": stages,
        "detail": {"train_wall_s": train.wall_s, "assign_wall_s": assign.wall_s, "train_peak_gb": train.peak_gb,
                   "assign_peak_gb": assign.peak_gb, "driver_peak_gb": max(train.driver_peak_gb, assign.driver_peak_gb),
                   "processes": max(train.processes, assign.processes), "bare_forward_rows_s": bare,
                   "bare_forward_rows": len(X_bare), "summary": s, "job_ncut": m["normalized_cut"]},
        "_model": run,
    }


# --------------------------------------------------------------------------- one data set


def bench_set(name: str, systems, seed: int, work: str, args) -> list[dict]:
    from ray_ncut import NeuralCut
    from ray_ncut.knn import knn_graph

    spec = SETS[name]
    info = parse_builtin(spec)
    X_bare, _ = first_rows(spec, BARE_ROWS)  # the score rows are its first SCORE_ROWS
    X_score = X_bare[:SCORE_ROWS]
    graph = knn_graph(FeatureScaler.fit("auto", X_score).transform(X_score))
    print(f"[suite] {name}: {info.n_rows:,} rows x {X_score.shape[1]} features, k={info.n_classes}", flush=True)
    rows = []
    for system in systems:
        if system == "ray_ncut":
            r = measure_ray_ncut(name, spec, seed, work, args, X_bare)
            if "_model" in r:
                r["_scored_labels"] = NeuralCut.load(r.pop("_model")).predict(X_score)
        else:
            r = measure_baseline(system, name, spec, seed, work, args)
        scored = r.pop("_scored_labels", None)
        if scored is not None:
            r["ncut"] = graph.cut(np.asarray(scored, np.int64), info.n_classes)["ncut"]
        r = {"set": name, "rows": info.n_rows, **r}
        rows.append(r)
        print("  " + "  ".join(f"{k} {_cell(r.get(k))}" for k in TABLE[1:] if k in r), flush=True)
    ours = next((r for r in rows if r["system"] == "ray_ncut" and "total_s" in r and "acc" in r), None)
    for r in rows:
        if ours and "total_s" in r:
            r["x_ray_ncut_time"] = r["total_s"] / ours["total_s"]
    return rows


def _cell(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- targets


def checks(rows: list[dict]) -> list[dict]:
    """The issue's targets, from the rows measured in this run (skipped where a set was not run)."""
    get = {(r["set"], r["system"]): r for r in rows}
    out = []

    def add(what, value, ok):
        out.append({"check": what, "value": value, "ok": bool(ok)})

    r10 = get.get(("rings-10m", "ray_ncut"))
    if r10 and "total_s" in r10:
        add("10M rings end to end < 300 s", f"{r10['total_s']:.0f} s", r10["total_s"] < 300)
    for fam in ("rings", "moons"):
        a, b = get.get((f"{fam}-1m", "ray_ncut")), get.get((f"{fam}-10m", "ray_ncut"))
        if a and b and "peak_gb" in a and "peak_gb" in b:
            add(f"{fam}: peak memory 10M / 1M <= 1.5", f"{b['peak_gb'] / a['peak_gb']:.2f}",
                b["peak_gb"] <= 1.5 * a["peak_gb"])
            add(f"{fam}: time 10M / 1M <= 10 (linear or better)", f"{b['total_s'] / a['total_s']:.2f}",
                b["total_s"] <= 10 * a["total_s"])
    f, sp = get.get(("fashion-mnist", "ray_ncut")), get.get(("fashion-mnist", "scikit-learn spectral"))
    if f and sp and "acc" in f and "acc" in sp:
        add("fashion-mnist: >= 5x faster than spectral", f"{sp['total_s'] / f['total_s']:.1f}x",
            sp["total_s"] >= 5 * f["total_s"])
        add("fashion-mnist: higher ACC than spectral", f"{f['acc']:.3f} vs {sp['acc']:.3f}", f["acc"] > sp["acc"])
    # Throughput at scale: on the small sets the actor pool's start-up is most of the time.
    ratios = [r["x_bare_forward"] for r in rows if "x_bare_forward" in r and r["rows"] >= 1_000_000]
    if ratios:
        add("labelling >= 0.5 of the bare forward (each set of >= 1M rows)", f"{min(ratios):.2f} (lowest)",
            min(ratios) >= 0.5)
    return out


# --------------------------------------------------------------------------- main


def write_outputs(path: str, meta: dict, rows: list[dict], checked: list[dict]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({**meta, "rows": rows, "checks": checked}, f, indent=1)
    with open(os.path.splitext(path)[0] + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spectral-timeout", type=float, default=300, help="seconds before spectral clustering is stopped")
    p.add_argument("--memory-cap", type=float, default=0.75, help="share of RAM at which spectral clustering is stopped")
    p.add_argument("--engine", default="ray", choices=("auto", "ray", "local"), help="the jobs' --engine (default ray)")
    p.add_argument("--train-args", default="", help="extra flags for jobs/train.py, e.g. '--steps 300'")
    p.add_argument("--out", default="bench/results/suite.json")
    p.add_argument("--one", choices=SYSTEMS[1:], help=argparse.SUPPRESS)  # child process: one baseline
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        run_baseline(args.one, args.spec, args.seed, args.result)
        return
    sets, systems = args.sets.split(","), args.systems.split(",")
    unknown = [s for s in sets if s not in SETS] + [s for s in systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown set or system: {', '.join(unknown)}")
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {total_memory_gb():.0f} GB RAM, {_gpu_name()}",
            "command": "python bench/suite.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    work = tempfile.mkdtemp(prefix="ray_ncut_suite_")
    rows: list[dict] = []
    try:
        for name in sets:
            rows += bench_set(name, systems, args.seed, work, args)
            write_outputs(args.out, meta, rows, checks(rows))  # after every set: a long run keeps what it measured
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checked = checks(rows)
    write_outputs(args.out, meta, rows, checked)
    print(f"\n{meta['date']}, {meta['machine']}: {meta['command']}\n")
    print(format_table(rows, TABLE))
    print()
    print(format_table(checked, ("check", "value", "ok")))
    print(f"\nwritten to {args.out} and {os.path.splitext(args.out)[0]}.csv")


if __name__ == "__main__":
    main()
