"""NeuralCut: the scikit-learn style, in-memory estimator. No Ray needed."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from .config import GraphConfig, TrainConfig
from .engine import fit_head, random_batches, subgraph_ncut
from .model import CutHead, HeadConfig, load_model_dir, save_model_dir
from .scaling import FeatureScaler
from .warmstart import warm_start

__all__ = ["NeuralCut"]

log = logging.getLogger(__name__)

# Label-free restart selection scores each head on this many held-out subgraphs.
_SELECTION_BATCHES = 8


def _check_array(X, name: str = "X") -> np.ndarray:
    """Validate a feature matrix once, at the public edge: 2-D, numeric, finite."""
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} should be a numeric array: {e}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} should be 2-D (n_samples, n_features), got shape {X.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite values (first at row {row}, column {col}: {X[row, col]})"
        )
    return X


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NeuralCut(ClusterMixin, BaseEstimator):
    """Neural normalized-cut clustering: an MLP + softmax trained on minibatch subgraphs.

    The head learns to map a feature vector straight to a cluster by minimising a
    relaxed graph cut (NeuNcut by default) on kNN heat-kernel subgraphs of random
    minibatches, so it can be trained on a sample and then label any number of rows.

    Parameters
    ----------
    n_clusters : int, default=8
        k, the number of clusters.
    loss : {"ncut", "rcut", "cnc"}, default="ncut"
        NeuNcut, NeuRcut, or CNC's expected normalized cut.
    gamma : float, default=2.0
        Weight of the squared orthogonality penalty (ignored by "cnc").
    n_neighbors : int, default=10
        Affinities kept per point in each minibatch graph.
    sigma : float or "auto", default="auto"
        Heat-kernel bandwidth in scaled feature units; "auto" uses the median
        distance to the 7th neighbour inside each batch.
    local_scaling : bool, default=False
        Per-point bandwidths (self-tuning spectral clustering) instead of one sigma.
    scaling : {"auto", "standard", "l2", "none"}, default="auto"
        Feature scaling learnt in ``fit`` and stored with the model; "auto" is
        "l2" (unit-length rows) for 16 or more features, "standard" below.
    hidden : tuple of int, default=(512, 512)
        Hidden widths of the MLP.
    batch_size : int, default=1000
        Points per minibatch subgraph (capped at n_samples).
    steps : int, default=1000
        Optimisation steps per restart.
    learning_rate : float, default=1e-3
        Adam's initial learning rate (cosine-annealed to zero).
    init : {"spectral", "random"}, default="spectral"
        "spectral" clusters ``init_sample`` rows with spectral clustering on the
        same kNN graph and distills the result into the head (``distill_steps``
        cross-entropy steps) before the cut loss takes over.
    init_sample : int, default=5000
    distill_steps : int, default=300
    n_init : int, default=1
        Restarts; the head with the lowest normalized cut on held-out minibatch
        subgraphs is kept (label-free).
    random_state : int or None
        Seeds initialisation, batch sampling and the Gumbel noise.
    device : str, default="auto"
        "auto" picks CUDA when available.
    verbose : bool, default=False
        Log progress every 100 steps.

    Attributes
    ----------
    head_ : CutHead
    scaler_ : FeatureScaler
    labels_ : ndarray of shape (n_samples,)
    n_features_in_ : int
    training_curve_ : list of dict
        Loss terms per step of the kept restart.
    selection_ncut_ : list of float
        Held-out subgraph Ncut of every restart.
    """

    def __init__(
        self,
        n_clusters=8,
        loss="ncut",
        gamma=2.0,
        n_neighbors=10,
        sigma="auto",
        local_scaling=False,
        scaling="auto",
        hidden=(512, 512),
        batch_size=1000,
        steps=1000,
        learning_rate=1e-3,
        init="spectral",
        init_sample=5000,
        distill_steps=300,
        n_init=1,
        random_state=None,
        device="auto",
        verbose=False,
    ):
        self.n_clusters = n_clusters
        self.loss = loss
        self.gamma = gamma
        self.n_neighbors = n_neighbors
        self.sigma = sigma
        self.local_scaling = local_scaling
        self.scaling = scaling
        self.hidden = hidden
        self.batch_size = batch_size
        self.steps = steps
        self.learning_rate = learning_rate
        self.init = init
        self.init_sample = init_sample
        self.distill_steps = distill_steps
        self.n_init = n_init
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ configs

    def _configs(self):
        graph = GraphConfig(n_neighbors=self.n_neighbors, sigma=self.sigma, local_scaling=self.local_scaling)
        train = TrainConfig(
            loss=self.loss,
            gamma=self.gamma,
            batch_size=self.batch_size,
            steps=self.steps,
            learning_rate=self.learning_rate,
            init=self.init,
            init_sample=self.init_sample,
            distill_steps=self.distill_steps,
        )
        return graph, train

    def _validate_params(self, n_samples: int):
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 2:
            raise ValueError(f"n_clusters={self.n_clusters!r} should be an integer >= 2")
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}")
        if int(self.n_init) < 1:
            raise ValueError(f"n_init={self.n_init} should be >= 1")

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None):
        """Learn the feature scaling and train the cut head on X of shape (n, d).

        ``y`` is ignored (present for API consistency).
        """
        X = _check_array(X)
        self._validate_params(X.shape[0])
        graph, train = self._configs()
        scaler = FeatureScaler.fit(self.scaling, X)
        device = _resolve_device(self.device)
        Xt = torch.from_numpy(scaler.transform(X)).to(device)  # (n, d)
        seed = int(np.random.default_rng(self.random_state).integers(2**31 - 20_000))

        best = None
        self.selection_ncut_ = []
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            for restart in range(int(self.n_init)):
                head, curve = self._train_one(Xt, graph, train, seed + restart, device)
                gen = torch.Generator().manual_seed(seed + 10_000 + restart)
                score = subgraph_ncut(head, Xt, graph, train.batch_size, _SELECTION_BATCHES, gen)
                self.selection_ncut_.append(score)
                log.info("restart %d: held-out subgraph ncut %.4f", restart, score)
                if best is None or score < best[0]:
                    best = (score, head, curve)

        _, self.head_, self.training_curve_ = best
        self.scaler_ = scaler
        self.graph_config_, self.train_config_ = graph, train
        self.n_features_in_ = X.shape[1]
        self.fit_seconds_ = time.perf_counter() - t0
        self.labels_ = self._predict_scaled(Xt).argmax(1)
        return self

    def _train_one(self, Xt, graph, train, seed, device):
        torch.manual_seed(seed)
        head = CutHead(HeadConfig(Xt.shape[1], int(self.n_clusters), tuple(self.hidden))).to(device)
        gen = torch.Generator().manual_seed(seed)
        curve = warm_start(head, Xt, graph, train, seed, gen)
        batches = random_batches(Xt, train.batch_size, train.steps, gen)
        curve += fit_head(head, batches, graph, train, on_step=self._log_step if self.verbose else None)
        return head, curve

    def _log_step(self, terms):
        if terms["step"] % 100 == 0 or terms["step"] == self.steps - 1:
            log.info("step %(step)d loss %(loss).4f cut %(cut).4f orth %(orth).4f", terms)

    # ------------------------------------------------------------------ predict

    def _check_fitted_input(self, X) -> np.ndarray:
        if not hasattr(self, "head_"):
            raise ValueError("this NeuralCut instance is not fitted yet; call fit first")
        X = _check_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the model was fitted with {self.n_features_in_}")
        return X

    @torch.no_grad()
    def _predict_scaled(self, Xt: torch.Tensor, chunk: int = 65536) -> np.ndarray:
        self.head_.eval()
        out = [self.head_.predict_proba(Xt[i : i + chunk]).cpu() for i in range(0, Xt.shape[0], chunk)]
        return torch.cat(out).numpy()  # (n, k)

    def predict_proba(self, X) -> np.ndarray:
        """Soft assignments, shape (n, k); rows sum to one."""
        X = self._check_fitted_input(X)
        device = next(self.head_.parameters()).device
        return self._predict_scaled(torch.from_numpy(self.scaler_.transform(X)).to(device))

    def predict(self, X) -> np.ndarray:
        """Cluster of each row of X, shape (n,), int64."""
        return self.predict_proba(X).argmax(1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_

    # ------------------------------------------------------------------ persistence

    def model_config(self) -> dict:
        """Everything beside the weights that a model directory records."""
        return {
            "estimator": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()},
            "scaler": self.scaler_.to_dict(),
            "graph": self.graph_config_.to_dict(),
            "train": self.train_config_.to_dict(),
            "selection_ncut": self.selection_ncut_,
        }

    def save(self, path: str) -> None:
        """Write a model directory (same format as a ``jobs/train.py`` run)."""
        if not hasattr(self, "head_"):
            raise ValueError("this NeuralCut instance is not fitted yet; call fit first")
        save_model_dir(path, self.head_, self.model_config())

    @classmethod
    def load(cls, path: str) -> "NeuralCut":
        """Read a model directory written by :meth:`save` or ``jobs/train.py``."""
        head, config = load_model_dir(path)
        est = cls(**{k: v for k, v in config.get("estimator", {}).items() if k in cls._get_param_names()})
        est.n_clusters = head.config.n_clusters
        est.head_ = head.to(_resolve_device(est.device))
        est.scaler_ = FeatureScaler.from_dict(config["scaler"])
        est.graph_config_ = GraphConfig.from_dict(config["graph"])
        est.train_config_ = TrainConfig.from_dict(config["train"])
        est.selection_ncut_ = config.get("selection_ncut", [])
        est.n_features_in_ = head.config.input_dim
        return est
