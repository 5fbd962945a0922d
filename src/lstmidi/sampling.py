"""Generation: stateful sampling from a loaded model, one step of work per new step.

The primer is run through the model once; after that every new frame costs one LSTM step with the
state carried (a window is never re-run). Randomness comes from one `torch.Generator` seeded by `seed`,
so the same model, primer and seed give the same music.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from symusic import Score

from .errors import LstmidiError
from .midi import load_score
from .modelfile import LoadedModel


@dataclass
class Piece:
    """A generated piece: the Score (primer + continuation) and how long the primer part is."""

    score: Score
    primer_seconds: float
    frames: np.ndarray


def sample_frames(probs: torch.Tensor, mode: str, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, keys) probabilities -> (batch, keys) 0/1 frame."""
    if mode == "threshold":
        return (probs > threshold).float()
    return torch.bernoulli(probs, generator=generator)


@torch.no_grad()
def sample_multihot(model: torch.nn.Module, primer: torch.Tensor, steps: int, *, onset_keys: int | None = None,
                    mode: Literal["bernoulli", "threshold"] = "bernoulli", temperature: float = 1.0,
                    threshold: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps, features) by `steps` frames -> (batch, steps, features).

    `onset_keys`: when the features are [held keys | onsets], the number of keys; a sampled onset then
    forces its key to be held.
    """
    model.eval()
    logits, state = model(primer)  # (batch, primer_steps, features)
    last = logits[:, -1]
    out = []
    for _ in range(steps):
        frame = sample_frames(torch.sigmoid(last / temperature), mode, threshold, generator)  # (batch, features)
        if onset_keys:
            frame[:, :onset_keys] = torch.maximum(frame[:, :onset_keys], frame[:, onset_keys:])
        out.append(frame)
        logits, state = model(frame[:, None, :], state)  # (batch, 1, features)
        last = logits[:, -1]
    return torch.stack(out, 1) if out else primer[:, :0]


def primer_frames(loaded: LoadedModel, primer: str | Path | None, primer_seconds: float | None,
                  num: int, generator: torch.Generator) -> np.ndarray:
    """(num, primer_steps, features) uint8: from a MIDI file (its first `primer_seconds`, default all),
    or random excerpts of held-out music stored in the model file, or a silent frame."""
    enc = loaded.encoding
    width = enc.sizes["input_size"]
    if primer is not None:
        data = loaded.preset.data
        frames = enc.encode(load_score(primer, data.tracks, data.drums))
        if primer_seconds:
            frames = frames[: enc.steps_for_seconds(primer_seconds)]
        if len(frames) == 0:
            raise LstmidiError(f"{primer}: primer has no notes in the model's range")
        return np.repeat(frames[None], num, axis=0)
    if loaded.primers is not None and len(loaded.primers):
        idx = torch.randint(len(loaded.primers), (num,), generator=generator).numpy()
        bank = loaded.primers[idx]
        if primer_seconds is not None:
            bank = bank[:, : max(1, enc.steps_for_seconds(primer_seconds))] if primer_seconds > 0 else bank[:, :1] * 0
        return bank
    return np.zeros((num, 1, width), np.uint8)


def generate(loaded: LoadedModel, *, seconds: float | None = None, steps: int | None = None, num: int = 1,
             seed: int = 0, primer: str | Path | None = None, primer_seconds: float | None = None,
             temperature: float | None = None, mode: str | None = None, threshold: float | None = None) -> list[Piece]:
    """Generate `num` pieces in one batch. Length: `steps`, or `seconds` (default: the model's
    sample.seconds). Sampling defaults come from the model's preset (`sample` section)."""
    enc = loaded.encoding
    if enc.kind != "multihot":
        raise LstmidiError(f"generation for {enc.kind!r} encodings is not available yet")
    if num < 1:
        raise LstmidiError("--num must be at least 1")
    defaults = loaded.preset.sample
    if steps is None:
        steps = enc.steps_for_seconds(seconds if seconds is not None else defaults.seconds)
    generator = torch.Generator().manual_seed(seed)
    prime = primer_frames(loaded, primer, primer_seconds, num, generator)
    onset_keys = enc.params.keys if getattr(enc.params, "onsets", False) else None
    new = sample_multihot(
        loaded.model, torch.from_numpy(prime).float(), steps, onset_keys=onset_keys,
        mode=mode or defaults.mode, temperature=temperature or defaults.temperature,
        threshold=threshold or defaults.threshold, generator=generator,
    ).numpy().astype(np.uint8)
    pieces = []
    for i in range(num):
        frames = np.concatenate([prime[i], new[i]])  # (primer_steps + steps, features)
        pieces.append(Piece(enc.decode(frames), prime.shape[1] * enc.seconds_per_step, frames))
    return pieces
