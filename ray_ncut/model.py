"""The cut head (an MLP whose softmax is the soft cluster assignment) and the model directory.

A model directory is what ``NeuralCut.save`` and ``jobs/train.py`` write and what
``NeuralCut.load`` and ``jobs/assign.py`` read::

    RUN_DIR/
      model.pt      {"head_config": {...}, "state_dict": {...}}  (torch.save)
      config.json   head, scaler (with its statistics), graph, training settings,
                    seed and library versions: everything needed to reproduce a label;
                    ``cluster_ids``, the stable id of each output (0..k-1 unless reclustered)
      reference.npy a uniform sample of the raw training rows (jobs only), on which the
                    next ``jobs/recluster.py`` matches its clusters to these ids
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .publish import write_json_atomic

__all__ = ["HeadConfig", "CutHead", "mlp", "save_model_dir", "load_model_dir", "cluster_ids", "MODEL_FILE",
           "CONFIG_FILE", "REFERENCE_FILE"]

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
REFERENCE_FILE = "reference.npy"  # raw rows of the training sample, shared with the next recluster
FORMAT_VERSION = 1


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
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters={self.n_clusters} should be >= 2")


def mlp(d_in: int, hidden: tuple, d_out: int) -> nn.Sequential:
    """``d_in -> hidden... -> d_out`` with ReLU between layers (the cut head's and the Siamese net's shape)."""
    widths = (d_in, *hidden)
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], d_out))
    return nn.Sequential(*layers)


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
    import numpy
    import sklearn

    from . import __version__

    return {"ray_ncut": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "sklearn": sklearn.__version__}


def save_model_dir(path: str, head: CutHead, config: dict, reference=None) -> None:
    """Write ``model.pt`` and ``config.json`` (and ``reference.npy``, the raw rows
    ``reference`` (r, d) when given) into ``path`` (created if needed).

    ``config`` is the caller's full settings dict (scaler, graph, training, ...);
    the head config, format version and library versions are added here.
    """
    os.makedirs(path, exist_ok=True)
    if reference is not None:
        np.save(os.path.join(path, REFERENCE_FILE), np.asarray(reference, dtype=np.float32))
    head_config = asdict(head.config)
    state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    torch.save({"head_config": head_config, "state_dict": state}, os.path.join(path, MODEL_FILE))
    full = {"format_version": FORMAT_VERSION, "head": head_config, **config, "versions": versions()}
    write_json_atomic(os.path.join(path, CONFIG_FILE), full)


def cluster_ids(config: dict, k: int) -> np.ndarray:
    """(k,) int64: the stable id a model gives to each of its outputs (identity unless reclustered)."""
    ids = np.asarray(config.get("cluster_ids") or range(k), dtype=np.int64)
    if ids.shape != (k,) or len(set(ids.tolist())) != k or (ids < 0).any():
        raise ValueError(f"config.json's cluster_ids {ids.tolist()} should be {k} distinct ids >= 0")
    return ids


def load_model_dir(path: str) -> tuple[CutHead, dict]:
    """Read a model directory; returns the head (eval mode, CPU) and the full config dict.

    Raises ``ValueError`` with one line naming the path when the directory is missing,
    incomplete, corrupt, or written in a format newer than this version reads.
    """
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
    try:
        blob = torch.load(model_file, map_location="cpu", weights_only=True)
        head = CutHead(HeadConfig(**blob["head_config"]))
        head.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001 - any failure to read the weights is a corrupt file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{model_file} is not a readable ray_ncut model (corrupt or truncated): {first}") from None
    return head.eval(), config


def _check_format(config: dict, where: str) -> None:
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{where} has no format_version: not written by ray_ncut")
    if version > FORMAT_VERSION:
        written_by = config.get("versions", {}).get("ray_ncut", "a newer ray_ncut")
        raise ValueError(f"{where} is model format {version} (written by ray_ncut {written_by}); this ray_ncut "
                         f"reads format {FORMAT_VERSION} and older: upgrade ray_ncut to load it")

