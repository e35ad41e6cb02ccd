"""GPU figures for the in-memory path: training time and labelling throughput on CUDA.

    python bench/gpu_figures.py [--rows 8000000] [--dim 500]

Trains NeuralCut on a 100k-row sample of an MNIST8M-sized synthetic corpus
(Gaussian mixture, ``--rows`` x ``--dim``, 10 clusters) and labels every row in
GPU chunks, generated on the fly (the corpus is never held whole). Prints the card,
the stage times, labelling rows/s and ACC. Needs torch with CUDA (no Ray, no faiss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ray_ncut import NeuralCut  # noqa: E402
from ray_ncut.data.builtin import parse_builtin, synthetic_chunk  # noqa: E402
from ray_ncut.metrics import clustering_scores, contingency_partial, merge_contingency  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8_000_000)
    p.add_argument("--dim", type=int, default=500)
    p.add_argument("--sample", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--chunk", type=int, default=500_000)
    args = p.parse_args(argv)
    import torch  # after ray_ncut, whose OpenMP waits apply only if it loads torch (threads.py)

    assert torch.cuda.is_available(), "needs a CUDA device"
    spec = parse_builtin(f"builtin:blobs?n={args.rows}&d={args.dim}&k=10&std=4.0")
    t0 = time.perf_counter()
    X_sample, _ = synthetic_chunk(spec, 0, args.sample)
    est = NeuralCut(10, steps=args.steps, random_state=0).fit(X_sample)
    torch.cuda.synchronize()
    t_fit = time.perf_counter() - t0

    part, t_gen, t_label = None, 0.0, 0.0
    for i in range(-(-args.rows // args.chunk)):
        g0 = time.perf_counter()
        X, y = synthetic_chunk(spec, i, args.chunk)
        l0 = time.perf_counter()
        labels = est.predict(X)
        torch.cuda.synchronize()
        t_label += time.perf_counter() - l0
        t_gen += l0 - g0
        part = merge_contingency(part, contingency_partial(y, labels))
    scores = clustering_scores(part)
    out = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": scores["n"], "dim": args.dim,
           "sample": args.sample, "steps": args.steps, "fit_s": round(t_fit, 2), "label_s": round(t_label, 2),
           "label_rows_per_s": round(scores["n"] / t_label), "generate_s": round(t_gen, 2),
           "train_plus_label_s": round(t_fit + t_label, 2), "acc": round(scores["acc"], 4), "nmi": round(scores["nmi"], 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
