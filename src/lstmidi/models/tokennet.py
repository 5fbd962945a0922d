"""`tokennet`: the flagship language model over event tokens (Performance-RNN class).

Embedding -> stacked LSTM (default 3 x 512, dropout between layers and before the head) -> logits over
the vocabulary. With `tie_weights` the output layer reuses the embedding matrix (through a projection
when `hidden != embed`), which saves parameters and often helps small corpora.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from .base import Model, ModelSpec, State
from .steplstm import LSTM


class TokenNetSpec(ModelSpec):
    embed: int = Field(256, ge=1, description="token embedding size")
    hidden: int = Field(512, ge=1, description="LSTM units per layer")
    layers: int = Field(3, ge=1, le=8, description="stacked LSTM layers")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout between layers and before the output layer")
    tie_weights: bool = Field(False, description="share the embedding matrix with the output layer")


class TokenNet(Model):
    Spec = TokenNetSpec

    def __init__(self, spec: TokenNetSpec, sizes: dict) -> None:
        super().__init__(spec)
        vocab = int(sizes["vocab_size"])
        self.embed = nn.Embedding(vocab, spec.embed)
        self.lstm = LSTM(
            spec.embed, spec.hidden, spec.layers, batch_first=True, dropout=spec.dropout if spec.layers > 1 else 0.0
        )
        self.drop = nn.Dropout(spec.dropout)
        if spec.tie_weights:
            self.proj = nn.Linear(spec.hidden, spec.embed) if spec.hidden != spec.embed else nn.Identity()
            self.head = nn.Linear(spec.embed, vocab)
            self.head.weight = self.embed.weight
        else:
            self.proj = nn.Identity()
            self.head = nn.Linear(spec.hidden, vocab)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time) token ids -> logits (batch, time, vocab), new state; stepwise == whole."""
        if x.shape[1] == 1 and not self.training and not torch.is_grad_enabled():  # a generation step
            gates = self.lstm.input_table(self.embed.weight)[x[:, 0]]  # (batch, 4 * hidden)
            h, state = self.lstm.step(None, state, input_gates=gates)
        else:
            h, state = self.lstm(self.embed(x), state)  # (batch, time, hidden)
        return self.head(self.proj(self.drop(h))), tuple(state)
