"""The Model contract: a plain `nn.Module` built from `(spec, sizes)` with `forward(x, state=None) -> (out, state)`.

Optional capabilities are declared here with a default, never probed for:
- `context` (0): a model with an encoder (seq2seq) reads the first `context` steps with `encode(src) -> state`
  and predicts the rest from that state; training, scoring and sampling all do this in one place each.
- `reads_ahead` (False): the model predicts each step from the steps before and after it (voicenet); it
  is never run step by step, has no state to carry, and is sampled by Gibbs sampling instead.
- `frame_nll(out, frames)` and `sample_frame(out, ...)`: how a multihot model scores and draws one frame
  from its output. The default treats the keys as independent sigmoids; a model that predicts the keys of a
  frame jointly (endecell, a NADE over the keys) overrides both.
- `mixes` (False): the model scores and draws whole frames that way (rollnet, endecell), so `members` > 1
  copies of it form an exact mixture (`ensemble.Ensemble`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

State = tuple[torch.Tensor, ...]  # the recurrent state a model's forward takes and returns


class ModelSpec(BaseModel):
    """Base of every model's `Spec` (its hyperparameters): unknown keys are refused, with the valid ones named."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(
        1,
        ge=1,
        le=8,
        description="networks of this model trained side by side, each from its own initial weights, and "
        "scored and sampled as their mixture (piano-roll models; K times the training time)",
    )


class Model(nn.Module):
    Spec: ClassVar[type[BaseModel]]
    context: int = 0  # steps an encoder reads before the decoder predicts (seq2seq); 0: no encoder
    reads_ahead: ClassVar[bool] = False  # predicts from both sides (voicenet): no step-by-step use
    mixes: ClassVar[bool] = False  # scores and draws whole frames: `members` > 1 of it form a mixture

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec  # subclasses take (spec, sizes) and build their layers from both

    def encode(self, src: torch.Tensor):
        """(batch, context) steps -> the initial state of `forward`; only for models with a `context`."""
        raise NotImplementedError(f"{type(self).__name__} has no encoder (context is 0)")

    def frame_nll(self, out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """-log p(frame | out) in nats: out (batch, time, ...) from `forward`, frames (batch, time, keys) 0/1
        -> (batch, time). Default: `out` are independent per-key logits (BCE summed over keys)."""
        return F.binary_cross_entropy_with_logits(out, frames, reduction="none").sum(-1)

    @torch.no_grad()
    def sample_frame(
        self,
        out: torch.Tensor,
        *,
        mode: Literal["bernoulli", "threshold"] = "bernoulli",
        temperature: float = 1.0,
        threshold: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One frame from the output of its step: out (batch, ...) -> (batch, keys) 0/1 floats. Default: each
        key on with probability sigmoid(logit / temperature) (or when that is above `threshold`)."""
        probs = torch.sigmoid(out / temperature)
        if mode == "threshold":
            return (probs > threshold).float()
        return torch.bernoulli(probs, generator=generator)
