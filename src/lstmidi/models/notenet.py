"""`notenet`: an LSTM over notes (pitch, step, duration, velocity) with one head per field.

The pitch head is categorical (softmax over 128 MIDI pitches: the TensorFlow tutorial) or regression
(one number: DeepLearning4Music, whose output layer is Dense(3) over pitch, velocity and time delta);
the other fields are regression heads in their own units (seconds, velocity 1..127). Sizes that
reproduce the originals: DeepLearning4Music `hidden=48, dense=[24], pitch_head=regression`;
tutorial `hidden=128, dense=[], pitch_head=categorical`.

Inputs are the encoding's raw rows, scaled here (velocity / 128, times in seconds); the pitch enters as
a learned embedding (default) or, as in both originals, as pitch / 128 (`pitch_input=scalar`).
`forward` returns a dict {field: tensor}: pitch logits (batch, time, 128) or pitch values (batch, time),
and values (batch, time) for the other fields.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from .base import Model, ModelSpec, State
from .steplstm import LSTM

SCALE = {"pitch": 1 / 128, "velocity": 1 / 128, "step": 1.0, "duration": 1.0}


class NoteNetSpec(ModelSpec):
    hidden: int = Field(128, ge=1, description="LSTM units per layer")
    layers: int = Field(1, ge=1, le=8, description="stacked LSTM layers")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout between layers and before the heads")
    dense: list[int] = Field(
        default_factory=list, description="hidden Dense layers (ReLU) between the LSTM and the heads"
    )
    pitch_head: Literal["categorical", "regression"] = Field(
        "categorical", description="softmax over 128 pitches, or one regressed number"
    )
    pitch_input: Literal["embedding", "scalar"] = Field(
        "embedding",
        description="pitch fed as a learned embedding, or as pitch/128 (the originals; neighbouring pitches "
        "then differ by 0.008)",
    )
    pitch_embed: int = Field(32, ge=1, description="size of the pitch embedding (pitch_input=embedding)")


class NoteNet(Model):
    Spec = NoteNetSpec

    def __init__(self, spec: NoteNetSpec, sizes: dict) -> None:
        super().__init__(spec)
        self.fields: list[str] = list(sizes["fields"])
        self.register_buffer("scale", torch.tensor([SCALE[f] for f in self.fields]), persistent=False)
        self.pitch_col = self.fields.index("pitch")
        n_in = len(self.fields)
        if spec.pitch_input == "embedding":
            self.pitch_embedding = nn.Embedding(128, spec.pitch_embed)
            n_in += spec.pitch_embed - 1  # the pitch column is replaced by its embedding
        self.lstm = LSTM(
            n_in, spec.hidden, spec.layers, batch_first=True, dropout=spec.dropout if spec.layers > 1 else 0.0
        )
        layers: list[nn.Module] = [nn.Dropout(spec.dropout)]
        width = spec.hidden
        for d in spec.dense:
            layers += [nn.Linear(width, d), nn.ReLU()]
            width = d
        self.trunk = nn.Sequential(*layers)
        self.pitch_classes = int(sizes.get("pitch_classes", 128))
        # all regression outputs in one Linear (DeepLearning4Music's Dense(3) when pitch is regressed too)
        self.regressed = [f for f in self.fields if f != "pitch" or spec.pitch_head == "regression"]
        self.values = nn.Linear(width, len(self.regressed))
        with torch.no_grad():  # start near typical values: middle C, a short step, a quarter second, mf
            start = {"pitch": 60 / 128, "step": 0.25, "duration": 0.4, "velocity": 80 / 128}
            self.values.bias.copy_(torch.tensor([start[f] for f in self.regressed]))
        if spec.pitch_head == "categorical":
            self.pitch_logits = nn.Linear(width, self.pitch_classes)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[dict[str, torch.Tensor], State]:
        """x: (batch, time, fields) raw note rows -> ({field: output}, state); stepwise == whole."""
        inputs = x * self.scale  # (batch, time, fields)
        if self.spec.pitch_input == "embedding":
            pitch = x[..., self.pitch_col].round().long().clamp(0, 127)  # (batch, time)
            others = torch.cat([inputs[..., : self.pitch_col], inputs[..., self.pitch_col + 1 :]], -1)
            inputs = torch.cat([self.pitch_embedding(pitch), others], -1)  # (batch, time, embed + fields - 1)
        h, state = self.lstm(inputs, state)  # (batch, time, hidden)
        h = self.trunk(h)  # (batch, time, width)
        values = self.values(h)  # (batch, time, regressed)
        out = {}
        for i, f in enumerate(self.regressed):
            out[f] = values[..., i] / SCALE[f]  # back to the field's units
        if self.spec.pitch_head == "categorical":
            out["pitch"] = self.pitch_logits(h)  # (batch, time, 128)
        return out, tuple(state)
