"""A mixture of frame distributions (endecell's decoders, `members`, rollnet's components): its exact NLL
from the parts' NLLs and weights, and one frame drawn from it: each row draws from the part it was given,
or `threshold` mode keeps, per row, the candidate frame the mixture finds most probable."""

from __future__ import annotations

from collections.abc import Callable

import torch


def mixture_nll(nlls: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """nlls (..., parts) each part's -log p(frame), log_weights (..., parts) -> (...) -log sum_i w_i p_i."""
    return -torch.logsumexp(log_weights - nlls, -1)


def frames_by_part(
    which: torch.Tensor, parts: int, decode: Callable[[int, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """which (batch,) each row's part -> (batch, keys) frames; `decode(i, rows)` draws part i's frames of the
    rows in the mask `rows`, once per part drawn, in part order."""
    frame = None
    for i in range(parts):
        rows = which == i
        if rows.any():
            drawn = decode(i, rows)
            if frame is None:
                frame = drawn.new_zeros(len(which), drawn.shape[-1])
            frame[rows] = drawn
    return frame


def most_probable(frames: torch.Tensor, nll: torch.Tensor) -> torch.Tensor:
    """frames (parts, batch, keys) one candidate per part, nll (parts, batch) the mixture's NLL of each ->
    (batch, keys) each row's most probable candidate."""
    return frames[nll.argmin(0), torch.arange(frames.shape[1])]
