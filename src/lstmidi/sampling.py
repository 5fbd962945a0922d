"""Generation: stateful sampling from a loaded model, one step of work per new step.

The primer is run through the model once; after that every new step costs one LSTM step with the
state carried (a window is never re-run; a seq2seq model re-encodes its context once per decoded
window, as it was trained). Randomness comes from one `torch.Generator` seeded by `seed`, so the same
model, primer and seed give the same music. The sampler of each encoding kind is in `lstmidi.samplers`,
chosen through `lstmidi.kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from symusic import Score

from .encodings.base import TokenStream
from .errors import LstmidiError
from .kinds import kind_of
from .metrics import notes_end  # noqa: F401 (notes_end: public here)
from .midi import load_score
from .modelfile import LoadedModel
from .samplers import GrammarTracker, sample_multihot, sample_notes, sample_tokens  # noqa: F401 (public here)


@dataclass
class Piece:
    """A generated piece: the Score (primer + continuation), how long the primer part is (seconds),
    and the encoded steps it was decoded from."""

    score: Score
    primer_seconds: float
    frames: np.ndarray


def primer_steps(
    loaded: LoadedModel,
    primer: str | Path | Score | None,
    primer_seconds: float | None,
    num: int,
    generator: torch.Generator,
) -> np.ndarray:
    """(num, primer_steps, ...) encoded primer: from a MIDI file or a Score (its first `primer_seconds`, default all),
    else random excerpts of held-out music stored in the model file; `primer_seconds=0` or no stored
    excerpts: one neutral step (a silent frame, the first token, or a middle-C note)."""
    enc = loaded.encoding
    if primer is not None:
        data = loaded.preset.data
        steps = enc.encode(primer if isinstance(primer, Score) else load_score(primer, data.tracks, data.drums))
        if isinstance(enc, TokenStream):
            steps = steps[steps != enc.eos]  # the primer is continued, not ended
        if primer_seconds:
            steps = steps[: enc.steps_for_seconds(primer_seconds)]
        if len(steps) == 0:
            raise LstmidiError(f"{primer}: primer has no notes the model can read")
        return np.repeat(steps[None], num, axis=0)
    if isinstance(enc, TokenStream):  # whole pieces: start at the beginning
        return np.full((num, 1), enc.bos, np.int64)
    if enc.from_scratch:
        return kind_of(enc).neutral_primer(enc, num)
    if loaded.primers is not None and len(loaded.primers) and primer_seconds != 0:
        idx = torch.randint(len(loaded.primers), (num,), generator=generator).numpy()
        bank = loaded.primers[idx]
        return bank[:, : enc.steps_for_seconds(primer_seconds)] if primer_seconds else bank
    return kind_of(enc).neutral_primer(enc, num)


def generate(
    loaded: LoadedModel,
    *,
    seconds: float | None = None,
    steps: int | None = None,
    num: int = 1,
    seed: int = 0,
    primer: str | Path | Score | None = None,
    primer_seconds: float | None = None,
    temperature: float | None = None,
    mode: str | None = None,
    threshold: float | None = None,
    max_notes: int | None = None,
    fill: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    nucleus: str | None = None,
    greedy: bool | None = None,
    beam: int | None = None,
    repetition_penalty: float | None = None,
    max_repeat: int | None = None,
    key: str | None = None,
    pitch_range: tuple[int, int] | None = None,
    programs: list[int] | None = None,
    iterations: int | None = None,
    parallels: float | None = None,
    include_primer: bool = True,
) -> list[Piece]:
    """Generate `num` pieces in one batch with a loaded model.

    Length: `steps` encoding steps, or `seconds` of new music (default: the model's sample.seconds);
    an event-token model is steered to end with EOS near that length instead of being cut off.
    Each option left as None takes the model's default (its preset's `sample` section). Event-token
    models also take `nucleus` ("pitch": top_p cuts only pitch tokens), `beam` (beam search),
    `repetition_penalty`, `max_repeat` (no pitch more than N times in a row), `key` ("D minor"),
    `pitch_range` (low, high), `programs` (allowed instruments); four-voice models take `iterations`
    (Gibbs sweeps) and `parallels` (nats off each parallel fifth or octave).
    Piano-roll models take `mode`, `threshold`, `max_notes` (at most that many keys held at once) and `fill`
    (a frame short of the model's usual number of keys weighs exp(-fill) less per key it lacks).
    `include_primer=False` leaves the primer out of the returned pieces.
    """
    options = dict(locals())  # the generation options as called (first statement: no other locals yet)
    for name in ("loaded", "primer", "include_primer"):
        del options[name]
    from .options import resolve_options

    o = resolve_options(loaded, options)
    enc = loaded.encoding
    stream = isinstance(enc, TokenStream)
    steps, num = o["steps"], o["num"]
    generator = torch.Generator().manual_seed(o["seed"])
    prime = primer_steps(loaded, primer, primer_seconds, num, generator)
    kind = kind_of(enc)
    new = kind.sample(loaded, prime, steps, o, generator)
    pieces = []
    for i in range(num):
        frames = (
            np.concatenate([prime[i], new[i].astype(prime.dtype)]) if include_primer else new[i].astype(prime.dtype)
        )
        if not include_primer and stream:
            frames = np.concatenate([[enc.bos], frames])
        frames = enc.finish(frames)  # a token stream: cut at the first EOS, or close a piece cut by the length limit
        primer_len = kind.primer_seconds(enc, prime[i]) if include_primer else 0.0
        pieces.append(Piece(enc.decode(frames), primer_len, frames))
    return pieces
