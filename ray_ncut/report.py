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

from .atomic import write_atomic
from .outputs import readable

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


def _curve_scale(curve: dict) -> str:
    """"log" where the loss terms span more than two decades of visible values, else "linear": a log
    axis over values all near 0 (a warm start that already separates the clusters) draws noise."""
    values = np.concatenate([np.asarray(v, float) for t, v in curve.items() if t != "step"])
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) == 0 or values.max() < NEAR_ZERO:
        return "linear"
    return "log" if values.max() / max(values.min(), values.max() * 1e-6) > 100 else "linear"


NEAR_ZERO = 1e-4  # a loss term this small is 0 for the picture


def _curve_figure(curve: dict) -> str:
    scale = _curve_scale(curve)

    def draw(ax):
        for term, values in curve.items():
            if term != "step":
                ax.plot(curve["step"], values, label=term, lw=1)  # NaN: a step without it
        ax.set_yscale(scale)
        if scale == "linear":
            ax.set_ylim(bottom=0)
        ax.set_xlabel("step")
        ax.set_ylabel("loss term" + (" (log scale)" if scale == "log" else ""))
        ax.legend()
    return _figure(draw)


def _curve_caption(curve: dict) -> str:
    loss = np.asarray(curve.get("loss", []), float)
    trained = loss[(np.asarray(curve["step"]) >= 0) & np.isfinite(loss)] if len(loss) else loss
    text = "Each loss term per step; steps below 0, where shown, distil the warm start into the head."
    if len(trained) and np.abs(trained).max() < NEAR_ZERO:
        text += " The loss is about 0 from the first step: the warm start already separates the clusters."
    return text


def _largest(ids: list, sizes: list, top: int) -> list[int]:
    """Positions of the ``top`` largest clusters, largest first (all of them, in order, if no more)."""
    if top >= len(sizes):
        return list(range(len(sizes)))
    return [int(i) for i in np.argsort(-np.asarray(sizes), kind="stable")[:top]]


def palette(ids: list) -> dict:
    """Cluster id -> colour, the same in every picture of the page (a cluster not in ``ids`` is grey)."""
    import matplotlib

    colours = [matplotlib.colors.to_hex(c) for name in ("tab10", "tab20b", "tab20c")
               for c in matplotlib.colormaps[name].colors]
    return {int(c): colours[i % len(colours)] for i, c in enumerate(ids)}


OTHER = "#bbbbbb"  # clusters beyond the TOP_CLUSTERS largest
TOP_CLUSTERS = 30  # clusters drawn one by one; the rest are one grey "other"


def _sizes_figure(ids: list, sizes: list, colours: dict) -> str:
    shown = _largest(ids, sizes, TOP_CLUSTERS)

    def draw(ax):
        ax.bar([str(ids[i]) for i in shown], [sizes[i] for i in shown],
               color=[colours.get(int(ids[i]), OTHER) for i in shown])
        ax.set_xlabel("cluster id" + (f" ({len(shown)} largest of {len(ids)})" if len(shown) < len(ids) else ""))
        ax.set_ylabel("rows")
        ax.tick_params(axis="x", labelsize=7 if len(shown) > 15 else 9)
    return _figure(draw)


def _confidence_figure(hist: dict) -> str:
    def draw(ax):
        edges = np.asarray(hist["edges"])
        ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#55a868", edgecolor="white")
        ax.set_xlabel("confidence (largest soft assignment)")
        ax.set_ylabel("rows")
    return _figure(draw)


def _projection_figure(p: dict, colours: dict) -> str:
    def draw(ax):
        c = [colours.get(int(k), OTHER) for k in p["cluster"]]
        ax.scatter(p["x"], p["y"], c=c, s=4, alpha=0.8)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    return _figure(draw, size=(6.4, 5.0))


def _legend(ids: list, sizes: list, colours: dict) -> str:
    """The colour of each drawn cluster, as HTML (legible at any k, and checkable in a browser)."""
    shown = _largest(ids, sizes, TOP_CLUSTERS)
    items = "".join(f"<li><span class='swatch' style='background:{colours[int(ids[i])]}'></span>"
                    f"{ids[i]} <small>({sizes[i]:,})</small></li>" for i in shown)
    rest = len(ids) - len(shown)
    if rest:
        others = int(sum(sizes)) - int(sum(sizes[i] for i in shown))
        items += f"<li><span class='swatch' style='background:{OTHER}'></span>other {rest} <small>({others:,})</small></li>"
    return f"<ul class='legend'>{items}</ul>"


def _confusion_table(c: dict) -> str:
    """The contingency table as HTML: the count in every cell, shaded by the share of its class;
    clusters ordered by the optimal matching, at most TOP_CLUSTERS (the largest) and as many classes."""
    from scipy.optimize import linear_sum_assignment

    table = np.asarray(c["table"])  # (classes, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    order = list(cols[np.argsort(rows)]) + [j for j in range(table.shape[1]) if j not in set(cols)]
    if len(order) > TOP_CLUSTERS:
        keep = set(np.argsort(-table.sum(0), kind="stable")[:TOP_CLUSTERS].tolist())
        order = [j for j in order if j in keep]
    classes = list(np.argsort(-table.sum(1), kind="stable")[:TOP_CLUSTERS])
    classes.sort()
    share = table / np.maximum(table.sum(1, keepdims=True), 1)
    head = "".join(f"<th>{html.escape(str(c['clusters'][j]))}</th>" for j in order)
    body = ""
    for i in classes:
        cells = "".join(f"<td class='count' style='background:rgba(49,130,189,{share[i, j]:.2f});"
                        f"color:{'#fff' if share[i, j] > 0.6 else '#222'}'>{int(table[i, j]):,}</td>" for j in order)
        body += f"<tr><th>{html.escape(str(c['classes'][i]))}</th>{cells}</tr>"
    return f"<table class='confusion'><tr><th>class \\ cluster</th>{head}</tr>{body}</table>"


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
        try:
            model = readable(model) if model else None  # on object storage: its committed version, for the curve
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
        sections.append(_section("Training curve", _curve_figure(curve), _curve_caption(curve)))
    if metrics:
        ids = metrics.get("cluster_ids") or list(range(len(metrics["cluster_sizes"])))
        sizes = metrics["cluster_sizes"]
        colours = palette([ids[i] for i in _largest(ids, sizes, TOP_CLUSTERS)])
        many = f" The {TOP_CLUSTERS} largest are drawn." if len(ids) > TOP_CLUSTERS else ""
        empty = sum(1 for n in sizes if n == 0)
        sections.append(_section("Cluster sizes", _sizes_figure(ids, sizes, colours),
                                 f"{metrics['rows']:,} rows in {len(ids)} clusters"
                                 + (f", {empty} of them empty" if empty else "") + f".{many}"))
        if metrics.get("confidence_histogram"):
            sections.append(_section("Confidence", _confidence_figure(metrics["confidence_histogram"]),
                                     "Every labelled row's largest soft assignment; low values are rows "
                                     "between clusters."))
        p = _read_json(os.path.join(labels_dir, PROJECTION_FILE))
        if p:
            sections.append(_section("2-D projection", _projection_figure(p, colours),
                                     f"{p['rows']:,} rows of the metric's sample on their first two principal "
                                     f"components ({p['explained_variance']:.0%} of the variance), coloured by "
                                     f"cluster id (rows in the cluster):") + _legend(ids, sizes, colours))
        truth = metrics.get("ground_truth") or {}
        if truth.get("contingency"):
            sections.append("<h2>Confusion matrix</h2>"
                            + _confusion_table(truth["contingency"])
                            + f"<p>Rows of each class (column {html.escape(str(truth['column']))}) in each "
                              f"cluster, shaded by the class's share; clusters ordered by the optimal matching"
                              f"{' (the largest)' if len(ids) > TOP_CLUSTERS else ''}: ACC {truth['acc']:.3f}, "
                              f"NMI {truth['nmi']:.3f}, ARI {truth['ari']:.3f}.</p>")
    body = "\n".join(sections)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ray_ncut report</title><style>"
            "body{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}"
            "img{max-width:100%}table{border-collapse:collapse}td{padding:2px 10px 2px 0}"
            ".legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px}"
            ".swatch{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}"
            ".confusion{font-size:12px}.confusion td,.confusion th{padding:3px 6px;text-align:right;"
            "border:1px solid #eee}</style></head>"
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
    target = os.path.join(out_dir or path, REPORT_FILE)
    page = render(path)
    write_atomic(target, lambda f: f.write(page), mode="w")
    return target
