"""`LSTM`: `nn.LSTM` with a fast path for one time step at inference, used by every model.

Generating calls the LSTM once per new step with the state carried. `nn.LSTM` pays a fixed cost of
several milliseconds per call on CPU (oneDNN sets up its primitive each time), which is most of the time
of a step at batch 1. For a call with one time step, in eval mode and without gradients, this class
computes the step itself from the same weights: per layer one matrix product of [input, h] with the
input and recurrent weights stacked side by side (cached until a weight changes), then the gates; a token
model looks its first layer's input gates up in a table (`input_table`) instead. The
parameters, state-dict keys and every other call are `nn.LSTM`'s own, so model files are unchanged;
`tests/test_models.py` checks the fast path against the full-sequence forward pass.

A step of many rows (`HALF_ROWS` or more: several pieces generated at once) multiplies in bfloat16 where
the CPU has native bfloat16 products (AVX-512 BF16 / AMX): 2x the rate of float32 on 32 rows here. The
products' inputs are rounded to bfloat16 (8 significant bits), the sums, the biases, the gates and the
cell state stay float32; the held-out loss of the bundled model, stepped at 32 rows, moved by 1.2e-6 nats
per token (docs/benchmarks.md). A step of fewer rows is float32, where bfloat16 gains nothing.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]

HALF_ROWS = 8  # rows from which a step multiplies in bfloat16 (when the CPU has native bfloat16 products)


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (oneDNN with AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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

    def _half_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`_layers`' two matrices of each layer in bfloat16."""
        layers = self._layers()
        return self._cached(
            "half",
            [w for layer in layers for w in layer[:2]],
            lambda: [(w.bfloat16(), h.bfloat16()) for w, h, _ in layers],
        )

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
        layers = self._layers()
        if batch >= HALF_ROWS and h0.dtype == torch.float32 and native_bfloat16():
            layers = [(w, h, b) for (w, h), (_, _, b) in zip(self._half_layers(), layers)]
        for layer, (weight, w_hh, bias) in enumerate(layers):
            if layer == 0 and input_gates is not None:
                gates = _addmm(input_gates, h0[0], w_hh)
            else:
                gates = _addmm(bias, torch.cat([inp, h0[layer]], 1), weight)  # (batch, 4 * hidden): i, f, g, o
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c0[layer] + torch.sigmoid(i) * torch.tanh(g)
            inp = torch.sigmoid(o) * torch.tanh(c)
            hs.append(inp)
            cs.append(c)
        return inp[:, None], (torch.stack(hs), torch.stack(cs))


def _addmm(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """bias + x @ weight in float32; with a bfloat16 weight, x is rounded to bfloat16 for the product."""
    if weight.dtype == torch.float32:
        return torch.addmm(bias, x, weight)
    return torch.mm(x.to(weight.dtype), weight).float().add_(bias)
