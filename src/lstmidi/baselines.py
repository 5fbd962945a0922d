"""The baselines every model is compared with, on the same held-out split and in the same unit: simple
statistics of the training pieces scored on the held-out ones (nats per frame, token or note). Which of them
apply to an encoding is up to its kind (`lstmidi.kinds`)."""

from __future__ import annotations

import numpy as np


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


def unigram_nll(train: list[np.ndarray], held_out: list[np.ndarray], classes: int, smoothing: float = 1.0) -> float:
    """Nats per symbol of held-out symbols (after the first of each piece) under the training frequencies."""
    counts = np.full(classes, smoothing)
    for seq in train:
        counts += np.bincount(seq, minlength=classes)[:classes]
    logp = np.log(counts / counts.sum())
    scored = [seq[1:] for seq in held_out]
    n = sum(len(s) for s in scored)
    return float(-sum(logp[s].sum() for s in scored) / max(n, 1))


def repeat_nll(train: list[np.ndarray], held_out: list[np.ndarray], classes: int, smoothing: float = 1.0) -> float:
    """ "Repeat the previous symbol" as a probability model: P(same as previous) = r (fitted on train),
    otherwise the unigram distribution over the other symbols. Nats per symbol."""
    counts = np.full(classes, smoothing)
    same = total = 0
    for seq in train:
        counts += np.bincount(seq, minlength=classes)[:classes]
        same += int((seq[1:] == seq[:-1]).sum())
        total += len(seq) - 1
    r = (same + smoothing) / (total + 2 * smoothing)
    p = counts / counts.sum()
    nll, n = 0.0, 0
    for seq in held_out:
        prev, cur = seq[:-1], seq[1:]
        other = (1 - r) * p[cur] / (1 - p[prev])
        nll -= np.log(np.where(cur == prev, r, other)).sum()
        n += len(cur)
    return float(nll / max(n, 1))


def music_cost_baselines(train: list[np.ndarray], held_out: list[np.ndarray]) -> dict[str, float]:
    """Mean music-aware interval cost (lstmidi.losses.interval_cost) of two trivial pitch guesses on
    held-out notes: the previous note's pitch, and the most common training pitch. These are what a
    regressed pitch (DeepLearning4Music) must beat."""
    import torch

    from .losses import interval_cost

    mode = int(np.bincount(np.concatenate(train), minlength=128).argmax())
    cur = np.concatenate([p[1:] for p in held_out])
    prev = np.concatenate([p[:-1] for p in held_out])
    cost = lambda guess: float(interval_cost(torch.from_numpy((guess - cur).astype(np.float32))).mean())  # noqa: E731
    return {"pitch repeat previous (music cost)": cost(prev), "pitch mode (music cost)": cost(np.full_like(cur, mode))}
