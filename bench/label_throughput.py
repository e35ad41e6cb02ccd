"""Labelling throughput end to end (Parquet in, labels out) against a bare torch forward pass.

    python bench/label_throughput.py [--rows 2000000] [--dim 64] [--k 20] [--repeats 3]

Writes a Parquet corpus (features as a fixed-size list column, 100k-row row
groups), trains a default-size head (d -> 512 -> 512 -> k) in memory on a sample,
then measures on the same rows in the same run, medians over ``--repeats``:

- bare forward: scaling + ``softmax(head(x))`` + argmax over the rows already in
  memory, one process, with 1 and with all threads;
- ray_ncut labelling: ``jobs/assign.py``'s library call (read Parquet, label, write
  Parquet, all in the actor pool), rows/s of that phase; plus the whole job
  (validation of the staged output, the kNN-cut metric on a 100k sample, publish);
- ``jobs/assign.py`` as a user runs it: a process of its own, from its start to the published
  labels (Ray's start and shutdown included), with the peak memory of its process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

from procmem import run_measured  # noqa: E402

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.compare import format_table  # noqa: E402
from ray_ncut.data.builtin import builtin_chunks, parse_builtin  # noqa: E402


def write_corpus(spec: str, folder: str, files: int) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks = list(builtin_chunks(parse_builtin(spec)))
    X = np.concatenate([c[1] for c in chunks])
    y = np.concatenate([c[2] for c in chunks])
    for i, idx in enumerate(np.array_split(np.arange(len(X)), files)):
        feats = pa.FixedSizeListArray.from_arrays(pa.array(X[idx].ravel()), X.shape[1])
        table = pa.table({"id": idx.astype(np.int64), "features": feats, "label": y[idx]})
        pq.write_table(table, os.path.join(folder, f"part-{i:03d}.parquet"), row_group_size=100_000)
    return X, y


def bare_forward(model: NeuralCut, X: np.ndarray, threads: int, chunk: int = 65536) -> float:
    import torch  # here, not above: ray_ncut is imported first (it sets OpenMP's waits before torch loads)

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for s in range(0, len(X), chunk):
        model.model_.assign(X[s : s + chunk])
    return len(X) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="bench/results/label_throughput.json")
    args = p.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    spec = f"builtin:blobs?n={args.rows}&d={args.dim}&k={args.k}"
    work = tempfile.mkdtemp(prefix="ray_ncut_bench_")
    try:
        data = os.path.join(work, "data")
        os.makedirs(data)
        X, y = write_corpus(spec, data, files=10)
        sample = np.random.default_rng(0).choice(len(X), 20_000, replace=False)
        model = NeuralCut(n_clusters=args.k, steps=200, random_state=0).fit(X[sample])
        model.save(os.path.join(work, "model"))

        import ray

        from ray_ncut.data.readers import ColumnSpec
        from ray_ncut.pipeline.label import AssignOptions, assign_run

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        bare1, bare_all, ours, whole = [], [], [], []
        for _ in range(args.repeats):
            bare1.append(bare_forward(model, X, 1))
            bare_all.append(bare_forward(model, X, os.cpu_count()))
            opts = AssignOptions(model=os.path.join(work, "model"), data=data, out=os.path.join(work, "labels"),
                                 columns=ColumnSpec(label_column="label"), overwrite=True)
            m = assign_run(opts, progress=lambda *_: None)
            ours.append(m["rows_per_second"])
            whole.append(m["seconds"])
        ray.shutdown()
        job = [sys.executable, os.path.join(ROOT, "jobs", "assign.py"), "--model", os.path.join(work, "model"),
               "--data", data, "--out", os.path.join(work, "job"), "--overwrite", "--engine", "ray"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        runs = [run_measured(job, os.path.join(work, "job.log"), env=env) for _ in range(args.repeats)]
        if any(r.returncode != 0 for r in runs):
            raise RuntimeError(open(os.path.join(work, "job.log")).read()[-2000:])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    b1, ball, o = statistics.median(bare1), statistics.median(bare_all), statistics.median(ours)
    wall = statistics.median(r.wall_s for r in runs)
    rows = [
        {"method": "bare torch forward, 1 thread", "rows/s": b1, "ratio to bare (all threads)": b1 / ball},
        {"method": f"bare torch forward, {os.cpu_count()} threads", "rows/s": ball, "ratio to bare (all threads)": 1.0},
        {"method": "ray_ncut labelling (Parquet in, labels out)", "rows/s": o, "ratio to bare (all threads)": o / ball},
        {"method": "ray_ncut whole job (+ validate, metrics, publish)", "rows/s": args.rows / statistics.median(whole),
         "ratio to bare (all threads)": args.rows / statistics.median(whole) / ball},
        {"method": "jobs/assign.py, process start to published labels", "rows/s": args.rows / wall,
         "ratio to bare (all threads)": args.rows / wall / ball, "peak GB": statistics.median(r.peak_gb for r in runs)},
    ]
    print(f"{spec}, head {args.dim}-256-256-{args.k}, median of {args.repeats}, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} CPUs, acc {m['ground_truth']['acc']:.3f}")
    print(format_table(rows, ("method", "rows/s", "ratio to bare (all threads)", "peak GB")))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"data": spec, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
