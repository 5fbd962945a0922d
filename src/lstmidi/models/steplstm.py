"""`LSTM`: `nn.LSTM` with a fast path for one time step at inference, used by every model.

Generating calls the LSTM once per new step with the state carried. `nn.LSTM` pays a fixed cost of
several milliseconds per call on CPU (oneDNN sets up its primitive each time), which is most of the time
of a step at batch 1. For a call with one time step, in eval mode and without gradients, this class
computes the step itself from the same weights: per layer one matrix product of [input, h] with the
input and recurrent weights stacked side by side (cached until a weight changes), then the gates; a token
model looks its first layer's input gates up in a table (`input_table`) instead. The
parameters, state-dict keys and every other call are `nn.LSTM`'s own, so model files are unchanged;
`tests/test_models.py` checks the fast path against the full-sequence forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class LSTM(nn.LSTM):
    def forward(self, x, hx=None):
        if (
            isinstance(x, nn.utils.rnn.PackedSequence)
            or x.dim() != 3
            or not self.batch_first
            or x.shape[1] != 1
            or self.training
            or torch.is_grad_enabled()
            or self.bidirectional
            or self.proj_size
        ):
            return super().forward(x, hx)
        return self.step(x, hx)

    def _cached(self, name: str, tensors: list[torch.Tensor], build):
        """`build()`, kept until one of `tensors` is replaced or changed in place (its version counter)."""
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cache = self.__dict__.setdefault("_step_cache", {})
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, build())
        return cache[name][1]

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per layer ([W_ih | W_hh] transposed, W_hh transposed, b_ih + b_hh)."""

        def build():
            per, out = (4 if self.bias else 2), []
            for layer in range(self.num_layers):
                w_ih, w_hh, *b = self._flat_weights[layer * per : (layer + 1) * per]
                bias = b[0] + b[1] if b else w_ih.new_zeros(w_ih.shape[0])
                out.append((torch.cat([w_ih, w_hh], 1).t().contiguous(), w_hh.t().contiguous(), bias))
            return out

        return self._cached("layers", self._flat_weights, build)

    def input_table(self, embedding: torch.Tensor) -> torch.Tensor:
        """(vocab, 4 * hidden): the first layer's input gates of every row of an embedding matrix feeding
        this LSTM, so a token model's step looks its input gates up instead of multiplying."""
        w_ih = self._flat_weights[0]
        biases = self._flat_weights[2:4] if self.bias else []
        return self._cached(
            "table",
            [embedding, w_ih, *biases],
            lambda: torch.addmm(sum(biases) if biases else w_ih.new_zeros(w_ih.shape[0]), embedding, w_ih.t()),
        )

    def step(
        self, x: torch.Tensor | None, hx: State | None = None, *, input_gates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """x: (batch, 1, input_size) -> output (batch, 1, hidden), (h, c) each (layers, batch, hidden):
        the same values as `nn.LSTM.forward` (up to float rounding). `input_gates` (batch, 4 * hidden), e.g.
        rows of `input_table`, replaces x's contribution to the first layer (x is then not used)."""
        batch = (x if input_gates is None else input_gates).shape[0]
        if hx is None:
            zeros = (x if input_gates is None else input_gates).new_zeros(self.num_layers, batch, self.hidden_size)
            hx = (zeros, zeros)
        h0, c0 = hx
        inp = None if x is None else x[:, 0]
        hs, cs = [], []
        for layer, (weight, w_hh, bias) in enumerate(self._layers()):
            if layer == 0 and input_gates is not None:
                gates = torch.addmm(input_gates, h0[0], w_hh)
            else:
                gates = torch.addmm(bias, torch.cat([inp, h0[layer]], 1), weight)  # (batch, 4 * hidden): i, f, g, o
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c0[layer] + torch.sigmoid(i) * torch.tanh(g)
            inp = torch.sigmoid(o) * torch.tanh(c)
            hs.append(inp)
            cs.append(c)
        return inp[:, None], (torch.stack(hs), torch.stack(cs))
