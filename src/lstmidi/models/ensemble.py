"""`model.members` = K > 1: K networks of one piano-roll model, each initialised on its own, trained side by
side on the same batches, and scored and sampled as their mixture:

    p(x_t+1 | x_0..t) = 1/K sum_k p_k(x_t+1 | x_0..t)

Every member reads the same true frames, so each frame's probability is exact and normalised: the NLL
of the mixture is the polyphonic benchmark's figure, and sampling draws each frame (of each row) from one
member chosen at random and feeds it to all of them.

In training the loss is the mean of the members' own NLLs: each member fits the data as it would alone,
and their mixture averages out where each one overfits (the NLL of the mixture itself would let the
members specialise instead). Validation, scoring and sampling (eval mode) use the mixture. This is
`lstmidi benchmark ensemble` of K separate runs in one run and one model file, for K times the training
time of one member.

Only models that score and draw whole frames (`Model.mixes`: rollnet, endecell) can be mixed this way.
A member's output has the same size for every member: `forward` concatenates them on the last axis, and
the state tensors on their first axis (the layer axis of an LSTM state; the batch axis stays second).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..processors import draw
from .base import Model, ModelSpec, State
from .mixing import frames_by_part, mixture_nll, most_probable


class Ensemble(Model):
    def __init__(self, spec: ModelSpec, sizes: dict[str, int], member: type[Model]) -> None:
        super().__init__(spec)
        self.members = nn.ModuleList(member(spec, sizes) for _ in range(spec.members))

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        k = len(self.members)
        parts = [None] * k if state is None else list(zip(*(t.chunk(k, 0) for t in state)))
        outs, states = zip(*(m(x, part) for m, part in zip(self.members, parts)))
        return torch.cat(outs, -1), tuple(torch.cat(ts, 0) for ts in zip(*states))

    def _member_nlls(self, out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(members, ...) each member's -log p(frame)."""
        parts = out.chunk(len(self.members), -1)
        return torch.stack([m.frame_nll(o, frames) for m, o in zip(self.members, parts)])

    def mixture_nll(self, out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Exact -log of the mean of the members' probabilities of each frame."""
        nlls = self._member_nlls(out, frames).movedim(0, -1)  # (..., members)
        return mixture_nll(nlls, nlls.new_full(nlls.shape, -math.log(len(self.members))))  # equal weights

    def frame_nll(self, out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The mixture's NLL; in training the mean of the members' own NLLs (each member fits alone)."""
        if self.training:
            return self._member_nlls(out, frames).mean(0)
        return self.mixture_nll(out, frames)

    @torch.no_grad()
    def sample_frame(self, out, *, mode="bernoulli", temperature=1.0, threshold=0.5, generator=None):  # types: Model's
        """Each row's frame from one member drawn at random; `threshold` mode decodes greedily with every
        member and keeps the frame the mixture finds most probable."""
        kw = dict(mode=mode, temperature=temperature, threshold=threshold, generator=generator)
        parts = out.chunk(len(self.members), -1)
        if mode == "threshold":
            frames = torch.stack([m.sample_frame(o, **kw) for m, o in zip(self.members, parts)])  # (K, batch, keys)
            return most_probable(frames, self.mixture_nll(out.expand(len(frames), *out.shape), frames))
        which = draw(out.new_ones(len(out), len(self.members)), generator)  # (batch,) each row's member
        return frames_by_part(
            which, len(self.members), lambda i, rows: self.members[i].sample_frame(parts[i][rows], **kw)
        )
