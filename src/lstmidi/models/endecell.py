"""`endecell`: MusicGenerator's EnDeCell in the form of RNN-NADE: the notes of a frame predicted jointly.

Inside each frame an encoder compresses the keyboard into a vector, a time LSTM links the frames, and a
NADE decoder (Larochelle & Murray 2011; Boulanger-Lewandowski et al. 2012) writes the next keyboard
key by key, from the lowest key up: key k's probability depends on the time state and on the keys below
it already decided,

    a_k = b_h(s_t) + sum_{j<k} W[:, j] v_j        p(v_k = 1) = sigmoid(b_v(s_t)_k + V[k] . sigmoid(a_k))

where s_t is the LSTM output after frames 0..t and the biases b_h, b_v are linear in it. The product of
the 88 conditionals is an exact joint probability of the frame, so `frame_nll` is the exact negative
log-likelihood (nats per frame), comparable with the polyphonic benchmark's RNN-NADE row.

With `span` > 0 each logit also gets interval terms whose weights are shared by every key (the same for a
third above C as above F#: `tied`), with weights linear in s_t:

    + sum_{d=1..span} u_d(s_t) v_{k-d}          the frame's keys up to `span` below k (its chord so far)
    + sum_{|d|<=span} q_d(s_t) x_{t, k+d}        the previous frame's keys around k (voice leading)

W and V learn each key's own part; these terms learn what holds at every pitch, from every key's data.
`forward` then returns [s_t | x_t]: the previous frame travels with the time state.

With `decoders` = K > 1 the frame's probability is a mixture of K such decoders, each with its own
parameters, alternately going up and down the keyboard (an odd decoder is the same formula on the
keyboard turned upside down, its "keys below" being the keys above):

    p(x_t+1 | s_t) = sum_i w_i(s_t) p_i(x_t+1 | s_t)        w = softmax(linear(s_t))

still exact; each order sees a chord from another side, and the mixture beats either (JSB test NLL 5.78
-> 5.63 with two decoders of equal weight, docs/benchmarks.md).

Model contract: `forward(x, state) -> (s, state)` gives the time state (not logits); a model with
`frame_nll(s, frames)` and `sample_frame(s, ...)` is scored and sampled through them (training and
sampling look for these two methods).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from ..processors import draw
from .base import Model, ModelSpec, State
from .mixing import frames_by_part, mixture_nll, most_probable
from .steplstm import LSTM
from .tied import around, below, zero_linear


class EnDeCellSpec(ModelSpec):
    embed: int = Field(256, ge=1, description="size of the per-frame keyboard encoding")
    hidden: int = Field(256, ge=1, description="time-LSTM units per layer")
    layers: int = Field(1, ge=1, le=8, description="stacked time-LSTM layers")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout on the encoding, between layers and on the time state")
    input_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="in training, each sounding key of the input frames is dropped with this probability (the "
        "frames to predict are kept whole): the model cannot lean on copying the previous chord",
    )
    decoder_hidden: int = Field(64, ge=1, description="hidden units of the key-by-key NADE decoder")
    decoders: int = Field(
        1,
        ge=1,
        le=8,
        description="NADE decoders, alternately going up the keyboard from the lowest key and down from the "
        "highest; a frame's probability is their mixture, with weights from the time state (exact; sampling "
        "draws each frame with one decoder, chosen by those weights)",
    )
    span: int = Field(
        0,
        ge=0,
        le=48,
        description="tied interval terms: weights shared across the keyboard for the frame's keys up to SPAN "
        "below each key and the previous frame's keys within SPAN of it (0 = off)",
    )


class EnDeCell(Model):
    Spec = EnDeCellSpec
    mixes = True

    def __init__(self, spec: EnDeCellSpec, sizes: dict[str, int]) -> None:
        super().__init__(spec)
        n_in, keys = sizes["input_size"], sizes["output_size"]
        self.encoder = nn.Sequential(nn.Linear(n_in, spec.embed), nn.ReLU(), nn.Dropout(spec.dropout))
        self.lstm = LSTM(
            spec.embed, spec.hidden, spec.layers, batch_first=True, dropout=spec.dropout if spec.layers > 1 else 0.0
        )
        self.drop = nn.Dropout(spec.dropout)
        _nade(self, spec, keys)
        if spec.decoders > 1:
            self.more = nn.ModuleList(nn.Module() for _ in range(spec.decoders - 1))  # decoders 2, 3, ...
            for nade in self.more:
                _nade(nade, spec, keys)
            self.to_mix = zero_linear(spec.hidden, spec.decoders)  # mixture weights: equal at the start

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """x: (batch, time, input_size) frames -> time state s (batch, time, hidden), new LSTM state.

        s[:, t] conditions the prediction of frame t + 1; carrying `state` step by step gives the same
        s as one call on the whole sequence.
        """
        if self.training and self.spec.input_dropout:
            x = x * (torch.rand_like(x) >= self.spec.input_dropout)
        s, state = self.lstm(self.encoder(x), state)
        s = self.drop(s)
        if self.spec.span:
            s = torch.cat([s, x[..., : self.V.shape[0]].to(s.dtype)], -1)
        return s, tuple(state)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`'s output -> the time state s and (with `span`) the previous frame."""
        h = self.spec.hidden
        return (out[..., :h], out[..., h:]) if self.spec.span else (out, None)

    def _decoders(self) -> list[nn.Module]:
        """The NADE decoders: decoder i goes from the lowest key up when i is even, from the highest down
        when i is odd (the same kind of decoder on the keyboard turned upside down)."""
        return [self, *self.more] if self.spec.decoders > 1 else [self]

    def key_logits(self, out: torch.Tensor, frames: torch.Tensor, decoder: int = 0) -> torch.Tensor:
        """Teacher-forced logits: out (..., hidden[+keys]) from `forward`, frames (..., keys) 0/1 -> (..., keys),
        the logit of key k given the time state and the keys that `decoder` decides before k (the keys
        below k for an even decoder, above k for an odd one)."""
        s, prev = self._split(out)
        nade = self._decoders()[decoder]
        if decoder % 2:
            return self._logits(nade, s, None if prev is None else prev.flip(-1), frames.flip(-1)).flip(-1)
        return self._logits(nade, s, prev, frames)

    def _logits(
        self, nade: nn.Module, s: torch.Tensor, prev: torch.Tensor | None, frames: torch.Tensor
    ) -> torch.Tensor:
        v = frames.to(nade.W.dtype).unsqueeze(-1)  # (..., keys, 1)
        contrib = v * nade.W  # (..., keys, hn): what each key adds to the hidden pre-activation
        a = nade.to_bh(s).unsqueeze(-2) + torch.cumsum(contrib, -2) - contrib  # exclusive sum: keys j < k
        logits = nade.to_bv(s) + (torch.sigmoid(a) * nade.V).sum(-1)
        if prev is None:
            return logits
        return logits + below(v.squeeze(-1), nade.to_below(s)) + around(prev, nade.to_prev(s))

    def mixture_weights(self, out: torch.Tensor) -> torch.Tensor:
        """(..., decoders) log weights of the decoders given the time state (log 1 with one decoder)."""
        s, _ = self._split(out)
        if self.spec.decoders == 1:
            return s.new_zeros(*s.shape[:-1], 1)
        return torch.log_softmax(self.to_mix(s), -1)

    def frame_nll(self, s: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Exact -log p(frame | s) in nats: s (batch, time, hidden), frames (batch, time, keys) -> (batch, time).
        With several decoders p is their mixture: sum_i w_i(s) p_i(frame | s)."""
        nlls = []
        for i in range(self.spec.decoders):
            logits = self.key_logits(s, frames, i)
            nlls.append(F.binary_cross_entropy_with_logits(logits, frames.to(logits.dtype), reduction="none").sum(-1))
        if len(nlls) == 1:
            return nlls[0]
        return mixture_nll(torch.stack(nlls, -1), self.mixture_weights(s))

    @torch.no_grad()
    def sample_frame(self, s, *, mode="bernoulli", temperature=1.0, threshold=0.5, generator=None):  # types: Model's
        """Draw one frame key by key: s (batch, hidden) -> (batch, keys) 0/1 floats.

        `threshold` mode decides each key by p >= threshold given the keys before it (greedy). With several
        decoders each row draws its decoder by the mixture weights; `threshold` mode decodes greedily with
        every decoder and keeps the frame the mixture finds most probable.
        """
        kw = dict(mode=mode, temperature=temperature, threshold=threshold, generator=generator)
        if self.spec.decoders == 1:
            return self._decode(0, s, **kw)
        if mode == "threshold":
            frames = torch.stack(
                [self._decode(i, s, **kw) for i in range(self.spec.decoders)]
            )  # (decoders, batch, keys)
            return most_probable(frames, self.frame_nll(s.expand(len(frames), *s.shape), frames))  # all in one call
        which = draw(self.mixture_weights(s).exp(), generator)  # (batch,) each row's decoder
        return frames_by_part(which, self.spec.decoders, lambda i, rows: self._decode(i, s[rows], **kw))

    def _decode(self, decoder: int, out: torch.Tensor, **kw) -> torch.Tensor:
        """Decoder `decoder`'s frame for `forward` outputs `out` (batch, hidden[+keys]), keys in index order."""
        s, prev = self._split(out)
        nade = self._decoders()[decoder]
        if decoder % 2:  # on the keyboard upside down
            return self._draw(nade, s, None if prev is None else prev.flip(-1), **kw).flip(-1)
        return self._draw(nade, s, prev, **kw)

    def _draw(self, nade, s, prev, *, mode, temperature, threshold, generator) -> torch.Tensor:
        """One decoder's frame, keys in index order."""
        a = nade.to_bh(s)  # (batch, hn)
        bv = nade.to_bv(s)  # (batch, keys)
        frame = torch.zeros_like(bv)
        span = self.spec.span
        if prev is not None:
            bv = bv + around(prev, nade.to_prev(s))
            u = nade.to_below(s)  # (batch, span): u_1..u_span
        for k in range(bv.shape[1]):
            logit = bv[:, k] + (torch.sigmoid(a) * nade.V[k]).sum(-1)  # (batch,)
            if prev is not None and k:
                d = min(k, span)
                logit = logit + (frame[:, k - d : k].flip(-1) * u[:, :d]).sum(-1)  # keys k-1 .. k-d
            p = torch.sigmoid(logit / temperature)  # (batch,)
            if mode == "threshold":
                on = (p >= threshold).to(p.dtype)
            else:
                on = (torch.rand(p.shape, generator=generator) < p).to(p.dtype)
            frame[:, k] = on
            a = a + on[:, None] * nade.W[k]
        return frame


def _nade(module: nn.Module, spec: EnDeCellSpec, keys: int) -> None:
    """Give `module` the parameters of one NADE decoder over `keys` keys, conditioned on the time state."""
    hn = spec.decoder_hidden
    module.to_bv = nn.Linear(spec.hidden, keys)  # visible (key) biases from the time state
    module.to_bh = nn.Linear(spec.hidden, hn)  # NADE hidden biases from the time state
    nn.init.constant_(module.to_bv.bias, -3.0)  # keys are mostly off
    module.W = nn.Parameter(torch.randn(keys, hn) * 0.01)  # key j -> hidden: row j is W[:, j] of the formula
    module.V = nn.Parameter(torch.randn(keys, hn) * 0.01)  # hidden -> key k
    if spec.span:
        module.to_below = zero_linear(spec.hidden, spec.span)  # u_1..u_span
        module.to_prev = zero_linear(spec.hidden, 2 * spec.span + 1)  # q_-span..q_span
