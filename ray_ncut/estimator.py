"""NeuralCut: the scikit-learn style, in-memory estimator. No Ray needed."""

from __future__ import annotations

import logging
import time
from dataclasses import fields

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .choose_k import check_k_range
from .config import ClusterConfig, GraphConfig
from .drift import fit_state
from .engine import Constraints, LabelsSettled, fit_head, subgraph_ncut, training_batches
from .model import ClusterModel, CutHead, HeadConfig, ModelRecord, resolve_device
from .prepare import prepare_training, resolve_affinity
from .scaling import FeatureScaler
from .threads import configure_threads
from .validation import check_finite

__all__ = ["NeuralCut"]

log = logging.getLogger(__name__)

# Label-free restart selection scores each head on this many held-out subgraphs.
_SELECTION_BATCHES = 8
# Training ends early once the hard labels of this many random rows stop moving (LabelsSettled).
_PROBE_ROWS = 5000
# The estimator's parameters are ClusterConfig's fields (same names, same defaults) plus these.
ESTIMATOR_ONLY = ("n_init", "random_state", "device", "verbose")
_D = ClusterConfig()  # the defaults every path shares


class NeuralCut(ClusterMixin, BaseEstimator):
    """Neural normalized-cut clustering: an MLP + softmax trained on minibatch subgraphs.

    The head learns to map a feature vector straight to a cluster by minimising a
    relaxed graph cut (NeuNcut by default) on kNN heat-kernel subgraphs of random
    minibatches, so it can be trained on a sample and then label any number of rows.

    Parameters
    ----------
    n_clusters : int or "auto", default=8
        k, the number of clusters (1 puts every row in one cluster, untrained). "auto" chooses it label-free on the training
        sample within ``k_range`` by the eigengap of the warm start's graph
        (:func:`ray_ncut.choose_k.choose_k`); the choice is ``n_clusters_`` and its
        evidence ``auto_["k"]``.
    k_range : (int, int), default=(2, 50)
        The ks that ``n_clusters="auto"`` considers, both ends included.
    loss : {"ncut", "rcut", "cnc"}, default="ncut"
        NeuNcut, NeuRcut, or CNC's expected normalized cut.
    gamma : float or "auto", default=2.0
        Weight of the squared orthogonality penalty (ignored by "cnc"). "auto"
        chooses it label-free by the NeuNcut paper's rule (:mod:`ray_ncut.autotune`);
        the search is kept in ``auto_["gamma"]``.
    n_neighbors : int, default=10
        Affinities kept per point in each minibatch graph.
    warm_neighbors : int, default=20
        Affinities kept per point in the warm start's graph over ``init_sample`` rows.
    sigma : float or "auto", default="auto"
        Heat-kernel bandwidth in scaled feature units; "auto" uses the median
        distance to the 7th neighbour inside each batch.
    local_scaling : bool, default=False
        Per-point bandwidths (self-tuning spectral clustering) instead of one sigma.
    affinity : {"auto", "knn", "siamese"}, default="auto"
        Build the warm start's and the minibatch graphs on the scaled input ("knn"),
        or on a Siamese embedding trained on kNN pairs ("siamese",
        :mod:`ray_ncut.siamese`). "auto" is "siamese" when the scaling compares rows
        by direction (features on one shared scale: pixels, embeddings) and "knn"
        otherwise (:func:`ray_ncut.prepare.resolve_affinity`); the choice is kept in
        ``auto_["affinity"]``. Either way the head reads the input features, so
        prediction needs no embedding.
    kcl_weight : float, default=1.0
        Weight of the KCL pairwise-constraint loss when ``fit`` is given constraints.
    siamese_steps : int, default=1000
        Training steps of the Siamese embedding (``affinity="siamese"``).
    siamese_params : dict or None, default=None
        Other overrides of :class:`ray_ncut.siamese.SiameseConfig` (``dim``, ``hidden``,
        ``batch_size``, ...) for ``affinity="siamese"``.
    scaling : {"auto", "standard", "l2", "none"}, default="auto"
        Feature scaling learnt in ``fit`` and stored with the model; "auto" is
        "l2" (unit-length rows) for 16 or more features that share one scale
        (pixels, embeddings) and "standard" otherwise (:func:`ray_ncut.scaling.auto_mode`).
    hidden : tuple of int, default=(256, 256)
        Hidden widths of the MLP.
    batch_size : int, default=1000
        Points per minibatch subgraph (capped at n_samples); at least 3 per cluster
        (raised to ``3 * n_clusters`` above k = 333; what was used: ``train_config_``).
    batch_neighbors : int, default=0
        Each minibatch is ``batch_size / (1 + batch_neighbors)`` random anchors plus
        this many of each anchor's nearest neighbours, so subgraphs hold real
        neighbourhoods; 0 draws minibatches uniformly. Measured (3 seeds): 3 helps
        MNIST-5k (ACC 0.666 vs 0.654) and hurts Fashion-MNIST 70k (0.536 vs 0.56).
    steps : int, default=300
        Optimisation steps per restart, at most: training ends once the hard labels of 5,000
        random rows have moved on fewer than 0.2% of them in each of two windows of 25 steps
        (:class:`ray_ncut.engine.LabelsSettled`; the steps run are ``auto_["steps_run"]``).
        The training job runs all of them (its workers would each have to agree to stop).
    learning_rate : float, default=1e-3
        Adam's initial learning rate (cosine-annealed to zero).
    init : {"spectral", "random"}, default="spectral"
        "spectral" clusters ``init_sample`` rows with spectral clustering on the
        same kNN graph and distills the result into the head (``distill_steps``
        cross-entropy steps) before the cut loss takes over. Above 100 clusters the
        spectral candidates use one graph; above 300, the warm start is k-means.
    init_sample : int, default=5000
        Rows the warm start clusters; at least 20 per cluster (raised above k = 250).
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

    Every parameter above ``n_init`` is a field of :class:`ray_ncut.config.ClusterConfig`
    (:meth:`cluster_config`), the same settings the jobs take as flags.

    Attributes
    ----------
    model_ : ClusterModel
        The trained model (head, feature scaling, record) that predicts and saves.
    head_ : CutHead
    scaler_ : FeatureScaler
    labels_ : ndarray of shape (n_samples,)
    cluster_ids_ : ndarray of shape (n_clusters_,)
        The stable id of each output: ``arange(n_clusters_)`` after ``fit``; a model directory
        written by ``jobs/recluster.py`` maps outputs to the ids of the previous run.
    n_features_in_ : int
    fit_at_training_ : dict
        The model's fit to (at most 2,000 of) its training rows: the normalized cut of its
        partition on their kNN graph and the share of low-confidence rows; the labelling job's
        drift check (:mod:`ray_ncut.drift`) compares new rows with it.
    training_curve_ : list of dict
        Loss terms per step of the kept restart.
    selection_ncut_ : list of float
        Held-out subgraph Ncut of every restart.
    auto_ : dict
        The label-free choices of the kept restart: the bandwidth sigma the kernel
        used, the gamma search (when ``gamma="auto"``), the Siamese settings.
    """

    def __init__(
        self,
        n_clusters=_D.n_clusters,
        k_range=_D.k_range,
        loss=_D.loss,
        gamma=_D.gamma,
        n_neighbors=_D.n_neighbors,
        warm_neighbors=_D.warm_neighbors,
        sigma=_D.sigma,
        local_scaling=_D.local_scaling,
        affinity=_D.affinity,
        siamese_steps=_D.siamese_steps,
        siamese_params=_D.siamese_params,
        kcl_weight=_D.kcl_weight,
        scaling=_D.scaling,
        hidden=_D.hidden,
        init=_D.init,
        init_sample=_D.init_sample,
        distill_steps=_D.distill_steps,
        batch_size=_D.batch_size,
        batch_neighbors=_D.batch_neighbors,
        steps=_D.steps,
        learning_rate=_D.learning_rate,
        n_init=1,
        random_state=None,
        device="auto",
        verbose=False,
    ):
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.loss = loss
        self.gamma = gamma
        self.n_neighbors = n_neighbors
        self.warm_neighbors = warm_neighbors
        self.sigma = sigma
        self.local_scaling = local_scaling
        self.affinity = affinity
        self.siamese_steps = siamese_steps
        self.siamese_params = siamese_params
        self.kcl_weight = kcl_weight
        self.scaling = scaling
        self.hidden = hidden
        self.batch_size = batch_size
        self.batch_neighbors = batch_neighbors
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

    def cluster_config(self) -> ClusterConfig:
        """The parameters as the one typed configuration (validated: ValueError names the value)."""
        return ClusterConfig(**{f.name: getattr(self, f.name) for f in fields(ClusterConfig)})

    def _validate_params(self, n_samples: int) -> ClusterConfig:
        config = self.cluster_config()
        if config.n_clusters == "auto":
            check_k_range(config.k_range, n_samples)
        elif n_samples < config.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={config.n_clusters}")
        if int(self.n_init) < 1:
            raise ValueError(f"n_init={self.n_init} should be >= 1")
        return config

    def _check_X(self, X, reset: bool) -> np.ndarray:
        """2-D, numeric, dense, finite float32; on ``reset`` records ``n_features_in_``, else checks it."""
        X = validate_data(self, X, dtype=np.float32, reset=reset, ensure_all_finite=False,
                          ensure_min_samples=2 if reset else 1)
        check_finite(X)
        return X

    @staticmethod
    def _check_constraints(constraints, Xt: torch.Tensor) -> Constraints | None:
        """``constraints`` (p, 3): row i, row j of Xt (n, d), 1 for must-link / 0 for cannot-link."""
        if constraints is None:
            return None
        C = np.asarray(constraints)
        if C.ndim != 2 or C.shape[1] != 3 or len(C) == 0:
            raise ValueError(f"constraints should have shape (n_pairs, 3) [i, j, must_link], got {C.shape}")
        if not np.issubdtype(C.dtype, np.integer):
            raise ValueError(f"constraints should hold integers (row, row, 0/1), got dtype {C.dtype}")
        n_samples, device = Xt.shape[0], Xt.device
        pairs, link = C[:, :2], C[:, 2]
        if pairs.min() < 0 or pairs.max() >= n_samples:
            raise ValueError(f"constraints name row {int(pairs.max() if pairs.max() >= n_samples else pairs.min())}, "
                             f"outside 0..{n_samples - 1}")
        if not np.isin(link, (0, 1)).all():
            raise ValueError("constraints' third column should be 1 (must-link) or 0 (cannot-link), "
                             f"got {link[~np.isin(link, (0, 1))][0]}")
        t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        return Constraints(Xt, t(pairs[:, 0]), t(pairs[:, 1]), t(link).bool())

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, constraints=None):
        """Learn the feature scaling and train the cut head on X of shape (n, d).

        ``y`` is ignored (present for API consistency). ``constraints``, optional,
        is an int array (n_pairs, 3) of rows ``i, j`` of X and 1 (must-link) or
        0 (cannot-link); the KCL loss on those pairs is added to the cut loss
        with weight ``kcl_weight``.
        """
        configure_threads(at_most=True)  # never more threads than the cores this process may use
        schema = _feature_schema(X)
        X = self._check_X(X, reset=True)  # (n, d)
        config = self._validate_params(X.shape[0])
        scaler = FeatureScaler.fit(config.scaling, X)
        graph, affinity_choice = resolve_affinity(config.graph(), scaler.mode)
        device = resolve_device(self.device)
        Xt = torch.from_numpy(scaler.transform(X)).to(device)  # (n, d)
        pairs = self._check_constraints(constraints, Xt)  # pairs index rows of the whole sample
        seed = int(np.random.default_rng(self.random_state).integers(2**31 - 20_000))

        best = None
        self.selection_ncut_ = []
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            for restart in range(int(self.n_init)):
                run = self._train_one(Xt, config, graph, seed + restart, pairs)
                gen = torch.Generator().manual_seed(seed + 10_000 + restart)
                score = subgraph_ncut(run["head"], Xt, graph, run["train"].batch_size, _SELECTION_BATCHES, gen,
                                      run["Z"]) if run["head"].config.n_clusters > 1 else 0.0
                self.selection_ncut_.append(score)
                log.info("restart %d: held-out subgraph ncut %.4f", restart, score)
                if best is None or score < best[0]:
                    best = (score, run)

        run = best[1]
        self.training_curve_, self.auto_ = run["curve"], run["auto"]
        if affinity_choice:
            self.auto_["affinity"] = affinity_choice
        self.graph_config_, self.train_config_ = graph, run["train"]
        self.fit_seconds_ = time.perf_counter() - t0
        self.model_ = ClusterModel(run["head"], scaler, self._record(config, seed, schema))
        self.head_, self.scaler_ = self.model_.head, scaler
        self.n_clusters_ = self.model_.n_clusters
        self.cluster_ids_ = self.model_.cluster_ids
        Z = Xt.cpu().numpy()  # (n, d) the scaled rows
        proba = self.model_.proba_of_scaled(Z).cpu().numpy()  # (n, k)
        self.labels_ = proba.argmax(1)
        self.fit_at_training_ = fit_state(Z, self.labels_, proba.max(1), self.n_clusters_,
                                          config.n_neighbors, seed)  # subsamples to DRIFT_ROWS itself
        self.model_.record.fit_at_training = self.fit_at_training_
        return self

    def _record(self, config: ClusterConfig, seed: int, schema: dict) -> ModelRecord:
        """How the model was made (the training job fills the same record)."""
        return ModelRecord(config=config, seed=self.random_state, n_init=int(self.n_init), graph=self.graph_config_,
                           train=self.train_config_, selection_ncut=self.selection_ncut_, auto=self.auto_,
                           features=schema)

    def _train_one(self, Xt, config: ClusterConfig, graph: GraphConfig, seed: int, pairs) -> dict:
        train = config.train()
        k_range = check_k_range(config.k_range, Xt.shape[0]) if config.n_clusters == "auto" else None
        k = k_range[0] if k_range else config.n_clusters  # with k_range, a placeholder until k is chosen
        head_config = HeadConfig(Xt.shape[1], k, config.hidden)
        if k == 1:  # one cluster: every row is in it, there is nothing to cut
            torch.manual_seed(seed)
            return {"head": CutHead(head_config).to(Xt.device), "curve": [], "auto": {}, "train": train, "Z": None}
        prep = prepare_training(Xt, head_config, graph, train, config.gamma, seed, config.siamese(), k_range=k_range)
        gen = torch.Generator().manual_seed(seed + 1)
        batches = training_batches(Xt, prep.train, prep.train.steps, gen, prep.Z, prep.neighbours)
        probe = Xt[torch.randperm(Xt.shape[0], generator=torch.Generator().manual_seed(seed + 2))[:_PROBE_ROWS].to(Xt.device)]
        settled = LabelsSettled(probe)
        curve = prep.warm_curve + fit_head(prep.head, batches, graph, prep.train, constraints=pairs, generator=gen,
                                           on_step=self._log_step if self.verbose else None, until=settled)
        prep.auto["steps_run"] = settled.stopped_at or prep.train.steps
        return {"head": prep.head, "curve": curve, "auto": prep.auto, "train": prep.train, "Z": prep.Z}

    def _log_step(self, terms):
        if terms["step"] % 100 == 0 or terms["step"] == self.steps - 1:
            log.info("step %(step)d loss %(loss).4f cut %(cut).4f orth %(orth).4f", terms)

    # ------------------------------------------------------------------ predict

    def predict_proba(self, X) -> np.ndarray:
        """Soft assignments, shape (n, k); rows sum to one."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self._check_X(X, reset=False))

    def predict(self, X) -> np.ndarray:
        """Cluster of each row of X, shape (n,), int64: the stable id ``cluster_ids_`` gives the
        output (the output index itself unless the model was reclustered by the jobs)."""
        check_is_fitted(self, "model_")
        return self.model_.predict(self._check_X(X, reset=False))

    def fit_predict(self, X, y=None, constraints=None) -> np.ndarray:
        return self.fit(X, constraints=constraints).labels_

    # ------------------------------------------------------------------ persistence

    def save(self, path: str) -> None:
        """Write a model directory (same format as a ``jobs/train.py`` run)."""
        check_is_fitted(self, "model_")
        self.model_.save(path, curve=self.training_curve_)

    @classmethod
    def load(cls, path: str) -> "NeuralCut":
        """Read a model directory written by :meth:`save` or ``jobs/train.py``."""
        model = ClusterModel.load(path)
        record = model.record
        params = {f.name: getattr(record.config, f.name) for f in fields(ClusterConfig)}
        est = cls(**params, random_state=record.seed, n_init=record.n_init or 1)
        est.model_ = model.to(resolve_device(est.device))
        est.head_, est.scaler_ = model.head, model.scaler
        est.n_clusters_ = model.n_clusters
        est.cluster_ids_ = model.cluster_ids
        est.fit_at_training_ = record.fit_at_training
        est.graph_config_, est.train_config_ = record.graph, record.train
        est.selection_ncut_ = record.selection_ncut or []
        est.auto_ = record.auto
        est.n_features_in_ = model.input_dim
        names = (record.features or {}).get("columns")
        if names:  # predict then checks a DataFrame's columns by name, as after fit
            est.feature_names_in_ = np.asarray(names, dtype=object)
        return est


def _feature_schema(X) -> dict:
    """config.json's ``features`` for the rows ``fit`` was given: a DataFrame's column names and
    dtypes (``jobs/assign.py`` then selects Parquet columns by those names), else positional."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return {"columns": None, "dim": int(np.shape(X)[1]) if np.ndim(X) == 2 else None}
    return {"columns": [str(c) for c in columns], "types": [str(t) for t in X.dtypes], "dim": len(columns)}
