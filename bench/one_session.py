"""jobs/cluster.py end to end (one Ray session: train + label every row) beside scikit-learn's
spectral clustering, on real sets; where the time goes.

    python bench/one_session.py                    # digits and Fashion-MNIST 70k (~10 min on 2 cores)
    python bench/one_session.py --sets digits

Each run of jobs/cluster.py is its own process (process start, Ray start, scan, preparation,
training, labelling, metrics, report, shutdown): its wall time is what a user waits for. Spectral
clustering (affinity="nearest_neighbors", 10 neighbours) runs in this process on the same rows,
scaled the way ray_ncut scales them. Writes --out (JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut.compare import format_table  # noqa: E402
from ray_ncut.data import load_builtin  # noqa: E402
from ray_ncut.metrics import accuracy  # noqa: E402
from ray_ncut.scaling import FeatureScaler  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SETS = {"digits": "builtin:digits", "fashion-mnist": "builtin:fashion-mnist"}


def run_cluster_job(spec: str, work: str, engine: str) -> dict:
    """``engine`` "auto": as on a laptop with no cluster (small data works in the job's process);
    "ray": an embedded Ray cluster of the job's own, the path every larger run takes."""
    out = os.path.join(work, "c")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", "cluster.py"), "--data", spec, "--engine",
                           engine, "--out", out, "--label-column", "label"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    summary = json.load(open(os.path.join(out, "model", "summary.json")))
    metrics = json.load(open(os.path.join(out, "labels", "metrics.json")))
    return {"system": f"ray_ncut jobs/cluster.py --engine {engine}", "seconds": wall, "acc": metrics["ground_truth"]["acc"],
            "scan_s": summary["scan_seconds"], "prepare_s": summary["prepare_seconds"],
            "train_s": summary["train_seconds"], "train_total_s": summary["total_seconds"],
            "label_total_s": metrics["seconds"]}


def run_spectral(spec: str) -> dict:
    from sklearn.cluster import SpectralClustering

    X, y = load_builtin(spec)
    Z = FeatureScaler.fit("auto", X).transform(X)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = SpectralClustering(len(set(y.tolist())), affinity="nearest_neighbors", n_neighbors=10,
                                    random_state=0).fit_predict(Z)
    return {"system": "scikit-learn SpectralClustering", "seconds": time.perf_counter() - t0,
            "acc": accuracy(y, labels)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "one_session.json"))
    args = p.parse_args(argv)
    rows = []
    for name in args.sets.split(","):
        ours = []
        for engine in ("auto", "ray"):
            with tempfile.TemporaryDirectory() as work:
                ours.append({"set": name, **run_cluster_job(SETS[name], work, engine)})
        theirs = {"set": name, **run_spectral(SETS[name])}
        for row in ours:
            row["x_faster_than_spectral"] = theirs["seconds"] / row["seconds"]
        rows += [*ours, theirs]
        print(format_table(rows, ("set", "system", "seconds", "acc", "x_faster_than_spectral", "scan_s",
                                  "prepare_s", "train_s", "train_total_s", "label_total_s")), flush=True)
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "command": " ".join(["python", "bench/one_session.py", *(argv or sys.argv[1:])])}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
