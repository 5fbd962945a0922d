"""Held-out likelihood: a model's NLL on windows, and the per-key Markov baseline on the same frames."""

from __future__ import annotations

import numpy as np
import torch

from .losses import multihot_nll


@torch.no_grad()
def multihot_nll_on(model: torch.nn.Module, loader) -> float:
    """Mean nats per predicted frame over every (x, y, mask) batch of `loader` (model in eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    for x, y, mask in loader:
        logits, _ = model(x.float())
        loss, weight = multihot_nll(logits, y.float(), mask.float())
        total += float(loss) * float(weight)
        count += float(weight)
    model.train(was_training)
    return total / max(count, 1.0)


def markov_baseline_nll(train: list[np.ndarray], held_out: list[np.ndarray], smoothing: float = 1.0) -> float:
    """Per-key Markov baseline in nats per frame: P(key on at t+1 | same key on/off at t), fitted on
    `train` (add-`smoothing` counts) and scored on every consecutive pair of frames of `held_out`."""
    on_after = np.zeros((2, train[0].shape[1]))  # [prev state, key] -> count of "on" next
    seen = np.zeros((2, train[0].shape[1]))
    for piece in train:
        prev, cur = piece[:-1].astype(bool), piece[1:].astype(np.float64)
        for s in (0, 1):
            sel = prev == s
            seen[s] += sel.sum(0)
            on_after[s] += (cur * sel).sum(0)
    p_on = (on_after + smoothing) / (seen + 2 * smoothing)  # (2, keys)
    total, frames = 0.0, 0
    for piece in held_out:
        prev, cur = piece[:-1].astype(np.int64), piece[1:].astype(bool)
        p = np.take_along_axis(p_on, prev, axis=0)  # (frames-1, keys): P(on) for each key given its previous state
        total += -np.where(cur, np.log(p), np.log1p(-p)).sum()
        frames += len(cur)
    return float(total / max(frames, 1))
