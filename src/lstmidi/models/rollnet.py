"""`rollnet`: stacked LSTM over multihot frames with one sigmoid per key (MIDInet, MusicGenerator).

Output layer: `linear` (MusicGenerator: LSTM stack -> Dense -> sigmoid) or `lstm` (MIDInet: the
output layer is itself an LSTM with one unit per key; its output goes through a learned per-key
scale and bias before the sigmoid so that probabilities are not capped by the LSTM's tanh).
`forward` returns logits; the sigmoid is applied by the loss and the sampler. With `span` > 0 each key's
logit also gets sum_{|d|<=span} q_d(h_t) x_{t,k+d}: the previous frame's keys around it, with weights shared
by every key and linear in the LSTM output (`tied`; voice leading learnt once for every pitch).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from .base import Model, ModelSpec, State
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
            self.head = nn.Linear(spec.hidden, n_out)
            nn.init.constant_(self.head.bias, -3.0)  # keys are mostly off: start near p = 0.05, not 0.5
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
        return self.head(h) + tied, tuple(core)
