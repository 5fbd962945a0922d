"""Generation that refuses copies: any stretch repeating more than N notes of a training piece is resampled.

A piece is generated as usual; then, while some run of more than `max_copy` consecutive notes also
occurs in a training piece (transposition-invariant, as `lstmidi.originality` counts it), the piece is
cut just after the first note (or chord) of the earliest such run and continued from there with fresh random
draws, up to `tries` times per piece (notes starting with the run's first note are kept). A piece that still
copies after the last try is kept, and its `longest_copy` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import note_arrays
from .modelfile import LoadedModel
from .originality import NgramIndex, longest_copy, note_symbols
from .sampling import Piece, generate, notes_end


@dataclass
class CopyReport:
    longest_copy: int  # notes, in the final piece
    resampled: int  # stretches resampled


def generate_without_copies(
    loaded: LoadedModel, index: NgramIndex, max_copy: int, *, tries: int = 8, seed: int = 0, **options
) -> tuple[list[Piece], list[CopyReport]]:
    """`sampling.generate(loaded, seed=seed, **options)` with every copy of more than `max_copy` notes
    resampled (see module doc). Returns the pieces and, per piece, its longest copy and resample count."""
    if max_copy < 1:
        raise ValueError("max_copy must be at least 1")
    pieces, reports = [], []
    for i, piece in enumerate(generate(loaded, seed=seed, **options)):
        resampled = 0
        while resampled < tries:
            start = index.first_copy(note_symbols(piece.score), max_copy)
            if start is None:
                break
            resampled += 1
            piece = _continue_from(loaded, piece, start, seed=seed + 7919 * resampled + i, options=options)
        pieces.append(piece)
        reports.append(CopyReport(longest_copy(piece.score, index), resampled))
    return pieces, reports


def _continue_from(loaded: LoadedModel, piece: Piece, start: int, *, seed: int, options: dict) -> Piece:
    """Keep the piece up to the onset of note `start` (its chord included) and generate the rest again."""
    score = piece.score.to("tick")
    onsets, _, _ = note_arrays(score)
    later = onsets[onsets > onsets[start]]
    cut = int(round((later[0] if len(later) else onsets[start]) * score.ticks_per_quarter))
    kept = score.clip(0, cut)
    rest = {k: v for k, v in options.items() if k not in ("primer", "primer_seconds", "num", "include_primer", "steps")}
    rest["seconds"] = max(1.0, notes_end(score) - notes_end(kept))  # the same total length, in seconds
    if kept.note_num() == 0:  # the copy starts with the first chord: start again from scratch
        return generate(loaded, num=1, seed=seed, **rest)[0]
    again = generate(loaded, primer=kept, num=1, seed=seed, include_primer=True, **rest)[0]
    return Piece(again.score, piece.primer_seconds, np.asarray(again.frames))
