"""`voicenet`: DeepBach's network (Hadjeres et al., 2017) for four voices on a grid: a model that reads ahead.

The token of voice v at frame t is predicted from everything else: an LSTM reads the frames before t
(forwards), a second LSTM the frames after t (backwards), and a small network the other three voices at
t, with the frame's position in its beat throughout. One forward pass scores every (frame, voice) cell
given all the other cells (a pseudo-likelihood), which is what Gibbs sampling (lstmidi.samplers.
gibbs_voices) needs: it resamples cells of the voices it may change, in place, many times.

forward(x) on (batch, frames, 5) int tokens (S A T B and the position, `encodings.voices`) -> ((batch,
frames, 4, vocab) logits, None). It has no recurrent state to carry: it is never run step by step
(`reads_ahead`).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from .base import Model, ModelSpec
from .steplstm import LSTM


class VoiceNetSpec(ModelSpec):
    embed: int = Field(32, ge=1, le=1024, description="embedding size of a voice token and of a position")
    hidden: int = Field(256, ge=1, le=4096, description="units per LSTM layer (each direction)")
    layers: int = Field(2, ge=1, le=8, description="LSTM layers (each direction)")
    center: int = Field(128, ge=1, le=4096, description="units of the network on the frame's other voices")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on inputs, between layers and before the output")


class VoiceNet(Model):
    Spec = VoiceNetSpec
    reads_ahead = True

    def __init__(self, spec: VoiceNetSpec, sizes: dict[str, int]) -> None:
        super().__init__(spec)
        self.voices, vocab = sizes["voices"], sizes["vocab_size"]
        e = spec.embed
        self.tokens = nn.ModuleList(nn.Embedding(vocab, e) for _ in range(self.voices))
        self.masked = nn.Parameter(torch.zeros(self.voices, e))  # stands for the cell being predicted
        self.position = nn.Embedding(sizes["positions"], e)
        frame = e * (self.voices + 1)
        between = spec.dropout if spec.layers > 1 else 0.0
        self.past = LSTM(frame, spec.hidden, spec.layers, batch_first=True, dropout=between)
        self.future = LSTM(frame, spec.hidden, spec.layers, batch_first=True, dropout=between)
        self.center = nn.Sequential(nn.Linear(frame, spec.center), nn.ReLU())
        self.drop = nn.Dropout(spec.dropout)
        width = 2 * spec.hidden + spec.center
        self.heads = nn.ModuleList(nn.Linear(width, vocab) for _ in range(self.voices))

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, None]:
        x = x.long()
        batch, frames = x.shape[:2]
        cells = torch.stack([emb(x[..., v]) for v, emb in enumerate(self.tokens)], 2)  # (batch, frames, voices, e)
        position = self.position(x[..., self.voices])  # (batch, frames, e)
        whole = torch.cat([cells.flatten(2), position], -1)  # (batch, frames, frame)
        whole = self.drop(whole)
        zero = whole.new_zeros(batch, 1, self.past.hidden_size)
        past, _ = self.past(whole)  # past[:, t] has read frames 0..t
        past = torch.cat([zero, past[:, :-1]], 1)  # before t: frames 0..t-1
        future, _ = self.future(whole.flip(1))
        future = torch.cat([zero, future[:, :-1]], 1).flip(1)  # after t: frames t+1..end
        out = []
        for v, head in enumerate(self.heads):
            others = cells.clone()
            others[:, :, v] = self.masked[v]
            center = self.center(self.drop(torch.cat([others.flatten(2), position], -1)))
            out.append(head(self.drop(torch.cat([past, future, center], -1))))
        return torch.stack(out, 2), None  # (batch, frames, voices, vocab)
