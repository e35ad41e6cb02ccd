"""How well each rule for choosing the warm start would choose, set by set (issue 26).

    python bench/warm_start_choice.py --sets mnist5k,mnist5k-imbalanced --seeds 0,1,2

For each set and seed, default ``NeuralCut`` (true k) is run up to its warm start: the same
sample rows, scaling and learned code a fit uses. Every candidate the warm start chooses from
(``warmstart.warm_candidates``) is then scored label-free (normalized cut and modularity on the
graph the choice is made on, smallest cluster) and, afterwards, against the labels (ACC on the
sample). Printed per set (mean over seeds): the ACC of the candidate each rule picks, among
those with no cluster under one neighbourhood as the default does, and of the best candidate.
Only the warm start is compared; the cut training that follows keeps the start it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import datasets  # noqa: E402

from ray_ncut import NeuralCut, prepare  # noqa: E402
from ray_ncut.metrics import accuracy, normalized_cut  # noqa: E402
from ray_ncut.warmstart import warm_candidates  # noqa: E402


def modularity(W, labels: np.ndarray, k: int) -> float:
    """Newman's modularity of ``labels`` (n,) on the symmetric graph W (n, n):
    sum over clusters of (within-cluster weight / total) - (cluster volume / total)^2."""
    W = W.tocoo()
    total = W.data.sum()
    volume = np.bincount(labels[W.row], weights=W.data, minlength=k)
    same = labels[W.row] == labels[W.col]
    within = np.bincount(labels[W.row[same]], weights=W.data[same], minlength=k)
    return float((within / total - (volume / total) ** 2).sum())


class _AtWarmStart(Exception):
    """Raised by the wrapped warm start once it has seen the sample: the fit goes no further."""


def warm_start_inputs(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, object]:
    """What default ``NeuralCut(k, random_state=seed).fit(X)`` hands its warm start: the sample's
    rows in X (m,), the rows the candidates are made on (m, e) (the learned code or the scaled
    features) and the graph settings."""
    import torch  # after ray_ncut, whose OpenMP waits apply only if it loads torch (threads.py)

    seen = {}

    def stop_at_warm_start(head, Xt, graph, train, seed, generator, Z=None, evidence=None):
        state = torch.Generator().set_state(generator.get_state())  # the draw warm_start makes
        idx = torch.randperm(Xt.shape[0], generator=state)[: train.init_sample]
        seen.update(idx=idx.numpy(), rows=(Xt if Z is None else Z)[idx].cpu().numpy(), graph=graph)
        raise _AtWarmStart

    real, prepare.warm_start = prepare.warm_start, stop_at_warm_start
    try:
        NeuralCut(k, random_state=seed).fit(X)
    except _AtWarmStart:
        pass
    finally:
        prepare.warm_start = real
    return seen["idx"], seen["rows"], seen["graph"]


def score_candidates(X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """``{"min_rows": int, "candidates": {name: {ncut, modularity, smallest, acc}}}`` for one fit."""
    k = int(y.max()) + 1
    idx, rows, graph = warm_start_inputs(X, k, seed)
    found = warm_candidates(rows, k, graph, seed)
    truth = y[idx][found.core]
    scored = truth >= 0  # shapes label background noise -1
    out = {}
    for name, labels in found.partitions.items():
        out[name] = {"ncut": float(normalized_cut(found.W, labels)), "modularity": modularity(found.W, labels, k),
                     "smallest": int(np.bincount(labels, minlength=k).min()),
                     "acc": float(accuracy(truth[scored], labels[scored]))}
    return {"min_rows": found.min_rows, "candidates": out}


RULES = {"lowest cut (default)": lambda s: -s["ncut"], "highest modularity": lambda s: s["modularity"]}


def chosen_acc(result: dict, rule) -> float:
    """ACC of the candidate ``rule`` picks, passing over candidates as ``choose_partition`` does."""
    c = result["candidates"]
    valid = [n for n in c if c[n]["smallest"] >= result["min_rows"]]
    if not valid:  # as choose_partition: the candidate whose smallest cluster is largest
        return c[max(c, key=lambda n: c[n]["smallest"])]["acc"]
    return c[max(valid, key=lambda n: rule(c[n]))]["acc"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(datasets.SETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=None, help="write every candidate's scores as JSON here")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    columns = [*RULES, "best candidate", "k-means candidate"]
    print("| set | " + " | ".join(columns) + " |\n|" + " --- |" * (len(columns) + 1), flush=True)
    everything = {}
    for name in args.sets.split(","):
        X, y = datasets.load(name)
        results = [score_candidates(X, y, seed) for seed in seeds]
        everything[name] = results
        accs = [np.mean([chosen_acc(r, rule) for r in results]) for rule in RULES.values()]
        accs.append(np.mean([max(c["acc"] for c in r["candidates"].values()) for r in results]))
        accs.append(np.mean([r["candidates"]["kmeans"]["acc"] for r in results]))
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"seeds": seeds, "sets": everything}, f, indent=1)


if __name__ == "__main__":
    main()
