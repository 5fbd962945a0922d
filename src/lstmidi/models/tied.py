"""Tied interval terms for piano-roll models: weights shared by every key, so that what is learnt about an
interval at one pitch holds at all of them (transposition-invariant, in the spirit of Johnson's tied
parallel networks, 2017). Each function maps a keyboard and per-interval weights to one term per key."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def around(keys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_{|d| <= span} weights[d + span] * keys[k + d] for every key k: keys (..., K), weights
    (..., 2 span + 1) -> (..., K). Keys beyond the keyboard count as off."""
    span = (weights.shape[-1] - 1) // 2
    windows = F.pad(keys, (span, span)).unfold(-1, 2 * span + 1, 1)  # (..., K, 2 span + 1): keys[k-span..k+span]
    return (windows * weights.unsqueeze(-2)).sum(-1)


def below(keys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_{d=1..span} weights[d - 1] * keys[k - d] for every key k: keys (..., K), weights (..., span) ->
    (..., K): what the keys below k add to it (a NADE's keys already decided)."""
    span = weights.shape[-1]
    windows = F.pad(keys, (span, 0)).unfold(-1, span, 1)[..., :-1, :]  # (..., K, span): keys[k-span..k-1]
    return (windows * weights.flip(-1).unsqueeze(-2)).sum(-1)


def zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear map to interval weights that starts at zero: the model starts as it would without them."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
