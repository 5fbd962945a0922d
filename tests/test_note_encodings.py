"""The per-note encodings: `notes` (real-valued rows) and `pseudonotes` (fitted tokens)."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from symusic import Tempo

from conftest import make_score, note_tuples
from lstmidi.encodings import build_encoding
from lstmidi.errors import LstmidiError

# 120 qpm, 480 ticks per quarter: 1 s = 960 ticks, the same clock the decoders write
CHORD_AND_MELODY = [
    (0, 480, 60, 70),
    (0, 480, 64, 90),
    (0, 480, 67, 100),
    (480, 240, 72, 50),
    (720, 240, 71, 60),
    (960, 960, 72, 110),
]


def notes_enc(**params):
    return build_encoding({"name": "notes", **params})


# ---- notes ---------------------------------------------------------------------------------------
def test_notes_exact_rows_for_chord_and_melody():
    score = make_score(CHORD_AND_MELODY)
    expected = [[60, 0, 0.5], [64, 0, 0.5], [67, 0, 0.5], [72, 0.5, 0.25], [71, 0.25, 0.25], [72, 0.25, 1.0]]
    rows = notes_enc().encode(score)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, np.array(expected, np.float32))
    with_velocity = notes_enc(fields=["pitch", "velocity", "step"]).encode(score)  # DeepLearning4Music's columns
    np.testing.assert_array_equal(
        with_velocity,
        np.array([[60, 70, 0], [64, 90, 0], [67, 100, 0], [72, 50, 0.5], [71, 60, 0.25], [72, 110, 0.25]], np.float32),
    )


def test_notes_decode_keeps_real_velocities_or_uses_the_constant():
    score = make_score(CHORD_AND_MELODY)
    full = notes_enc(fields=["pitch", "step", "duration", "velocity"])
    assert note_tuples(full.decode(full.encode(score))) == note_tuples(score)  # same clock: exact
    plain = notes_enc(velocity=64)
    assert {n[3] for n in note_tuples(plain.decode(plain.encode(score)))} == {64}


def test_notes_follow_tempo_changes():
    score = make_score([(0, 480, 60), (960, 480, 62), (1440, 240, 64)], qpm=120)
    score.tempos.append(Tempo(960, qpm=60))  # from tick 960 (= 1 s) a quarter lasts 1 s
    enc = notes_enc()
    np.testing.assert_array_equal(enc.encode(score), np.array([[60, 0, 0.5], [62, 1, 1], [64, 1, 0.5]], np.float32))
    assert note_tuples(enc.decode(enc.encode(score))) == [(0, 480, 60, 80), (960, 960, 62, 80), (1920, 480, 64, 80)]


def test_notes_round_clip_and_drop():
    # 6 s rest -> max_step 4 s; 5 s note -> max_duration 4 s; pitch 110 > high dropped; 0.123 s -> 0.1 s
    score = make_score([(0, 4800, 60), (5760, 118, 62), (5760, 480, 110)], qpm=120)
    np.testing.assert_allclose(notes_enc(resolution=0.1).encode(score), [[60, 0, 4.0], [62, 4.0, 0.1]], rtol=1e-6)


def test_notes_decode_accepts_raw_model_output():
    enc = notes_enc(fields=["pitch", "step", "duration", "velocity"])
    raw = np.array(
        [
            [60.4, -0.3, 0.0, 64.6],  # negative step -> 0, zero duration -> one resolution step
            [61.7, 0.5, -1.0, 300.0],  # velocity clipped to 127
            [200.0, 0.25, 0.3, -5.0],  # pitch clipped to high=108, velocity to 1
            [30.0, 9.0, 9.0, 80.0],  # step and duration clipped to 4 s
            [np.nan, np.nan, np.nan, np.nan],
        ],
        np.float32,
    )  # NaN counts as 0
    assert note_tuples(enc.decode(raw)) == [
        (0, 1, 60, 65),
        (480, 1, 62, 127),
        (720, 288, 108, 1),
        (4560, 1, 21, 1),
        (4560, 3840, 30, 80),
    ]
    with pytest.raises(ValueError, match=r"expected \(notes, 4\)"):
        enc.decode(np.zeros((3, 3)))


def test_notes_missing_fields_take_constants():
    score = make_score([(0, 480, 60), (0, 480, 64), (960, 240, 67)])
    no_step = notes_enc(fields=["pitch", "duration"])  # a melody without rests: each note follows the last
    assert note_tuples(no_step.quantize(score)) == [(0, 480, 60, 80), (480, 480, 64, 80), (960, 240, 67, 80)]
    no_duration = notes_enc(fields=["pitch", "step"], duration=0.5)
    assert note_tuples(no_duration.quantize(score)) == [(0, 480, 60, 80), (0, 480, 64, 80), (960, 480, 67, 80)]


def test_notes_params_sizes_and_errors():
    enc = notes_enc(fields=["pitch", "velocity", "step"])
    assert enc.sizes == {"input_size": 3, "pitch_classes": 128, "fields": ["pitch", "velocity", "step"]}
    assert enc.fields == ["pitch", "velocity", "step"] and enc.field_index == {"pitch": 0, "velocity": 1, "step": 2}
    assert enc.steps_for_seconds(10) == 40 and enc.steps_for_seconds(0.01) == 1
    assert notes_enc().encode(make_score([])).shape == (0, 3)
    with pytest.raises(LstmidiError, match="fields must include 'pitch'"):
        notes_enc(fields=["step", "duration"])
    with pytest.raises(LstmidiError, match="must not repeat"):
        notes_enc(fields=["pitch", "step", "step"])
    with pytest.raises(LstmidiError, match="fields"):
        notes_enc(fields=["pitch", "tempo"])


notes_strategy = st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 1500), st.integers(15, 115), st.integers(1, 127)),
    min_size=0,
    max_size=30,
)
FIELD_SETS = [
    ["pitch", "step", "duration"],
    ["pitch", "velocity", "step"],
    ["pitch", "step", "duration", "velocity"],
    ["velocity", "pitch"],
    ["duration", "pitch", "step"],
]


@settings(max_examples=80, deadline=None)
@given(
    notes=notes_strategy,
    fields=st.sampled_from(FIELD_SETS),
    resolution=st.sampled_from([0.001, 0.01, 0.0137]),
    tempo=st.tuples(st.integers(1, 3000), st.sampled_from([45.0, 97.0, 180.0])),
)
def test_notes_decode_encode_equals_quantize(notes, fields, resolution, tempo):
    score = make_score(notes, qpm=110)
    score.tempos.append(Tempo(tempo[0], qpm=tempo[1]))
    enc = notes_enc(fields=fields, resolution=resolution, max_step=1.5)
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score))


# ---- pseudonotes ---------------------------------------------------------------------------------
# velocities 10..80 and durations 0.25/0.5/1/2 s in pairs, split over two scores
TRAIN = [
    (60, 10, 240),
    (62, 20, 240),
    (64, 30, 480),
    (65, 40, 480),
    (67, 50, 960),
    (69, 60, 960),
    (71, 70, 1920),
    (72, 80, 1920),
]


def training_scores():
    def one(notes):
        t, out = 0, []
        for pitch, vel, dur in notes:
            out.append((t, dur, pitch, vel))
            t += dur
        return make_score(out)

    return [one(TRAIN[:4]), one(TRAIN[4:])]


def fitted(**params):
    return build_encoding({"name": "pseudonotes", **params}).fit(training_scores())


def test_pseudonotes_fit_by_hand():
    enc = fitted()
    p = enc.params
    # quartiles of 8 values are the 2nd, 4th and 6th smallest; bin b holds edges[b-1] < v <= edges[b]
    assert p.velocity_edges == [20, 40, 60] and p.velocity_values == [15, 35, 55, 75]
    assert p.duration_edges == [0.25, 0.5, 1.0] and p.duration_values == [0.25, 0.5, 1.0, 2.0]
    assert p.vocab == [[60, 0, 0], [62, 0, 0], [64, 1, 1], [65, 1, 1], [67, 2, 2], [69, 2, 2], [71, 3, 3], [72, 3, 3]]
    assert enc.sizes == {"vocab_size": 9}
    assert enc.describe() == "8 pseudo-notes in vocabulary (88 pitches × 4 velocity bins × 4 duration bins possible)"
    assert enc.steps_for_seconds(10) == 11  # mean bin duration 0.9375 s


def test_pseudonotes_one_velocity_gives_one_bin():
    enc = build_encoding({"name": "pseudonotes"}).fit([make_score([(0, 480, 60, 80), (480, 240, 62, 80)])])
    assert enc.params.velocity_edges == [] and enc.params.velocity_values == [80]
    assert enc.params.duration_edges == [0.25] and enc.params.duration_values == [0.25, 0.5]


TEST_SCORE = [
    (0, 480, 65, 40),  # (65, v1, d1) -> 4; sorted after 60 at the same onset
    (0, 240, 60, 15),  # (60, v0, d0) -> 1
    (480, 1920, 72, 127),  # above the last edges: (72, v3, d3) -> 8
    (2400, 240, 72, 80),  # (72, v3, d0) never seen -> 0
    (2640, 100, 10, 80),
]  # below low: dropped


def test_pseudonotes_encode_decode_exact():
    enc = fitted()
    score = make_score(TEST_SCORE)
    tokens = enc.encode(score)
    assert tokens.dtype == np.int64 and tokens.tolist() == [1, 4, 8, 0]
    # monophonic: each note starts where the previous ends, with its bin's median velocity and duration
    expected = [(0, 240, 60, 15), (240, 480, 65, 35), (720, 1920, 72, 75)]
    assert note_tuples(enc.decode(tokens)) == expected
    assert note_tuples(enc.quantize(score)) == expected
    slow = fitted(qpm=60)  # decode tempo: 0.25 s is half a quarter = 240 ticks
    assert note_tuples(slow.decode([1, 4])) == [(0, 120, 60, 15), (120, 240, 65, 35)]
    with pytest.raises(ValueError, match="token 9 outside 0..8"):
        enc.decode([1, 9])


def test_pseudonotes_to_dict_restores_bins():
    enc = fitted(velocity_bins=3)
    saved = json.loads(json.dumps(enc.to_dict()))
    again = build_encoding(saved)
    assert again.params == enc.params and again.sizes == enc.sizes
    score = make_score(TEST_SCORE)
    np.testing.assert_array_equal(again.encode(score), enc.encode(score))
    with pytest.raises(LstmidiError, match="partial"):
        build_encoding({**saved, "vocab": None})


def test_pseudonotes_unfitted_is_a_clear_error():
    enc = build_encoding({"name": "pseudonotes"})
    assert enc.needs_fit
    for use in (
        lambda: enc.encode(make_score(TEST_SCORE)),
        lambda: enc.decode([1]),
        lambda: enc.quantize(make_score(TEST_SCORE)),
        lambda: enc.sizes,
    ):
        with pytest.raises(LstmidiError, match="not fitted; call fit"):
            use()
    with pytest.raises(LstmidiError, match="no notes in"):
        enc.fit([make_score([(0, 480, 10)])])


@settings(max_examples=60, deadline=None)
@given(train=notes_strategy, test=notes_strategy, bins=st.tuples(st.integers(1, 5), st.integers(1, 5)))
def test_pseudonotes_decode_encode_equals_quantize(train, test, bins):
    enc = build_encoding({"name": "pseudonotes", "velocity_bins": bins[0], "duration_bins": bins[1]})
    enc.fit([make_score(train, qpm=97), make_score([(0, 480, 60)])])  # fitted on other music: unknowns occur
    score = make_score(test, qpm=150)
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score))
