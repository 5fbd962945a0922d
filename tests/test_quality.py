"""The quality gate: exact harmony measures of hand-built scores, the random-pitch control, the
tell-apart score and the gate's verdict on real music and on random pitches."""

import numpy as np
import pytest
from symusic import Score

from conftest import chorale_like, make_score, note_tuples
from lstmidi import quality
from lstmidi.metrics import note_arrays

Q = 480  # ticks per quarter


def chords(*pitch_sets, beats: int = 2) -> Score:
    """One chord per `beats` beats (4/4, 120 qpm)."""
    return make_score([(i * beats * Q, beats * Q, p) for i, ps in enumerate(pitch_sets) for p in ps])


C, G7, G = (60, 64, 67), (59, 62, 65, 67), (55, 59, 62)


def test_find_key_of_scales():
    c_major = np.array([60, 62, 64, 65, 67, 69, 71, 72, 60, 67, 64])
    tonic, mode, r = quality.find_key(c_major, np.ones(len(c_major)))
    assert (tonic, mode) == (0, "major") and r > 0.8
    a_minor = np.array([57, 59, 60, 62, 64, 65, 68, 69, 57, 64, 60, 57])  # harmonic minor, tonic stressed
    tonic, mode, _ = quality.find_key(a_minor, np.ones(len(a_minor)))
    assert (tonic, mode) == (9, "minor")
    assert quality.find_key(np.zeros(0, np.int64), np.zeros(0)) == (0, "major", 0.0)


def test_consonance_counts_pairs_at_onsets_exactly():
    # C: 3 consonant pairs; G7 (B D F G): B-D m3, B-F tritone, B-G m6, D-F m3, D-G P4, F-G M2 -> 4 of 6; C: 3 of 3
    o, d, p = note_arrays(chords(C, G7, C))
    assert quality.consonance(o, d, p) == (10, 12)
    # a held note counts against each new note that starts under it, but two held notes are not counted again
    o, d, p = note_arrays(make_score([(0, 4 * Q, 60), (0, 4 * Q, 61), (2 * Q, Q, 67)]))
    assert quality.consonance(o, d, p) == (1, 3)  # C-C# (onset 0) no; C-G yes, C#-G no (onset 2)


def test_harmony_of_a_cadence():
    h = quality.harmony(chords(C, (65, 69, 72), G7, C))
    assert h["key"] == "C major" and h["in_scale"] == 1.0 and h["tonic_ending"] == 1.0
    assert h["max_sounding"] == 4 and h["consonance"] == pytest.approx(13 / 15)
    assert h["sounding_time"] == [0.0, 0.0, 0.0, 6.0, 2.0]  # beats with 0..4 notes sounding
    assert quality.harmony(chords(C, (65, 69, 72), C, G7))["tonic_ending"] == 0.0  # ends on the dominant
    h = quality.harmony(chords(C, C, (66, 70, 73)))  # F# major triad: 3 of 9 notes outside C major
    assert h["key"] == "C major" and h["in_scale"] == pytest.approx(6 / 9)
    empty = quality.harmony(Score(Q))
    assert empty["in_scale"] == empty["consonance"] == empty["tonic_ending"] == 0.0


def test_minor_keys_allow_both_sixths_and_sevenths_and_the_picardy_third():
    # A minor with G# and F#, ending on A major: only the final C# (of 30 notes) is outside the minor key's
    # scale, and the ending counts as tonic
    h = quality.harmony(
        chords(
            (57, 60, 64),
            (50, 57, 65),
            (57, 60, 64),
            (53, 57, 60),
            (52, 56, 59, 64),
            (57, 60, 64),
            (54, 57, 62),
            (52, 56, 59, 64),
            (45, 57, 61, 64),
        )
    )
    assert h["key"] == "A minor" and h["in_scale"] == pytest.approx(29 / 30) and h["tonic_ending"] == 1.0


def test_sounding_time_and_share_within():
    o, d, _ = note_arrays(make_score([(0, 4 * Q, 60), (Q, Q, 64), (Q, 2 * Q, 67), (6 * Q, Q, 72)]))
    profile = quality.sounding_time(o, d)  # beats 0-1: 1, 1-2: 3, 2-3: 2, 3-4: 1, 4-6: 0, 6-7: 1
    assert profile.tolist() == [2.0, 3.0, 1.0, 1.0]
    assert quality.share_within(profile.tolist(), 2) == pytest.approx(4 / 5)
    assert quality.share_within([0.0], 4) == 1.0


def test_last_and_first_seconds():
    score = make_score([(i * Q, Q, 60 + i) for i in range(20)])  # one quarter (0.5 s) each, 10 s
    tail = quality.last_seconds(score, 2.0)
    assert note_tuples(tail) == [((i - 16) * Q, Q, 60 + i, 90) for i in range(16, 20)]
    assert note_tuples(quality.first_seconds(score, 2.0)) == [(i * Q, Q, 60 + i, 90) for i in range(4)]


def test_random_pitch_control_keeps_rhythm_and_range():
    real = [chorale_like(s) for s in range(3)]
    a, b = quality.random_pitch_control(real, seed=3), quality.random_pitch_control(real, seed=3)
    for r, x, y in zip(real, a, b):
        (ro, rd, rp), (xo, xd, xp) = note_arrays(r), note_arrays(x)
        assert sorted(zip(ro, rd)) == sorted(zip(xo, xd))
        assert rp.min() <= xp.min() and xp.max() <= rp.max()
        assert note_tuples(x) == note_tuples(y)
        assert not np.array_equal(np.sort(rp), np.sort(xp))


def test_tell_apart_separates_different_sets_only():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(size=(20, 4)).tolist(), rng.normal(size=(20, 4)).tolist()
    apart = (rng.normal(size=(20, 4)) + 3).tolist()
    assert quality.tell_apart(apart, same_b) > 0.95
    assert abs(quality.tell_apart(same_a, same_b) - 0.5) < 0.2
    assert np.isnan(quality.tell_apart([[1.0]], same_b))


def test_separation_rates_each_feature_alone():
    names = [*quality.MEASURES, *quality.SCALARS]
    a = [[0.0] * len(names) for _ in range(3)]
    b = [[0.0] * len(names) for _ in range(2)]
    for row, v in zip(a, (5, 6, 7)):
        row[0], row[1] = v, -v  # feature 0 higher in a, feature 1 lower: both tell the sets apart
    for row, v in zip(b, (1, 8)):
        row[0] = v  # 1 below every a, 8 above every a: half the pairs ordered each way
    out = quality.separation(a, b)
    assert list(out) == names
    assert out[names[0]] == {"generated": 6.0, "real": 4.5, "auc": 0.5}
    assert out[names[1]] == {"generated": -6.0, "real": 0.0, "auc": 1.0}
    assert out[names[2]]["auc"] == 0.5  # the same everywhere


def real_like(seed: int) -> Score:
    """A diatonic four-voice progression in C major ending on the tonic (I IV V7 I ...)."""
    rng = np.random.default_rng(seed)
    bank = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 65, 71, 74), (57, 64, 69, 72), (50, 65, 69, 74), (43, 62, 65, 71)]
    seq = (
        [bank[0], bank[1], bank[2], bank[0]] + [bank[i] for i in rng.integers(0, len(bank), 8)] + [bank[2], bank[0]] * 2
    )
    return chords(*seq, beats=1)


def test_gate_passes_real_music_and_fails_random_pitches():
    real = [real_like(s) for s in range(12)]
    held = [real_like(100 + s) for s in range(12)]
    good = quality.gate(real, held, seed=0)
    rows = good["rows"]
    assert good["voices"] == 4 and not good["near_random"]
    for name in ("key_fit", "in_scale", "consonance", "tonic_ending", "time_within_voices"):
        assert rows[name]["passed"], name
    assert rows["in_scale"]["real"] == 1.0 and rows["tonic_ending"]["real"] == 1.0
    assert rows["tell_apart"]["random"] > 0.9
    bad = quality.gate(quality.random_pitch_control(real, seed=5), held, seed=0)
    assert not bad["passed"] and bad["near_random"]
    assert not bad["rows"]["in_scale"]["passed"] and bad["rows"]["tell_apart"]["generated"] > 0.9
    line = quality.summary_line(bad)
    assert line.startswith("quality: in_scale") and "gate not passed: key_fit" in line
    table = quality.gate_table(good)
    assert len(table) == 2 + len(rows) and table[-1].startswith("| tell-apart accuracy")
