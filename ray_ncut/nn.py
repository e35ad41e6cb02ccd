"""The network pieces shared by the cut head and the Siamese embedding: the MLP, where it runs,
and how many rows go through it at once. A leaf: imports only torch."""

from __future__ import annotations

import torch
from torch import nn


def mlp(d_in: int, hidden: tuple, d_out: int) -> nn.Sequential:
    """``d_in -> hidden... -> d_out`` with ReLU between layers (the cut head's and the Siamese net's shape)."""
    widths = (d_in, *hidden)
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], d_out))
    return nn.Sequential(*layers)


def forward_rows(device: torch.device) -> int:
    """Rows per forward pass of a network over many rows. On a CPU, 8,192 rows keep a 256-wide
    layer's activations (8 MB) in cache: 1.7-1.9x the rows/s of 65,536-row blocks on 2 cores
    (docs/labelling.md). A GPU wants large blocks."""
    return 65536 if torch.device(device).type == "cuda" else 8192


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when this process sees a GPU, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
