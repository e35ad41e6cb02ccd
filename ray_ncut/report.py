"""``report.html``: what a user looks at after a run. Self-contained (images embedded), no Ray.

Rendered from what a run writes, so ``jobs/report.py DIR`` can redo it at any time:

- a labels directory: ``metrics.json`` (cluster sizes, the confidence histogram, the
  contingency table when ground truth was read), ``projection.json`` (a 2-D projection of
  the metric's sample) and the model directory it names (``curve.csv``: the training curve);
- a model directory: its curve and settings;
- a cluster directory (``DIR/model`` + ``DIR/labels``): both.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os

import numpy as np

from .storage import is_uri, readable

__all__ = ["projection", "render", "write_report", "REPORT_FILE", "PROJECTION_FILE"]

REPORT_FILE = "report.html"
PROJECTION_FILE = "projection.json"  # in a labels directory: the points of the 2-D picture
PROJECTION_ROWS = 2000  # points in the 2-D picture (metrics.json keeps their coordinates)


def projection(Z: np.ndarray, cluster: np.ndarray, seed: int, rows: int = PROJECTION_ROWS) -> dict | None:
    """The first two principal components of up to ``rows`` of the scaled sample Z (m, d), with
    each point's cluster id: a picture of how the clusters lie (PCA: linear, so what overlaps
    here may still be apart in d dimensions)."""
    if len(Z) < 3:
        return None
    pick = np.sort(np.random.default_rng(seed).permutation(len(Z))[:rows])
    X = Z[pick].astype(np.float64)
    X -= X.mean(0)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    xy = X @ vt[:2].T if vt.shape[0] >= 2 else np.hstack([X @ vt[:1].T, np.zeros((len(X), 1))])
    explained = (s[:2] ** 2).sum() / max((s ** 2).sum(), 1e-300)
    return {"method": "pca", "explained_variance": round(float(explained), 4), "rows": len(pick),
            "x": xy[:, 0].round(4).tolist(), "y": xy[:, 1].round(4).tolist(),
            "cluster": np.asarray(cluster)[pick].astype(int).tolist()}


# --------------------------------------------------------------------------- figures


def _figure(draw, size=(6.4, 3.6)) -> str:
    """``draw(ax)`` on a new figure; the PNG as a base64 data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_figure(curve: dict) -> str:
    def draw(ax):
        for term, values in curve.items():
            if term != "step":
                ax.plot(curve["step"], np.maximum(values, 1e-8), label=term, lw=1)  # NaN: a step without it
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss term")
        ax.legend()
    return _figure(draw)


def _sizes_figure(ids: list, sizes: list) -> str:
    def draw(ax):
        ax.bar([str(i) for i in ids], sizes, color="#4c72b0")
        ax.set_xlabel("cluster id")
        ax.set_ylabel("rows")
        if len(ids) > 25:
            ax.set_xticks([])
    return _figure(draw)


def _confidence_figure(hist: dict) -> str:
    def draw(ax):
        edges = np.asarray(hist["edges"])
        ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#55a868", edgecolor="white")
        ax.set_xlabel("confidence (largest soft assignment)")
        ax.set_ylabel("rows")
    return _figure(draw)


def _projection_figure(p: dict) -> str:
    def draw(ax):
        ax.scatter(p["x"], p["y"], c=p["cluster"], s=4, cmap="tab20", alpha=0.8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    return _figure(draw, size=(6.4, 5.0))


def _confusion_figure(c: dict) -> str:
    from scipy.optimize import linear_sum_assignment

    table = np.asarray(c["table"])  # (classes, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    order = list(cols[np.argsort(rows)]) + [j for j in range(table.shape[1]) if j not in set(cols)]

    def draw(ax):
        shown = table[:, order]
        ax.imshow(shown / np.maximum(shown.sum(1, keepdims=True), 1), cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(order)), [str(c["clusters"][j]) for j in order], fontsize=7)
        ax.set_yticks(range(len(c["classes"])), c["classes"], fontsize=7)
        ax.set_xlabel("cluster id (matched to the classes)")
        ax.set_ylabel("class")
    return _figure(draw, size=(6.4, 5.0))


# --------------------------------------------------------------------------- reading a directory


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_curve(model_dir: str | None) -> dict | None:
    try:
        with open(os.path.join(model_dir, "curve.csv")) as f:
            rows = list(csv.DictReader(f))
    except (OSError, TypeError):
        return None
    if not rows:
        return None
    return {name: np.array([float(r[name]) if r[name] else np.nan for r in rows]) for name in rows[0]}


def _locate(path: str) -> tuple[str | None, str | None]:
    """(model dir, labels dir) of a model, labels or cluster directory."""
    if os.path.isfile(os.path.join(path, "metrics.json")):
        metrics = _read_json(os.path.join(path, "metrics.json")) or {}
        model = metrics.get("model", {}).get("path")
        if is_uri(model):
            try:
                model = readable(model)  # its committed version, for the training curve
            except (OSError, ValueError):
                model = None
        return (model if model and os.path.isdir(model) else None), path
    if os.path.isfile(os.path.join(path, "config.json")):
        return path, None
    if os.path.isdir(os.path.join(path, "model")) or os.path.isdir(os.path.join(path, "labels")):
        labels = os.path.join(path, "labels")
        return os.path.join(path, "model"), (labels if os.path.isfile(os.path.join(labels, "metrics.json")) else None)
    raise ValueError(f"{path} is not a ray_ncut model, labels or cluster directory (no config.json or metrics.json)")


# --------------------------------------------------------------------------- the page


def render(path: str) -> str:
    """The HTML report of the model, labels or cluster directory ``path``."""
    model_dir, labels_dir = _locate(path)
    metrics = _read_json(os.path.join(labels_dir, "metrics.json")) if labels_dir else None
    config = _read_json(os.path.join(model_dir, "config.json")) if model_dir else None
    summary = _read_json(os.path.join(model_dir, "summary.json")) if model_dir else None
    sections = [_overview(path, config, summary, metrics)]
    curve = _read_curve(model_dir)
    if curve:
        sections.append(_section("Training curve", _curve_figure(curve), "Each loss term per step (log scale); "
                                 "steps below 0, where shown, distil the warm start into the head."))
    if metrics:
        ids = metrics.get("cluster_ids") or list(range(len(metrics["cluster_sizes"])))
        sections.append(_section("Cluster sizes", _sizes_figure(ids, metrics["cluster_sizes"]),
                                 f"{metrics['rows']:,} rows in {len(ids)} clusters."))
        if metrics.get("confidence_histogram"):
            sections.append(_section("Confidence", _confidence_figure(metrics["confidence_histogram"]),
                                     "Every labelled row's largest soft assignment; low values are rows "
                                     "between clusters."))
        p = _read_json(os.path.join(labels_dir, PROJECTION_FILE))
        if p:
            sections.append(_section("2-D projection", _projection_figure(p),
                                     f"{p['rows']:,} rows of the metric's sample on their first two principal "
                                     f"components ({p['explained_variance']:.0%} of the variance), coloured by cluster."))
        truth = metrics.get("ground_truth") or {}
        if truth.get("contingency"):
            sections.append(_section("Confusion matrix", _confusion_figure(truth["contingency"]),
                                     f"Share of each class (column {html.escape(str(truth['column']))}) in each "
                                     f"cluster, clusters ordered by the optimal matching: ACC {truth['acc']:.3f}, "
                                     f"NMI {truth['nmi']:.3f}, ARI {truth['ari']:.3f}."))
    body = "\n".join(sections)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ray_ncut report</title><style>"
            "body{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}"
            "img{max-width:100%}table{border-collapse:collapse}td{padding:2px 10px 2px 0}</style></head>"
            f"<body><h1>ray_ncut report</h1>{body}</body></html>")


def _section(title: str, image: str, caption: str) -> str:
    return f"<h2>{title}</h2><img alt='{title}' src='{image}'><p>{caption}</p>"


def _overview(path: str, config: dict | None, summary: dict | None, metrics: dict | None) -> str:
    rows = [("directory", (metrics or {}).get("out") or os.path.abspath(path))]
    if config:
        head = config.get("head", {})
        rows += [("model", f"k={head.get('n_clusters')}, {head.get('input_dim')} features, hidden "
                           f"{head.get('hidden')}, loss {config.get('train', {}).get('loss')}, "
                           f"gamma {config.get('train', {}).get('gamma')}, affinity {config.get('graph', {}).get('affinity')}")]
        if config.get("data"):
            rows.append(("trained on", f"{config['data'].get('uri')} ({config['data'].get('sample_rows')} sample rows)"))
    if summary and summary.get("sample_quality"):
        q = summary["sample_quality"]
        rows.append(("training sample", f"ACC {q['acc']:.3f}, NMI {q['nmi']:.3f}, ARI {q['ari']:.3f}"))
    if metrics:
        rows.append(("labelled", f"{metrics['rows']:,} rows of {metrics['data']['uri']} in {metrics['seconds']:.1f}s"))
        if metrics.get("normalized_cut"):
            nc = metrics["normalized_cut"]
            rows.append(("normalized cut", f"{nc['ncut']:.4f} on a {nc['n_neighbors']}-NN graph ({nc['sample']})"))
        if metrics.get("drift"):
            rows.append(("drift", f"{'recluster due' if metrics['drift']['due'] else 'no recluster needed'}: "
                                  f"{metrics['drift']['reason']}"))
    cells = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def write_report(path: str, out_dir: str | None = None) -> str:
    """Render the report of ``path`` into ``out_dir`` (default ``path``)/report.html, atomically."""
    from .publish import write_atomic

    target = os.path.join(out_dir or path, REPORT_FILE)
    page = render(path)
    write_atomic(target, lambda f: f.write(page), mode="w")
    return target
