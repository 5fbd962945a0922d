"""Logit processors for categorical heads: pure, chainable functions on (batch, vocab) logits.

Each returns new logits (the input is never modified); removed tokens get -inf. `sample` chains them
in the usual order (temperature, then top-k, then top-p on the tempered distribution) and draws one
token per row from a `torch.Generator`, so a seeded generator reproduces the samples.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide (batch, vocab) logits by `t` > 0: t < 1 sharpens, t > 1 flattens, t -> 0 approaches argmax."""
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t}")
    return logits / t  # (batch, vocab)


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` >= 1 largest logits of each row (ties broken by torch.topk), mask the rest;
    k >= vocab keeps everything."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    if k >= logits.shape[-1]:
        return logits.clone()
    idx = logits.topk(k, dim=-1).indices  # (batch, k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)  # (batch, vocab)
    return logits.masked_fill(~keep, NEG_INF)  # (batch, vocab)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches `p`
    (0 < p <= 1; 1 keeps everything). The most likely token is always kept."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p == 1:
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (batch, vocab)
    probs = sorted_logits.float().softmax(-1)  # (batch, vocab)
    before = probs.cumsum(-1) - probs  # (batch, vocab) mass of the more likely tokens
    drop_sorted = before >= p  # the set already reached p without this token; first is never dropped
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)  # (batch, vocab) original order
    return logits.masked_fill(drop, NEG_INF)  # (batch, vocab)


def mask_tokens(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mask every token whose `allowed` entry is False. allowed: bool, (vocab,) for all rows or
    (batch, vocab) per row (e.g. a token grammar or a pitch range)."""
    if allowed.dtype != torch.bool:
        raise ValueError(f"allowed must be a bool tensor, got {allowed.dtype}")
    if allowed.shape not in (logits.shape[-1:], logits.shape):
        raise ValueError(f"allowed must have shape {tuple(logits.shape[-1:])} or {tuple(logits.shape)}, "
                         f"got {tuple(allowed.shape)}")
    return logits.masked_fill(~allowed.to(logits.device), NEG_INF)  # (batch, vocab)


_temperature, _top_k, _top_p = temperature, top_k, top_p  # sample's keywords shadow these names


def sample(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, greedy: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of (batch, vocab) logits -> (batch,) long.

    greedy=True takes the argmax (other options are still validated). Otherwise: temperature
    (default 1.0, > 0), then top_k (None = off, >= 1), then top_p (None = off, in (0, 1]), then
    `torch.multinomial` on the softmax with `generator`. Raises ValueError for bad parameters and
    for a row whose tokens are all masked (-inf).
    """
    t, k, p = temperature, top_k, top_p
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t}")
    if k is not None and k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {k}")
    if p is not None and not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {p}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, vocab), got shape {tuple(logits.shape)}")
    dead = torch.isneginf(logits).all(-1)  # (batch,)
    if dead.any():
        raise ValueError(f"every token is masked in row(s) {dead.nonzero().flatten().tolist()}: nothing to sample")
    if greedy:
        return logits.argmax(-1)  # (batch,)
    x = _temperature(logits, t)  # (batch, vocab)
    if k is not None:
        x = _top_k(x, k)
    if p is not None:
        x = _top_p(x, p)
    probs = x.float().softmax(-1)  # (batch, vocab)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (batch,)



def sample_regression(value: torch.Tensor, *, low: float | None = None, high: float | None = None) -> torch.Tensor:
    """Clamp a regression head's output into its valid range (same shape, same unit as the head).

    low/high: None = unbounded on that side. Examples: durations in seconds with low=1e-3 (a positive
    floor, since a duration of 0 is not a note); MIDI pitches with low=0, high=127 (round afterwards).
    """
    if low is not None and high is not None and low > high:
        raise ValueError(f"sample_regression: low ({low}) must be <= high ({high})")
    if low is None and high is None:
        return value.clone()
    return value.clamp(min=low, max=high)
