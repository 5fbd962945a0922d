"""`seq2seq`: the pseudo-note blog's stacked LSTM encoder-decoder over tokens.

The encoder reads a context window of `context` tokens and hands its final (h, c) states to the
decoder, which predicts the tokens that follow, fed the previous token at each step (teacher forcing
in training). `encode(src)` -> state; `forward(x, state)` runs the decoder and returns logits over the
vocabulary; stepping the decoder with the state carried equals running it on the whole sequence.
Generation encodes the last `context` tokens, decodes `window` tokens step by step, then re-encodes.
Inputs are one-hot (as in the blog) unless `embed > 0`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import Model, ModelSpec, State
from .steplstm import LSTM


class Seq2SeqSpec(ModelSpec):
    hidden: int = Field(1024, ge=1, description="LSTM units per layer (encoder and decoder)")
    layers: int = Field(2, ge=1, le=8, description="stacked LSTM layers in each of encoder and decoder")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout between stacked layers")
    embed: int = Field(0, ge=0, description="token embedding size; 0 = one-hot input as in the original")
    context: int = Field(32, ge=1, description="tokens the encoder reads before the decoder starts")


class Seq2Seq(Model):
    Spec = Seq2SeqSpec

    def __init__(self, spec: Seq2SeqSpec, sizes: dict) -> None:
        super().__init__(spec)
        self.context = spec.context
        self.vocab = int(sizes["vocab_size"])
        width = spec.embed or self.vocab
        self.embed = nn.Embedding(self.vocab, spec.embed) if spec.embed else None
        drop = spec.dropout if spec.layers > 1 else 0.0
        self.encoder = LSTM(width, spec.hidden, spec.layers, batch_first=True, dropout=drop)
        self.decoder = LSTM(width, spec.hidden, spec.layers, batch_first=True, dropout=drop)
        self.head = nn.Linear(spec.hidden, self.vocab)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, time) long -> (batch, time, width) float."""
        return self.embed(tokens) if self.embed is not None else F.one_hot(tokens, self.vocab).float()

    def encode(self, src: torch.Tensor) -> State:
        """src: (batch, context) tokens -> the decoder's initial state (h, c), each (layers, batch, hidden)."""
        _, state = self.encoder(self._inputs(src))
        return tuple(state)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Decoder: x (batch, time) tokens -> logits (batch, time, vocab), new state."""
        h, state = self.decoder(self._inputs(x), state)  # (batch, time, hidden)
        return self.head(h), tuple(state)
