"""Four-part writing measures of a Score with voices S, A, T, B (lstmidi.encodings.voices.voice_tracks):
what a harmony teacher checks, on a grid of beats (the pitch each voice sounds at each beat, -1 for none).

- `in_ranges`: the share of notes inside the usual ranges (S C4-G5, A F3-D5, T C3-A4, B E2-D4);
- `parallels`: parallel fifths and octaves (unisons included) between any two voices, per 100 beats: two
  consecutive beats where both voices move in the same direction and form a perfect fifth (or an octave)
  both times, counted modulo the octave;
- `crossings`: beats where a voice sounds below the voice under it (S < A, A < T or T < B), per 100 beats;
- `beat_chords`: the chord of each beat, as (root pitch class, quality) of the best-fitting triad
  (major, minor, diminished, augmented; a seventh above the triad is allowed), None where fewer than two
  pitch classes sound; `chord_match` compares two pieces beat by beat.
"""

from __future__ import annotations

import numpy as np
from symusic import Score

from .encodings.voices import voice_tracks

USUAL_RANGES = ((60, 79), (53, 74), (48, 69), (40, 62))  # S C4-G5, A F3-D5, T C3-A4, B E2-D4
TRIADS = {"major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6), "augmented": (0, 4, 8)}


def beat_grid(score: Score) -> np.ndarray:
    """(beats, 4) int: the pitch each voice (S A T B) sounds at the start of each beat, -1 when silent."""
    quarters = score.to("quarter")
    tracks = [quarters.tracks[i].notes.numpy() for i in voice_tracks(score)]
    end = max((float((n["time"] + n["duration"]).max()) for n in tracks if len(n["time"])), default=0.0)
    beats = int(np.ceil(end - 1e-6))
    grid = np.full((beats, 4), -1, np.int64)
    at = np.arange(beats, dtype=np.float64)
    for v, n in enumerate(tracks):
        for time, duration, pitch in zip(n["time"], n["duration"], n["pitch"], strict=True):
            sounding = (at >= time - 1e-6) & (at < time + duration - 1e-6)
            grid[sounding, v] = pitch
    return grid


def in_ranges(score: Score) -> float:
    """The share of the notes of each voice inside its usual range (1.0 for a piece without notes)."""
    quarters = score.to("quarter")
    inside = total = 0
    for v, i in enumerate(voice_tracks(score)):
        pitches = quarters.tracks[i].notes.numpy()["pitch"]
        low, high = USUAL_RANGES[v]
        inside += int(((pitches >= low) & (pitches <= high)).sum())
        total += len(pitches)
    return inside / total if total else 1.0


def parallels(grid: np.ndarray) -> float:
    """Parallel fifths and octaves between any two voices per 100 beats (see the module doc)."""
    if len(grid) < 2:
        return 0.0
    count = 0
    for a in range(4):
        for b in range(a + 1, 4):
            x, y = grid[:, a], grid[:, b]
            sounding = (x[:-1] >= 0) & (x[1:] >= 0) & (y[:-1] >= 0) & (y[1:] >= 0)
            dx, dy = np.diff(x), np.diff(y)
            similar = (dx != 0) & (dy != 0) & (np.sign(dx) == np.sign(dy))
            interval = np.abs(x - y) % 12
            perfect = (interval[:-1] == interval[1:]) & np.isin(interval[1:], (0, 7))
            count += int((sounding & similar & perfect).sum())
    return 100.0 * count / len(grid)


def crossings(grid: np.ndarray) -> float:
    """Beats with a voice below the voice under it (S < A, A < T, T < B), per 100 beats."""
    if not len(grid):
        return 0.0
    upper, lower = grid[:, :-1], grid[:, 1:]
    crossed = ((upper >= 0) & (lower >= 0) & (upper < lower)).any(1)
    return 100.0 * int(crossed.sum()) / len(grid)


def chord_of(pitches) -> tuple[int, str] | None:
    """(root pitch class, quality) of the triad that best fits the sounding pitches (most of its tones
    present, fewest tones outside it and its seventh; the bass as root breaks ties), None for fewer than two
    pitch classes."""
    sounding = [int(p) for p in pitches if p >= 0]
    classes = {p % 12 for p in sounding}
    if len(classes) < 2:
        return None
    bass = min(sounding) % 12
    best, best_score = None, None
    for root in range(12):
        for quality, steps in TRIADS.items():
            triad = {(root + s) % 12 for s in steps}
            extra = classes - triad - {(root + 10) % 12, (root + 11) % 12}
            score = (len(classes & triad), -len(extra), root in classes, root == bass)
            if best_score is None or score > best_score:
                best, best_score = (root, quality), score
    return best


def beat_chords(grid: np.ndarray) -> list[tuple[int, str] | None]:
    return [chord_of(row) for row in grid]


def chord_match(a: np.ndarray, b: np.ndarray) -> float:
    """The share of beats (of the shorter piece, where both have a chord) whose chords agree in root and
    quality; NaN when no beat has a chord in both."""
    pairs = [(x, y) for x, y in zip(beat_chords(a), beat_chords(b)) if x is not None and y is not None]
    return float(np.mean([x == y for x, y in pairs])) if pairs else float("nan")
