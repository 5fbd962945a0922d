"""`rollnet`: stacked LSTM over multihot frames with one sigmoid per key (MIDInet, MusicGenerator).

Output layer: `linear` (MusicGenerator: LSTM stack -> Dense -> sigmoid) or `lstm` (MIDInet: the
output layer is itself an LSTM with one unit per key; its output goes through a learned per-key
scale and bias before the sigmoid so that probabilities are not capped by the LSTM's tanh).
`forward` returns logits; the sigmoid is applied by the loss and the sampler. With `span` > 0 each key's
logit also gets sum_{|d|<=span} q_d(h_t) x_{t,k+d}: the previous frame's keys around it, with weights shared
by every key and linear in the LSTM output (`tied`; voice leading learnt once for every pitch).

With `components` = C > 1 (linear output only) the frame's probability is a mixture of C such products
of independent keys, with weights from the LSTM output:

    p(x_t+1 | h_t) = sum_c w_c(h_t) prod_k p_ck(x_t+1,k | h_t)        w = softmax(linear(h_t))

still exact. Independent keys give every chord the product of its keys' marginals, so a drawn frame
mixes the notes of several likely chords; each component can hold one chord shape, and a drawn frame is
one component's. `forward` then returns [the C x keys logits | the C mixture logits].
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from ..processors import draw
from .base import Model, ModelSpec, State
from .mixing import mixture_nll, most_probable
from .steplstm import LSTM
from .tied import around, zero_linear


class RollNetSpec(ModelSpec):
    hidden: int = Field(512, ge=1, description="LSTM units per layer")
    layers: int = Field(1, ge=1, le=8, description="stacked LSTM layers")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout between layers and before the output layer")
    output: Literal["linear", "lstm"] = Field("linear", description="output layer: linear head or an LSTM (MIDInet)")
    span: int = Field(
        0,
        ge=0,
        le=48,
        description="tied interval terms from the previous frame's keys within SPAN of each key (0 = off)",
    )
    components: int = Field(
        1,
        ge=1,
        le=64,
        description="a frame's probability is a mixture of this many products of independent keys, with "
        "weights from the LSTM output: chords are drawn whole (1 = independent keys; linear output only)",
    )

    @model_validator(mode="after")
    def _linear_for_components(self):
        if self.components > 1 and self.output != "linear":
            raise ValueError("components > 1 needs output 'linear'")
        return self


class RollNet(Model):
    Spec = RollNetSpec
    mixes = True

    def __init__(self, spec: RollNetSpec, sizes: dict[str, int]) -> None:
        super().__init__(spec)
        n_in, n_out = sizes["input_size"], sizes["output_size"]
        self.n_out = n_out
        self.lstm = LSTM(
            n_in, spec.hidden, spec.layers, batch_first=True, dropout=spec.dropout if spec.layers > 1 else 0.0
        )
        self.drop = nn.Dropout(spec.dropout)
        if spec.output == "lstm":
            self.out_lstm = LSTM(spec.hidden, n_out, 1, batch_first=True)
            self.out_scale = nn.Parameter(torch.full((n_out,), 4.0))
            self.out_bias = nn.Parameter(torch.full((n_out,), -3.0))
        else:
            self.head = nn.Linear(spec.hidden, n_out * spec.components)
            nn.init.constant_(self.head.bias, -3.0)  # keys are mostly off: start near p = 0.05, not 0.5
        if spec.components > 1:
            self.to_mix = zero_linear(spec.hidden, spec.components)  # mixture weights: equal at the start
        if spec.span:
            self.to_prev = zero_linear(spec.hidden, 2 * spec.span + 1)  # q_-span..q_span

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time, input_size) float -> logits (batch, time, output_size), new state.

        `state` is what the previous call returned (None = zeros); carrying it step by step gives the
        same outputs as one call on the whole sequence.
        """
        core = state[:2] if state is not None else None
        h, core = self.lstm(x, core)  # (batch, time, hidden)
        h = self.drop(h)
        tied = around(x[..., : self.n_out], self.to_prev(h)) if self.spec.span else 0.0
        if self.spec.output == "lstm":
            out_state = state[2:] if state is not None else None
            y, out_state = self.out_lstm(h, out_state)  # (batch, time, out) in (-1, 1)
            return y * self.out_scale + self.out_bias + tied, (*core, *out_state)
        logits = self.head(h)
        c = self.spec.components
        if c == 1:
            return logits + tied, tuple(core)
        logits = logits.unflatten(-1, (c, self.n_out)) + (tied.unsqueeze(-2) if self.spec.span else 0.0)
        return torch.cat([logits.flatten(-2), self.to_mix(h)], -1), tuple(core)

    def _components(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s output (..., C x keys + C) -> per-component key logits (..., C, keys), log weights (..., C)."""
        c = self.spec.components
        return out[..., :-c].unflatten(-1, (c, self.n_out)), torch.log_softmax(out[..., -c:], -1)

    def frame_nll(self, out: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """-log sum_c w_c prod_k p_ck (independent keys: BCE summed over the keys, when C = 1)."""
        if self.spec.components == 1:
            return super().frame_nll(out, frames)
        logits, log_w = self._components(out)
        target = frames.unsqueeze(-2).expand_as(logits).to(logits.dtype)
        nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)  # (..., C)
        return mixture_nll(nll, log_w)

    @torch.no_grad()
    def sample_frame(self, out, *, mode="bernoulli", temperature=1.0, threshold=0.5, generator=None):  # types: Model's
        """Each row draws a component by the weights, then its keys; `threshold` mode keeps the component's
        thresholded frame the mixture finds most probable."""
        kw = dict(mode=mode, temperature=temperature, threshold=threshold, generator=generator)
        if self.spec.components == 1:
            return super().sample_frame(out, **kw)
        logits, log_w = self._components(out)  # (batch, C, keys), (batch, C)
        if mode == "threshold":
            frames = super().sample_frame(logits, **kw)  # (batch, C, keys): each component's frame
            nll = self.frame_nll(out.unsqueeze(-2).expand(*logits.shape[:-1], out.shape[-1]), frames)  # (batch, C)
            return most_probable(frames.transpose(0, 1), nll.T)
        which = draw(log_w.exp(), generator)  # (batch,)
        return super().sample_frame(logits[torch.arange(len(out)), which], **kw)
