"""Losses. Multihot: binary cross-entropy summed over keys, in nats per frame, with optional
progressive weights over the steps of a window (MusicGenerator: the first steps, where the network
has not yet heard the piece, count less)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def progressive_weights(window: int, ramp: int, device=None) -> torch.Tensor:
    """(window,) weights: 0 at step 0, rising linearly to 1 at step `ramp`; all ones when ramp == 0."""
    if ramp <= 0:
        return torch.ones(window, device=device)
    return (torch.arange(window, device=device, dtype=torch.float32) / ramp).clamp(max=1.0)


def multihot_nll(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 step_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits, target: (batch, time, keys); mask: (batch, time) 1 for real frames.

    Returns (weighted mean nats per frame, total weight); with no weights this is exactly the
    per-frame NLL of the polyphonic benchmark (BCE summed over keys, averaged over frames).
    """
    per_frame = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)  # (batch, time)
    w = mask if step_weights is None else mask * step_weights  # (batch, time)
    total = w.sum()
    return (per_frame * w).sum() / total.clamp(min=1e-8), total
