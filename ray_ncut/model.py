"""The cut head (an MLP whose softmax is the soft cluster assignment) and the model directory.

A model directory is what ``NeuralCut.save`` and ``jobs/train.py`` write and what
``NeuralCut.load`` and ``jobs/assign.py`` read::

    RUN_DIR/
      model.pt      {"head_config": {...}, "state_dict": {...}}  (torch.save)
      config.json   format_version; config (the ClusterConfig asked for); head, scaler (with
                    its statistics), graph and train (as resolved), auto (the label-free
                    choices), seed and library versions: everything needed to reproduce a
                    label; ``cluster_ids``, the stable id of each output (0..k-1 unless reclustered)
      curve.csv     the loss terms per step
      reference.npy a uniform sample of the raw training rows (jobs only), on which the
                    next ``jobs/recluster.py`` matches its clusters to these ids
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from ._version import __version__
from .atomic import write_atomic, write_json_atomic
from .config import ClusterConfig, GraphConfig, TrainConfig
from .nn import forward_rows, mlp, resolve_device  # noqa: F401 - forward_rows: public here before nn.py
from .outputs import readable
from .scaling import FeatureScaler
from .validation import check_dimension

__all__ = ["HeadConfig", "CutHead", "ClusterModel", "ModelRecord", "mlp", "resolve_device", "forward_rows",
           "save_model_dir", "load_model_dir", "cluster_ids", "MODEL_FILE", "CONFIG_FILE", "REFERENCE_FILE"]

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
REFERENCE_FILE = "reference.npy"  # raw rows of the training sample, shared with the next recluster
CURVE_FILE = "curve.csv"  # loss terms per step
FORMAT_VERSION = 2  # 2: config.json's settings are one ClusterConfig ("config"); 1 had "estimator"


@dataclass
class HeadConfig:
    """Shape of the cut head: ``input_dim -> hidden... -> n_clusters`` with ReLU."""

    input_dim: int
    n_clusters: int
    hidden: tuple = (256, 256)

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.input_dim < 1:
            raise ValueError(f"input_dim={self.input_dim} should be >= 1")
        if self.n_clusters < 1:
            raise ValueError(f"n_clusters={self.n_clusters} should be >= 1")

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        return cls(**d)


class CutHead(nn.Module):
    """MLP ``g``; ``softmax(g(x))`` is the soft assignment Y of NeuNcut's equation (9).

    ``forward`` returns logits so that training can apply a plain or Gumbel softmax.
    """

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.net = mlp(config.input_dim, tuple(config.hidden), config.n_clusters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, k) logits

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)  # (B, k)


def versions() -> dict:
    import sklearn

    return {"ray_ncut": __version__, "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__}


@dataclass
class ModelRecord:
    """How a model was made: what ``config.json`` keeps beside the weights (the head's shape, the
    scaler, the format and the library versions are added as it is saved).

    One schema for ``NeuralCut.fit`` and the training job (and the run's checkpoints); readers use
    the fields, never string keys. A field a path does not produce stays ``None`` and is left out
    of ``config.json``.
    """

    config: ClusterConfig = field(default_factory=ClusterConfig)  # what was asked for
    graph: GraphConfig | None = None  # as resolved (the affinity)
    train: TrainConfig | None = None  # as resolved (gamma, batch size, steps)
    auto: dict = field(default_factory=dict)  # the label-free choices and their scores
    seed: int | None = None
    features: dict | None = None  # the input columns by name and type (data.readers.feature_schema)
    cluster_ids: list[int] | None = None  # the stable id of each output; None: 0..k-1
    next_cluster_id: int | None = None  # the id a new cluster gets at the next recluster
    previous: str | None = None  # the model this one was reclustered from
    fit_at_training: dict | None = None  # drift.fit_state of the training rows
    data: dict | None = None  # the job's input: uri, columns, rows, sample_rows
    constraints: dict | None = None  # the job's constraint file: file, pairs, must_link
    n_init: int | None = None  # NeuralCut's restarts, and their held-out normalized cuts
    selection_ncut: list[float] | None = None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(config=self.config.to_dict(), graph=self.graph and self.graph.to_dict(),
                 train=self.train and self.train.to_dict())
        return {name: value for name, value in d.items() if value is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelRecord":
        """From ``config.json`` of any format this version reads (format 1 kept its seed under
        ``estimator``); keys that are not fields (head, scaler, versions) are left to their readers."""
        kept = {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}
        kept.update(config=ClusterConfig.from_dict(d.get("config") or {}),
                    graph=GraphConfig.from_dict(d["graph"]) if d.get("graph") else None,
                    train=TrainConfig.from_dict(d["train"]) if d.get("train") else None)
        if "seed" not in kept:
            kept["seed"] = (d.get("estimator") or {}).get("random_state")
        return cls(**kept)


class ClusterModel:
    """A trained clustering: the cut head, the feature scaling, and the record of how it was made.

    The one object every path predicts with: ``NeuralCut`` (``model_``), the labelling
    actors, the training job's checks and the benchmarks. It needs no learned
    representation at prediction time (a Siamese embedding only shaped the training
    graphs; the head reads the scaled input features).

    Parameters
    ----------
    head : CutHead
    scaler : FeatureScaler
    record : ModelRecord
        How it was made: the :class:`ray_ncut.config.ClusterConfig` asked for, the graph and
        training settings as resolved, the label-free choices, the stable cluster ids, ...
    """

    def __init__(self, head: CutHead, scaler, record: ModelRecord | None = None):
        self.head = head.eval()
        self.scaler = scaler
        self.record = record or ModelRecord()
        cluster_ids(self.record.cluster_ids, self.n_clusters)  # refuse a bad record now, not at the first label

    @property
    def cluster_ids(self) -> np.ndarray:
        """(k,) int64: the stable id of each output (the record's; 0..k-1 unless reclustered)."""
        return cluster_ids(self.record.cluster_ids, self.n_clusters)

    @property
    def n_clusters(self) -> int:
        return self.head.config.n_clusters

    @property
    def input_dim(self) -> int:
        return self.head.config.input_dim

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    @property
    def config(self):
        """The :class:`ray_ncut.config.ClusterConfig` the model was trained with."""
        return self.record.config

    def to(self, device) -> "ClusterModel":
        self.head.to(device)
        return self

    def check_dimension(self, n_features: int, where: str = "X", model: str = "the model") -> None:
        check_dimension(n_features, self.input_dim, where, model)

    @torch.no_grad()
    def proba_of_scaled(self, Z: np.ndarray, chunk: int | None = None) -> torch.Tensor:
        """Scaled rows (n, d) -> soft assignments (n, k) on the model's device, ``chunk`` rows at a
        time (default :func:`forward_rows`)."""
        device = self.device
        chunk = chunk or forward_rows(device)
        parts = [self.head.predict_proba(torch.from_numpy(np.ascontiguousarray(Z[i:i + chunk], np.float32)).to(device))
                 for i in range(0, len(Z), chunk)]
        return torch.cat(parts) if parts else torch.zeros((0, self.n_clusters), device=device)

    def assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw rows (n, d) -> (scaled rows (n, d), output index (n,) int32, confidence (n,) float32)."""
        Z = self.scaler.transform(X)
        confidence, output = self.proba_of_scaled(Z).max(1)
        return Z, output.to(torch.int32).cpu().numpy(), confidence.to(torch.float32).cpu().numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Raw rows (n, d) -> soft assignments (n, k), rows summing to one (column j: output j)."""
        return self.proba_of_scaled(self.scaler.transform(X)).cpu().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw rows (n, d) -> the stable cluster id of each row (n,) int64."""
        return self.cluster_ids[self.assign(X)[1]]

    def save(self, path: str, reference: np.ndarray | None = None, curve: list[dict] | None = None) -> None:
        """Write the model directory ``path``; ``reference``: raw rows (r, d) kept for reclustering;
        ``curve``: the loss terms per step, written as ``curve.csv`` (what report.html draws)."""
        record = {**self.record.to_dict(), "scaler": self.scaler.to_dict(), "cluster_ids": self.cluster_ids.tolist()}
        save_model_dir(path, self.head, record, reference)
        if curve:
            write_curve(os.path.join(path, CURVE_FILE), curve)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "ClusterModel":
        """Read a model directory (any format up to this version's); errors are one line naming the path."""
        head, record = load_model_dir(path)
        return cls(head, FeatureScaler.from_dict(record["scaler"]), ModelRecord.from_dict(record)).to(resolve_device(device))


def write_curve(path: str, curve: list[dict]) -> None:
    """``curve.csv``: one row per step, one column per loss term (a term a step lacks is empty: the
    warm start's distillation steps, numbered below 0, have only ``distill_ce``)."""
    import csv

    columns = list(dict.fromkeys(name for row in curve for name in row))

    def write(f):
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(curve)

    write_atomic(path, write, mode="w")


def save_model_dir(path: str, head: CutHead, record: dict, reference=None) -> None:
    """Write ``model.pt`` and ``config.json`` (and ``reference.npy``) into ``path`` (created if needed).

    ``record`` is what ``config.json`` keeps beside the weights; the head's shape, the
    format version and the library versions are added here.
    """
    os.makedirs(path, exist_ok=True)
    if reference is not None:
        write_atomic(os.path.join(path, REFERENCE_FILE), lambda f: np.save(f, np.asarray(reference, np.float32)))
    head_config = head.config.to_dict()
    state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    write_atomic(os.path.join(path, MODEL_FILE), lambda f: torch.save({"head_config": head_config, "state_dict": state}, f))
    full = {"format_version": FORMAT_VERSION, "head": head_config, **record, "versions": versions()}
    write_json_atomic(os.path.join(path, CONFIG_FILE), full)


def cluster_ids(ids: list[int] | None, k: int) -> np.ndarray:
    """(k,) int64: the stable id a model gives to each of its outputs (identity unless reclustered)."""
    ids = np.asarray(range(k) if ids is None or len(ids) == 0 else ids, dtype=np.int64)
    if ids.shape != (k,) or len(set(ids.tolist())) != k or (ids < 0).any():
        raise ValueError(f"config.json's cluster_ids {ids.tolist()} should be {k} distinct ids >= 0")
    return ids


def load_model_dir(path: str) -> tuple[CutHead, dict]:
    """Read a model directory; returns the head (eval mode, CPU) and its record (config.json).

    A format-1 record (before the one configuration) has its ``estimator`` settings
    read as ``config``. Raises ``ValueError`` with one line naming the path when the
    directory is missing, incomplete, corrupt, or written in a newer format.
    """
    path = readable(path)  # a model on object storage: a local copy of its committed version
    if os.path.isfile(path):
        raise ValueError(f"{path} is a file; give the model directory that holds it ({os.path.dirname(path) or '.'})")
    if not os.path.isdir(path):
        raise ValueError(f"model directory {path} does not exist")
    model_file, config_file = os.path.join(path, MODEL_FILE), os.path.join(path, CONFIG_FILE)
    for f in (model_file, config_file):
        if not os.path.isfile(f):
            raise ValueError(f"{path} is not a complete ray_ncut model directory: {os.path.basename(f)} is missing")
    try:
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{config_file} is not readable JSON (corrupt or truncated): {e}") from None
    _check_format(config, config_file)
    if "config" not in config:  # format 1
        config["config"] = _config_of_format_1(config.get("estimator", {}))
    try:
        blob = torch.load(model_file, map_location="cpu", weights_only=True)
        head = CutHead(HeadConfig.from_dict(blob["head_config"]))
        head.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001 - any failure to read the weights is a corrupt file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{model_file} is not a readable ray_ncut model (corrupt or truncated): {first}") from None
    return head.eval(), config


def _config_of_format_1(estimator: dict) -> dict:
    """A format-1 ``estimator`` dict as a ClusterConfig dict (settings it lacked take their defaults)."""
    params = dict(estimator)
    steps = (params.get("siamese_params") or {}).get("steps")
    if steps:
        params["siamese_params"] = {k: v for k, v in params["siamese_params"].items() if k != "steps"} or None
        params["siamese_steps"] = steps
    return ClusterConfig.from_dict(params).to_dict()


def _check_format(config: dict, where: str) -> None:
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{where} has no format_version: not written by ray_ncut")
    if version > FORMAT_VERSION:
        written_by = config.get("versions", {}).get("ray_ncut", "a newer ray_ncut")
        raise ValueError(f"{where} is model format {version} (written by ray_ncut {written_by}); this ray_ncut "
                         f"reads format {FORMAT_VERSION} and older: upgrade ray_ncut to load it")

