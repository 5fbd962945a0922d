"""`endecell`: MusicGenerator's EnDeCell in the form of RNN-NADE: the notes of a frame predicted jointly.

Inside each frame an encoder compresses the keyboard into a vector, a time LSTM links the frames, and a
NADE decoder (Larochelle & Murray 2011; Boulanger-Lewandowski et al. 2012) writes the next keyboard
key by key, from the lowest key up: key k's probability depends on the time state and on the keys below
it already decided,

    a_k = b_h(s_t) + sum_{j<k} W[:, j] v_j        p(v_k = 1) = sigmoid(b_v(s_t)_k + V[k] . sigmoid(a_k))

where s_t is the LSTM output after frames 0..t and the biases b_h, b_v are linear in it. The product of
the 88 conditionals is an exact joint probability of the frame, so `frame_nll` is the exact negative
log-likelihood (nats per frame), comparable with the polyphonic benchmark's RNN-NADE row.

Model contract: `forward(x, state) -> (s, state)` gives the time state (not logits); a model with
`frame_nll(s, frames)` and `sample_frame(s, ...)` is scored and sampled through them (training and
sampling look for these two methods).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from .base import Model, ModelSpec, State
from .steplstm import LSTM


class EnDeCellSpec(ModelSpec):
    embed: int = Field(256, ge=1, description="size of the per-frame keyboard encoding")
    hidden: int = Field(256, ge=1, description="time-LSTM units per layer")
    layers: int = Field(1, ge=1, le=8, description="stacked time-LSTM layers")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout on the encoding, between layers and on the time state")
    decoder_hidden: int = Field(64, ge=1, description="hidden units of the key-by-key NADE decoder")


class EnDeCell(Model):
    Spec = EnDeCellSpec

    def __init__(self, spec: EnDeCellSpec, sizes: dict[str, int]) -> None:
        super().__init__(spec)
        n_in, keys, hn = sizes["input_size"], sizes["output_size"], spec.decoder_hidden
        self.encoder = nn.Sequential(nn.Linear(n_in, spec.embed), nn.ReLU(), nn.Dropout(spec.dropout))
        self.lstm = LSTM(
            spec.embed, spec.hidden, spec.layers, batch_first=True, dropout=spec.dropout if spec.layers > 1 else 0.0
        )
        self.drop = nn.Dropout(spec.dropout)
        self.to_bv = nn.Linear(spec.hidden, keys)  # visible (key) biases from the time state
        self.to_bh = nn.Linear(spec.hidden, hn)  # NADE hidden biases from the time state
        nn.init.constant_(self.to_bv.bias, -3.0)  # keys are mostly off
        self.W = nn.Parameter(torch.randn(keys, hn) * 0.01)  # key j -> hidden: row j is W[:, j] of the formula
        self.V = nn.Parameter(torch.randn(keys, hn) * 0.01)  # hidden -> key k

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time, input_size) frames -> time state s (batch, time, hidden), new LSTM state.

        s[:, t] conditions the prediction of frame t + 1; carrying `state` step by step gives the same
        s as one call on the whole sequence.
        """
        s, state = self.lstm(self.encoder(x), state)
        return self.drop(s), tuple(state)

    def key_logits(self, s: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: s (..., hidden), frames (..., keys) 0/1 -> (..., keys), the logit of
        key k given s and the frame's keys below k."""
        v = frames.to(self.W.dtype).unsqueeze(-1)  # (..., keys, 1)
        contrib = v * self.W  # (..., keys, hn): what each key adds to the hidden pre-activation
        a = self.to_bh(s).unsqueeze(-2) + torch.cumsum(contrib, -2) - contrib  # exclusive sum: keys j < k
        return self.to_bv(s) + (torch.sigmoid(a) * self.V).sum(-1)

    def frame_nll(self, s: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Exact -log p(frame | s) in nats: s (batch, time, hidden), frames (batch, time, keys) -> (batch, time)."""
        logits = self.key_logits(s, frames)
        return F.binary_cross_entropy_with_logits(logits, frames.to(logits.dtype), reduction="none").sum(-1)

    @torch.no_grad()
    def sample_frame(self, s, *, mode="bernoulli", temperature=1.0, threshold=0.5, generator=None):  # types: Model's
        """Draw one frame key by key: s (batch, hidden) -> (batch, keys) 0/1 floats.

        `threshold` mode decides each key by p >= threshold given the keys below it (greedy).
        """
        a = self.to_bh(s)  # (batch, hn)
        bv = self.to_bv(s)  # (batch, keys)
        frame = torch.zeros_like(bv)
        for k in range(bv.shape[1]):
            p = torch.sigmoid((bv[:, k] + (torch.sigmoid(a) * self.V[k]).sum(-1)) / temperature)  # (batch,)
            if mode == "threshold":
                on = (p >= threshold).to(p.dtype)
            else:
                on = (torch.rand(p.shape, generator=generator) < p).to(p.dtype)
            frame[:, k] = on
            a = a + on[:, None] * self.W[k]
        return frame
