"""Four-part writing measures on hand-built scores: exact counts."""

import math

import numpy as np
from symusic import Note, Score, Track

from lstmidi.voiceleading import beat_grid, chord_match, chord_of, crossings, in_ranges, parallels


def satb(*lines, tpq=480) -> Score:
    """lines: S, A, T, B pitches, one per beat (None: a rest)."""
    score = Score(tpq)
    for name, line in zip(("Soprano", "Alto", "Tenor", "Bass"), lines, strict=True):
        track = Track(name=name)
        for beat, pitch in enumerate(line):
            if pitch is not None:
                track.notes.append(Note(beat * tpq, tpq, pitch, 80))
        score.tracks.append(track)
    return score


def test_beat_grid_holds_each_voice_pitch_per_beat():
    s = satb([72, 74, None], [67, 67, 67], [64, 65, 64], [48, 50, 48])
    assert beat_grid(s).tolist() == [[72, 67, 64, 48], [74, 67, 65, 50], [-1, 67, 64, 48]]


def test_parallel_octaves_and_fifths_are_counted_only_in_similar_motion():
    # S and B in octaves moving up together: one parallel octave in 2 beats -> 50 per 100 beats
    assert parallels(beat_grid(satb([72, 74], [67, 67], [64, 64], [48, 50]))) == 50.0
    # a fifth S-T (72/65 = 7) moving up to 74/67: parallel fifth; A static
    assert parallels(beat_grid(satb([72, 74], [67, 67], [65, 67], [48, 48]))) == 50.0
    # contrary motion into an octave is not parallel; a repeated fifth (no motion) is not either
    assert parallels(beat_grid(satb([72, 72], [67, 65], [64, 53], [48, 48]))) == 0.0
    assert parallels(beat_grid(satb([72, 71, 72], [67, 67, 67], [64, 62, 64], [48, 43, 48]))) == 0.0


def test_crossings_and_ranges():
    s = satb([72, 64, 72, 72], [67, 67, 67, 67], [64, 64, 69, 64], [48, 48, 48, 48])
    assert crossings(beat_grid(s)) == 50.0  # beat 2: S below A; beat 3: T above A
    assert in_ranges(s) == 1.0
    low = satb([72, 72], [67, 67], [64, 64], [36, 48])  # C2 is below the bass's E2
    assert in_ranges(low) == 7 / 8


def test_chords_by_root_and_quality():
    assert chord_of([48, 64, 67, 72]) == (0, "major")
    assert chord_of([45, 60, 64, 69]) == (9, "minor")
    assert chord_of([43, 59, 62, 65]) == (7, "major")  # G7: the seventh is allowed
    assert chord_of([47, 62, 65, 71]) == (11, "diminished")
    assert chord_of([60, 72, -1, -1]) is None  # one pitch class
    a = beat_grid(satb([72, 72], [67, 69], [64, 60], [48, 45]))  # C major, A minor
    b = beat_grid(satb([76, 72], [72, 67], [67, 64], [48, 48]))  # C major, C major
    assert chord_match(a, a) == 1.0 and chord_match(a, b) == 0.5
    assert math.isnan(chord_match(np.zeros((0, 4), int), a))
