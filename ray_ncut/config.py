"""Typed settings for the graph and the training loop, validated on construction.

Each config is a dataclass that round-trips through ``asdict`` / ``from_dict`` so it
can be written into every model directory (``config.json``) and read back.
The head's own config (:class:`ray_ncut.model.HeadConfig`) sits beside the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["GraphConfig", "TrainConfig", "LOSSES", "SCALINGS", "INITS", "AFFINITIES"]

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
