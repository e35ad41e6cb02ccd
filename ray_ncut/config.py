"""The one typed configuration of a clustering, validated once on construction.

:class:`ClusterConfig` holds every setting that decides the model. Everything else is
derived from it: ``NeuralCut``'s parameters (same names and defaults, checked by a test),
the training job's flags and their ``--help`` (:func:`add_flags` / :func:`config_from_args`,
from each field's metadata), the ``"config"`` entry of ``config.json`` and of every Ray
Train checkpoint (``to_dict`` / ``from_dict``), and the two working configs below:
:class:`GraphConfig` (how a minibatch's affinity is built) and :class:`TrainConfig` (the
optimisation). The head's shape (:class:`ray_ncut.model.HeadConfig`) sits beside the model.
"""

from __future__ import annotations

import argparse
import numbers
from dataclasses import asdict, dataclass, field, fields, replace

__all__ = ["ClusterConfig", "GraphConfig", "TrainConfig", "add_flags", "config_from_args", "given_flags",
           "LOSSES", "SCALINGS", "INITS", "AFFINITIES", "DEFAULT_K_RANGE", "BATCH_ROWS_PER_CLUSTER"]

DEFAULT_K_RANGE = (2, 50)

# Each minibatch holds at least this many rows per cluster (NeuNcut trains k = 1,000 on batches
# of 3,000; issue 27): the floor of the cut's batches and of the warm start's distillation.
BATCH_ROWS_PER_CLUSTER = 3

LOSSES = ("ncut", "rcut", "cnc")
SCALINGS = ("auto", "standard", "l2", "none")
INITS = ("spectral", "random")
AFFINITIES = ("auto", "knn", "siamese")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class _Serialisable:
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class GraphConfig(_Serialisable):
    """How the affinity of a minibatch is built (see :func:`ray_ncut.affinity.knn_affinity`).

    ``affinity="siamese"`` builds the same kNN heat kernel on a learned embedding of
    the rows (:mod:`ray_ncut.siamese`) instead of on the scaled input; the warm
    start clusters that embedding too. ``"auto"`` (resolved before training,
    :func:`ray_ncut.prepare.resolve_affinity`) picks ``"siamese"`` where the rows are
    compared by direction (features sharing one scale: pixels, embeddings) and
    ``"knn"`` otherwise.
    ``n_neighbors`` is per row of a minibatch subgraph; ``warm_neighbors`` per row of
    the warm start's graph over the whole sample, which is several batches deep: with
    10 there, a 5,000-row sample falls apart into islands of a few rows that become
    clusters (measured, spectral warm start on standardised features: imbalanced 0.50
    and Fashion-MNIST 0.56 with 10, 1.00 and 0.60 with 20; docs/quality.md).
    """

    n_neighbors: int = 10
    warm_neighbors: int = 20
    sigma: float | str = "auto"
    local_scaling: bool = False
    scale_neighbor: int = 7
    affinity: str = "auto"

    def __post_init__(self):
        _check(self.affinity in AFFINITIES, f"affinity={self.affinity!r} should be one of {AFFINITIES}")
        _check(int(self.n_neighbors) >= 1, f"n_neighbors={self.n_neighbors} should be >= 1")
        _check(int(self.warm_neighbors) >= 1, f"warm_neighbors={self.warm_neighbors} should be >= 1")
        if isinstance(self.sigma, str):
            _check(self.sigma == "auto", f"sigma={self.sigma!r} should be 'auto' or a positive float")
        else:
            _check(float(self.sigma) > 0, f"sigma={self.sigma} should be 'auto' or a positive float")
        _check(int(self.scale_neighbor) >= 1, f"scale_neighbor={self.scale_neighbor} should be >= 1")


@dataclass
class TrainConfig(_Serialisable):
    """The optimisation: loss, penalty weight, minibatch subgraphs, Adam with a cosine schedule.

    ``gamma`` weighs the *squared* Frobenius orthogonality penalty of NeuNcut's
    equation (10); values of order 1-3 are the useful range in that form.
    ``init="spectral"`` distills spectral clustering of ``init_sample`` rows into the
    head for ``distill_steps`` steps before the cut loss takes over
    (:mod:`ray_ncut.warmstart`); ``"random"`` starts from the random initialisation.
    ``batch_neighbors`` > 0 builds each minibatch from ``batch_size / (1 + batch_neighbors)``
    random anchors plus that many of each anchor's nearest neighbours in the sample,
    so that every subgraph holds real neighbourhoods (SpectralNet's trick); 0 draws
    minibatches uniformly. ``tau_start``/``tau_end`` anneal the Gumbel-softmax temperature of the CNC loss
    (used in training only; prediction is the argmax of the plain softmax).
    """

    loss: str = "ncut"
    gamma: float = 2.0
    batch_size: int = 1000
    batch_neighbors: int = 0
    steps: int = 300
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    tau_start: float = 1.0
    tau_end: float = 0.5
    kcl_weight: float = 1.0
    init: str = "spectral"
    init_sample: int = 5000
    distill_steps: int = 300

    def __post_init__(self):
        _check(self.loss in LOSSES, f"loss={self.loss!r} should be one of {LOSSES}")
        _check(float(self.gamma) >= 0, f"gamma={self.gamma} should be >= 0")
        _check(int(self.batch_size) >= 2, f"batch_size={self.batch_size} should be >= 2")
        _check(0 <= int(self.batch_neighbors) < int(self.batch_size) // 2,
               f"batch_neighbors={self.batch_neighbors} should be in [0, batch_size / 2)")
        _check(int(self.steps) >= 1, f"steps={self.steps} should be >= 1")
        _check(float(self.learning_rate) > 0, f"learning_rate={self.learning_rate} should be > 0")
        _check(self.init in INITS, f"init={self.init!r} should be one of {INITS}")
        _check(int(self.init_sample) >= 2, f"init_sample={self.init_sample} should be >= 2")
        _check(int(self.distill_steps) >= 0, f"distill_steps={self.distill_steps} should be >= 0")
        _check(0 < self.tau_end <= self.tau_start, f"tau_end={self.tau_end} should be in (0, tau_start={self.tau_start}]")


# ---------------------------------------------------------------- the one configuration


@dataclass
class SiameseConfig(_Serialisable):
    """The Siamese embedding behind ``affinity="siamese"`` (:mod:`ray_ncut.siamese`)."""

    dim: int = 16
    hidden: tuple = (512, 512)
    n_neighbors: int = 10
    steps: int = 1000
    batch_size: int = 512
    learning_rate: float = 1e-3
    margin: float = 1.0
    # Principal components the network trains on where the inputs are wide (0: never); see
    # input_components. 2026-12-06, 3 seeds: MNIST-5k, text embeddings, spectra level or better,
    # 15-38% less fit time.
    components: int = 50

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        _check(isinstance(self.components, numbers.Integral) and self.components >= 0,
               f"siamese components={self.components!r} should be >= 0 (0: no projection)")
        for name in ("dim", "n_neighbors", "steps", "batch_size"):
            value = getattr(self, name)
            _check(isinstance(value, numbers.Integral) and value >= 1, f"siamese {name}={value!r} should be >= 1")
        _check(len(self.hidden) >= 1 and min(self.hidden) >= 1, f"siamese hidden={self.hidden!r} should be widths >= 1")
        for name in ("learning_rate", "margin"):
            value = getattr(self, name)
            _check(isinstance(value, numbers.Real) and value > 0, f"siamese {name}={value!r} should be > 0")

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    def input_components(self, n_features: int, n_clusters: int) -> int:
        """How many principal components of ``n_features`` inputs the network trains on for
        ``n_clusters`` clusters (0: the features themselves). At least one per cluster: k centroids
        span k - 1 dimensions, and 50 components cost k = 1,000 on 256 features 0.09 ACC (0.380
        against 0.469). Only where that at least halves the inputs: digits (64 -> 50) was no faster
        and one seed fell 0.10."""
        wanted = max(self.components, n_clusters) if self.components else 0
        return wanted if wanted <= n_features // 2 else 0


def check_k_bounds(k_range, flag: str = "k_range") -> tuple[int, int]:
    """``(k_min, k_max)`` as ints, or ValueError naming the value: two integers, 2 <= MIN <= MAX."""
    try:
        k_min, k_max = (int(v) for v in k_range)
    except (TypeError, ValueError):
        raise ValueError(f"{flag}={k_range!r} should be two integers MIN,MAX") from None
    if k_min < 2:
        raise ValueError(f"{flag}={k_min},{k_max}: MIN should be >= 2")
    if k_min > k_max:
        raise ValueError(f"{flag}={k_min},{k_max}: MIN should be <= MAX")
    return k_min, k_max


def _auto_or_number(value):
    return value if value == "auto" else float(value)


def _k_value(value):
    return value if value == "auto" else int(value)


def _ints(value) -> tuple:
    return tuple(int(v) for v in str(value).split(","))


def _flag(name: str, group: str, help: str, parse=None, choices=None, metavar=None, switch=False,
          expects: str | None = None) -> dict:
    """Field metadata: how the field appears on the training job's command line (``expects``: what
    a value that does not parse is told it should be)."""
    expects = expects or {int: "an integer", float: "a number"}.get(parse)
    return {"flag": name, "group": group, "help": help, "parse": parse, "choices": choices, "metavar": metavar,
            "switch": switch, "expects": expects}


@dataclass
class ClusterConfig(_Serialisable):
    """Every setting that decides a model (see ``NeuralCut`` for what each one does).

    Validated on construction; a ``ValueError`` names the setting and its value. With
    ``n_clusters="auto"`` the head's k is chosen on the sample within ``k_range``;
    ``gamma="auto"`` searches the penalty weight label-free; both choices are recorded
    beside the config (``config.json: auto``), which itself keeps what was asked for.
    """

    n_clusters: int | str = field(default=8, metadata=_flag(
        "--k", "model and loss", "number of clusters, >= 2, or 'auto' to choose it label-free within --k-range",
        parse=_k_value, expects="an integer >= 2 or 'auto'"))
    k_range: tuple = field(default=DEFAULT_K_RANGE, metadata=_flag(
        "--k-range", "model and loss", "the ks that --k auto considers, both included", parse=_ints, metavar="MIN,MAX",
        expects="MIN,MAX (two integers)"))
    loss: str = field(default="ncut", metadata=_flag(
        "--loss", "model and loss", "ncut (NeuNcut), rcut (NeuRcut) or cnc", choices=LOSSES))
    gamma: float | str = field(default=2.0, metadata=_flag(
        "--gamma", "model and loss", "orthogonality penalty weight, squared form, or 'auto' for the label-free "
        "search of the NeuNcut paper (section 4.6)", parse=_auto_or_number, expects="'auto' or a number"))
    n_neighbors: int = field(default=10, metadata=_flag(
        "--neighbors", "model and loss", "kNN affinities kept per point of a minibatch graph", parse=int))
    warm_neighbors: int = field(default=20, metadata=_flag(
        "--warm-neighbors", "model and loss", "kNN affinities per point of the warm start's graph", parse=int))
    sigma: float | str = field(default="auto", metadata=_flag(
        "--sigma", "model and loss", "heat-kernel bandwidth: 'auto' or a number", parse=_auto_or_number,
        expects="'auto' or a number"))
    local_scaling: bool = field(default=False, metadata=_flag(
        "--local-scaling", "model and loss", "per-point bandwidths (self-tuning kernel)", switch=True))
    affinity: str = field(default="auto", metadata=_flag(
        "--affinity", "model and loss", "knn: kNN heat kernel on the scaled features; siamese: on a Siamese "
        "embedding trained on kNN pairs; auto: siamese when the scaling compares rows by direction (16+ features "
        "on one scale: pixels, embeddings), else knn", choices=AFFINITIES))
    siamese_steps: int = field(default=1000, metadata=_flag(
        "--siamese-steps", "model and loss", "training steps of the Siamese embedding", parse=int))
    siamese_params: dict | None = None  # other SiameseConfig settings (dim, hidden, ...); no flag
    kcl_weight: float = field(default=1.0, metadata=_flag(
        "--kcl-weight", "model and loss", "weight of the KCL pairwise-constraint loss", parse=float))
    scaling: str = field(default="auto", metadata=_flag(
        "--scaling", "model and loss", "feature scaling: auto (l2 for 16+ features on one scale, else standard)",
        choices=SCALINGS))
    hidden: tuple = field(default=(256, 256), metadata=_flag(
        "--hidden", "model and loss", "MLP hidden widths", parse=_ints, metavar="W1,W2,...",
        expects="comma-separated integer widths"))
    init: str = field(default="spectral", metadata=_flag(
        "--init", "model and loss", "spectral warm start on the sample, or random", choices=INITS))
    init_sample: int = field(default=5000, metadata=_flag(
        "--init-sample", "model and loss", "rows of the sample the spectral warm start clusters (at least 20 per "
        "cluster)", parse=int))
    distill_steps: int = field(default=300, metadata=_flag(
        "--distill-steps", "model and loss", "steps distilling the warm start into the head", parse=int))
    batch_size: int = field(default=1000, metadata=_flag(
        "--batch-size", "training", "points per minibatch subgraph (per worker; at least 3 per cluster)", parse=int))
    batch_neighbors: int = field(default=0, metadata=_flag(
        "--batch-neighbors", "training", "nearest neighbours of each anchor added to a minibatch (0: uniform)",
        parse=int))
    steps: int = field(default=300, metadata=_flag("--steps", "training", "optimisation steps", parse=int))
    learning_rate: float = field(default=1e-3, metadata=_flag(
        "--lr", "training", "Adam learning rate, cosine-annealed", parse=float))

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        k = self.n_clusters
        if isinstance(k, numbers.Integral) and not isinstance(k, bool):
            k = self.n_clusters = int(k)
        _check(k == "auto" or (isinstance(k, int) and not isinstance(k, bool) and k >= 1),
               f"n_clusters={k!r} should be an integer >= 1 or 'auto'")
        self.k_range = check_k_bounds(self.k_range)
        _check(self.gamma == "auto" or (not isinstance(self.gamma, str) and float(self.gamma) >= 0),
               f"gamma={self.gamma!r} should be 'auto' or a number >= 0")
        _check(self.scaling in SCALINGS, f"scaling={self.scaling!r} should be one of {SCALINGS}")
        _check(len(self.hidden) >= 1 and min(self.hidden) >= 1, f"hidden={self.hidden!r} should be widths >= 1")
        _check(int(self.siamese_steps) >= 1, f"siamese_steps={self.siamese_steps} should be >= 1")
        _check(not (self.siamese_params or {}).get("steps"),
               "siamese_params={'steps': ...}: set siamese_steps instead")
        self.graph()  # each working config validates its own fields
        self.train()
        self.siamese()

    def graph(self) -> GraphConfig:
        return GraphConfig(n_neighbors=self.n_neighbors, warm_neighbors=self.warm_neighbors, sigma=self.sigma,
                           local_scaling=self.local_scaling, affinity=self.affinity)

    def train(self) -> TrainConfig:
        """The optimisation; with ``gamma="auto"`` its gamma is a placeholder until the search sets it."""
        return TrainConfig(loss=self.loss, gamma=2.0 if self.gamma == "auto" else float(self.gamma),
                           batch_size=self.batch_size, batch_neighbors=self.batch_neighbors, steps=self.steps,
                           learning_rate=self.learning_rate, init=self.init, init_sample=self.init_sample,
                           distill_steps=self.distill_steps, kcl_weight=self.kcl_weight)

    def siamese(self) -> SiameseConfig:
        params = self.siamese_params or {}
        known = [f.name for f in fields(SiameseConfig) if f.name != "steps"]  # steps: siamese_steps
        unknown = sorted(set(params) - set(known) - {"steps"})
        _check(not unknown, f"siamese_params has unknown key(s) {unknown}; known: {known}")
        return SiameseConfig(**{"n_neighbors": self.n_neighbors, **params, "steps": self.siamese_steps})

    def to_dict(self) -> dict:
        d = asdict(self)
        return {**d, "hidden": list(self.hidden), "k_range": list(self.k_range)}

    def contradictions(self, other: "ClusterConfig", names) -> list[str]:
        """``--flag VALUE`` descriptions of the fields in ``names`` where ``other`` differs from this one."""
        flags = {f.name: f.metadata.get("flag", f.name) for f in fields(self)}
        return [f"{flags[n]} {_show(getattr(other, n))} (the run has {_show(getattr(self, n))})"
                for n in names if getattr(self, n) != getattr(other, n)]


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _flag_fields():
    return [f for f in fields(ClusterConfig) if f.metadata.get("flag")]


def add_flags(parser: argparse.ArgumentParser, defaults: dict | None = None, helps: dict | None = None) -> None:
    """Add one flag per :class:`ClusterConfig` field to ``parser``, grouped as in the metadata.

    A flag the user leaves out is absent from the parsed namespace (``SUPPRESS``), so that
    :func:`given_flags` can tell what was asked for; ``defaults`` and ``helps`` override
    the shown default and help of a field by name (the job's ``--k`` has none).
    """
    defaults, helps = defaults or {}, helps or {}
    groups = {}
    for f in _flag_fields():
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        shown = defaults.get(f.name, f.default)
        text = helps.get(f.name, meta["help"]) + ("" if shown is None or meta["switch"] else f" (default {_show(shown)})")
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if meta["switch"]:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(choices=meta["choices"], metavar=meta["metavar"])
        group.add_argument(meta["flag"], **kwargs)


def given_flags(args) -> dict:
    """The config fields the user set on the command line, parsed, as ``{name: value}``."""
    given = {}
    for f in _flag_fields():
        if hasattr(args, f.name):
            raw, parse = getattr(args, f.name), f.metadata["parse"]
            try:
                given[f.name] = parse(raw) if parse and isinstance(raw, str) else raw
            except ValueError:
                raise ValueError(f"{f.metadata['flag']} should be {f.metadata['expects']}, got {raw!r}") from None
    return given


def config_from_args(args, base: ClusterConfig | None = None) -> ClusterConfig:
    """``base`` (default: the defaults) with the flags the user gave; errors name the flag."""
    try:
        return replace(base or ClusterConfig(), **given_flags(args))
    except ValueError as e:
        raise ValueError(_as_flag(str(e))) from None


def _as_flag(message: str) -> str:
    """'n_neighbors=0 should be ...' -> '--neighbors=0 should be ...' (what the job's user typed)."""
    names = {f.name: f.metadata.get("flag") for f in fields(ClusterConfig)}
    names.update(learning_rate="--lr")
    head, sep, rest = message.partition("=")
    return f"{names[head]}={rest}" if sep and names.get(head) else message
