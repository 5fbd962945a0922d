"""Losses. Multihot: binary cross-entropy summed over keys, in nats per frame, with optional
progressive weights over the steps of a window (MusicGenerator: the first steps, where the network
has not yet heard the piece, count less). Tokens: cross-entropy in nats per token. Note fields: MSE
with positive pressure (TensorFlow tutorial) and the music-aware pitch loss of DeepLearning4Music.

The losses of whole batches take a (batch, time) `mask` (1 for real steps) and optional (time,)
`step_weights`, and return (weighted mean per step, total weight), so callers can average exactly across
batches. The note-field losses are per step, (batch, time), for `weighted_mean` to average: a model with
several fields averages all of them in one go.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F


def progressive_weights(window: int, ramp: int, device=None) -> torch.Tensor:
    """(window,) weights: 0 at step 0, rising linearly to 1 at step `ramp`; all ones when ramp == 0."""
    if ramp <= 0:
        return torch.ones(window, device=device)
    return (torch.arange(window, device=device, dtype=torch.float32) / ramp).clamp(max=1.0)


def multihot_nll(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, step_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits, target: (batch, time, keys); mask: (batch, time) 1 for real frames.

    Returns (weighted mean nats per frame, total weight); with no weights this is exactly the
    per-frame NLL of the polyphonic benchmark (BCE summed over keys, averaged over frames).
    """
    per_frame = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)  # (batch, time)
    w = mask if step_weights is None else mask * step_weights  # (batch, time)
    total = w.sum()
    return (per_frame * w).sum() / total.clamp(min=1e-8), total


def weighted_mean(
    per_step: torch.Tensor, mask: torch.Tensor, step_weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., batch, time) per-step losses -> (weighted means over the real steps, shape (...), total weight).
    Several losses stacked on a leading axis are averaged at once, with one mask and one set of weights."""
    w = mask.to(per_step.dtype) if step_weights is None else mask * step_weights  # (batch, time)
    per_step = torch.where(w > 0, per_step, 0.0)  # padding never leaks NaN/inf
    total = w.sum()
    return (per_step * w).sum((-2, -1)) / total.clamp(min=1e-8), total


def token_nll(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, step_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy for categorical outputs. logits: (batch, time, vocab); target: (batch, time) long
    token ids (any value, even -100, at masked steps); mask: (batch, time) 1 for real steps;
    step_weights: (time,) or None (= all ones).

    Returns (weighted mean nats per token, total weight), like `multihot_nll`.
    """
    return weighted_mean(token_ce(logits, target, mask), mask, step_weights)


def token_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per step, (batch, time), of `token_nll`'s arguments; 0 is scored at masked steps."""
    safe = torch.where(mask > 0, target, 0)  # (batch, time)
    return F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")


def squared_error_with_pressure(pred: torch.Tensor, target: torch.Tensor, pressure: float = 10.0) -> torch.Tensor:
    """The TensorFlow music tutorial's `mse_with_positive_pressure` for step/duration heads, per step:
    (pred - target)**2 + pressure * max(-pred, 0), so negative times are penalised.

    pred, target: (batch, time) in the field's unit (seconds for step/duration); pressure: default 10.0
    (the tutorial's value), 0 gives the squared error. Returns (batch, time).
    """
    error = (pred - target) ** 2
    return error + pressure * torch.relu(-pred) if pressure else error


# Music-aware pitch loss (DeepLearning4Music). Cost of a guess `d` semitones from the truth, by
# interval class d mod 12 (so -5, a fourth down, costs like 7, a fifth up). The original fitted a
# polynomial through hand-chosen points; we keep the points as an explicit table instead.
INTERVAL_COST_TABLE: tuple[float, ...] = (
    0.0,  # 0  unison (and octaves)
    1.0,  # 1  minor second
    1.0,  # 2  major second
    0.5,  # 3  minor third
    0.5,  # 4  major third
    0.2,  # 5  perfect fourth
    1.0,  # 6  tritone
    0.2,  # 7  perfect fifth
    0.5,  # 8  minor sixth
    0.5,  # 9  major sixth
    1.0,  # 10 minor seventh
    1.0,  # 11 major seventh
)
OCTAVE_COST = 0.05
"""Extra cost per octave of |d| (0.05 * |d| / 12), so the right octave still beats another octave."""


def interval_cost(semitones: torch.Tensor) -> torch.Tensor:
    """Cost (dimensionless, >= 0) of predicting a pitch `semitones` away from the truth (pred - truth).

    cost(d) = table(d mod 12) + 0.05 * |d| / 12, where table is, per interval class:
    0 unison 0.0 | 5 fourth, 7 fifth 0.2 | 3, 4 thirds, 8, 9 sixths 0.5 |
    1, 2 seconds, 6 tritone, 10, 11 sevenths 1.0 (`INTERVAL_COST_TABLE`).
    For real-valued d the table is interpolated linearly between integers, wrapping 11 -> 12 ≡ 0, so
    the cost is continuous and differentiable almost everywhere. Examples: cost(0) = 0,
    cost(12) = 0.05, cost(7) = 0.2 + 0.05 * 7/12, cost(-5) = 0.2 + 0.05 * 5/12, cost(6.5) = 0.6 + 0.05 * 6.5/12.
    Input of any shape (ints are converted to float); output has the same shape.
    """
    d = semitones if semitones.is_floating_point() else semitones.float()
    table = torch.tensor(INTERVAL_COST_TABLE, dtype=d.dtype, device=d.device)  # (12,)
    m = torch.remainder(d, 12.0)  # same shape, in [0, 12]
    lo = m.detach().floor()
    frac = m - lo  # gradient flows through here
    i = lo.long() % 12  # remainder may round up to exactly 12.0: that is class 0
    return table[i] * (1 - frac) + table[(i + 1) % 12] * frac + OCTAVE_COST * d.abs() / 12


@cache
def _cost_matrix(vocab: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(vocab, vocab) matrix C[t, p] = interval_cost(p - t); built once per (vocab, device, dtype)."""
    p = torch.arange(vocab, dtype=torch.float64)
    return interval_cost(p[None, :] - p[:, None]).to(device=device, dtype=dtype)  # (truth, guess)


def expected_interval_cost(logits: torch.Tensor, target_pitch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Music-aware pitch loss for a categorical pitch head, per step: the expected interval cost under the
    softmax, sum_p softmax(logits)_p * interval_cost(p - target). (On a regression head the loss is
    `interval_cost(pred - target)` itself.)

    logits: (batch, time, 128) (any vocab of consecutive pitches from 0); target_pitch: (batch, time) long,
    any value at masked steps (mask: (batch, time), 1 for real steps). Returns (batch, time).
    """
    cost = _cost_matrix(logits.shape[-1], logits.device, logits.dtype)  # (vocab, vocab)
    safe = torch.where(mask > 0, target_pitch, 0)  # (batch, time)
    return (logits.softmax(-1) * cost[safe]).sum(-1)


def combine_fields(fields: list[str], losses: torch.Tensor, weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum of per-field losses: sum_f weights.get(f, 1.0) * losses[f].

    fields: the names of the (len(fields),) `losses` (e.g. weighted_mean's means of stacked per-step
    losses); weights: field name -> multiplier, default 1 (the dl4music preset passes {"velocity": 0.2,
    "time": 0.2}). A weight for a field that has no loss is a ValueError (it would silently do nothing).
    """
    if not fields:
        raise ValueError("combine_fields: no losses given")
    unknown = sorted(set(weights) - set(fields))
    if unknown:
        raise ValueError(f"combine_fields: weights for unknown fields {unknown}; fields are {sorted(fields)}")
    return losses @ torch.tensor([weights.get(f, 1.0) for f in fields], dtype=losses.dtype, device=losses.device)
