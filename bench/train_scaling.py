"""Training throughput: Ray Train with 1 and 2 workers against the same loop in one process.

    python bench/train_scaling.py [--data builtin:blobs?n=100000&d=32&k=10] [--steps 300] [--repeats 3]

Every configuration trains the same head (random start, so only the cut-loss loop
is timed) on the same scaled sample in the same run, and the table prints medians
over ``--repeats`` runs and ratios to the single-process loop:

- loop steps/s: steps divided by the time inside the training loop;
- end-to-end s: wall time of the whole training call (Ray: worker start-up, data
  ingest, checkpoints included);
- stable step: first step after which the smoothed loss stays within 2% (of the
  loss range) of its final value; time to stable = start-up (end-to-end minus
  loop time) plus the loop time up to that step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut.compare import format_table  # noqa: E402
from ray_ncut.config import GraphConfig, TrainConfig  # noqa: E402
from ray_ncut.data import load_builtin  # noqa: E402
from ray_ncut.engine import fit_head, random_batches  # noqa: E402
from ray_ncut.model import CutHead, HeadConfig  # noqa: E402
from ray_ncut.scaling import FeatureScaler  # noqa: E402


def stable_step(losses, window=25, tol=0.02) -> int:
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    span = max(smooth.max() - smooth.min(), 1e-12)
    off = np.abs(smooth - smooth[-1]) > tol * span
    last_off = np.nonzero(off)[0]
    return int(last_off[-1] + 1 + window - 1) if len(last_off) else window - 1


def single_process(X, head_config, graph, train, seed, threads):
    import torch  # here, not above: ray_ncut is imported first (it sets OpenMP's waits before torch loads)

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    head = CutHead(head_config)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    curve = fit_head(head, random_batches(torch.from_numpy(X), train.batch_size, train.steps, gen), graph, train)
    seconds = time.perf_counter() - t0
    return {"loop_s": seconds, "end_to_end_s": seconds, "losses": [c["loss"] for c in curve]}


def ray_train(X, head_config, graph, train, seed, workers):
    import torch

    from ray_ncut.ray.train import TrainJob, run_training

    torch.manual_seed(seed)
    init = CutHead(head_config).state_dict()
    with tempfile.TemporaryDirectory() as storage:
        job = TrainJob(head_config, graph, train, seed, workers, 0.0, checkpoint_every=100, storage_path=storage)
        t0 = time.perf_counter()
        state = run_training(job, X, init)
        seconds = time.perf_counter() - t0
    return {"loop_s": state.loop_seconds, "end_to_end_s": seconds, "losses": [c["loss"] for c in state.curve]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="builtin:blobs?n=100000&d=32&k=10")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="bench/results/train_scaling.json")
    args = p.parse_args()

    X_raw, _ = load_builtin(args.data)
    X = FeatureScaler.fit("auto", X_raw).transform(X_raw)
    k = int(dict(kv.split("=") for kv in args.data.split("?")[1].split("&")).get("k", 10)) if "?" in args.data else 10
    head_config = HeadConfig(X.shape[1], k)
    graph = GraphConfig()
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, init="random")

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    configs = [
        ("single process, 1 thread", lambda s: single_process(X, head_config, graph, train, s, 1)),
        ("single process, 2 threads", lambda s: single_process(X, head_config, graph, train, s, 2)),
        ("Ray Train, 1 worker", lambda s: ray_train(X, head_config, graph, train, s, 1)),
        ("Ray Train, 2 workers", lambda s: ray_train(X, head_config, graph, train, s, 2)),
    ]
    results = {name: [] for name, _ in configs}
    for rep in range(args.repeats):  # interleaved, so machine noise hits every configuration
        for name, run in configs:
            results[name].append(run(rep))
    ray.shutdown()

    rows, base = [], None
    for name, runs in results.items():
        loop_sps = statistics.median(args.steps / r["loop_s"] for r in runs)
        e2e = statistics.median(r["end_to_end_s"] for r in runs)
        stable = statistics.median(stable_step(r["losses"]) for r in runs)
        # start-up (everything outside the loop) plus the loop time up to the stable step
        to_stable = statistics.median(
            r["end_to_end_s"] - r["loop_s"] + r["loop_s"] * stable_step(r["losses"]) / args.steps for r in runs
        )
        base = base or (loop_sps, e2e)
        rows.append({"method": name, "loop steps/s": loop_sps, "vs 1 proc": loop_sps / base[0],
                     "end-to-end s": e2e, "stable step": float(stable), "to stable s": to_stable})
    cols = ("method", "loop steps/s", "vs 1 proc", "end-to-end s", "stable step", "to stable s")
    print(f"{args.data}, {args.steps} steps of batch {args.batch_size}, median of {args.repeats}, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    print(format_table(rows, cols))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"data": args.data, "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
