import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_score, note_tuples
from lstmidi.encodings import ENCODINGS, build_encoding
from lstmidi.errors import LstmidiError

C4 = 60  # key index 39 with low=21


def roll(**params):
    return build_encoding({"name": "pianoroll", **params})


def test_beat_grid_exact_frames():
    enc = roll(timing="beats", steps_per_quarter=4)
    score = make_score([(0, 480, C4), (480, 240, 64), (240, 240, 108), (0, 120, 20)])  # 20 is below A0: dropped
    frames = enc.encode(score)
    expected = np.zeros((6, 88), np.uint8)
    expected[0:4, C4 - 21] = 1
    expected[4:6, 64 - 21] = 1
    expected[2:4, 108 - 21] = 1
    np.testing.assert_array_equal(frames, expected)
    assert note_tuples(enc.decode(frames)) == [(0, 480, C4, 80), (240, 240, 108, 80), (480, 240, 64, 80)]


def test_seconds_grid_follows_tempo():
    # 60 qpm: a quarter note lasts 1 s = 20 frames of 0.05 s
    enc = roll(timing="seconds", step_seconds=0.05)
    frames = enc.encode(make_score([(0, 480, C4), (480, 240, 62)], qpm=60))
    assert frames.shape == (30, 88)
    assert frames[:20, C4 - 21].all() and not frames[20:, C4 - 21].any()
    assert frames[20:30, 62 - 21].all()
    # decoded: one step = 0.05 s exactly
    decoded = enc.decode(frames).to("second")
    got = sorted((round(n.time, 6), round(n.duration, 6), n.pitch) for n in decoded.tracks[0].notes)
    assert got == [(0.0, 1.0, C4), (1.0, 0.5, 62)]


def test_restruck_key_merges_without_onsets_and_splits_with_onsets():
    score = make_score([(0, 480, C4), (480, 480, C4)])
    plain = roll()
    assert note_tuples(plain.decode(plain.encode(score))) == [(0, 960, C4, 80)]
    onset = roll(onsets=True)
    frames = onset.encode(score)
    assert frames.shape == (8, 176)
    assert frames[[0, 4], 88 + C4 - 21].tolist() == [1, 1] and frames[:, 88 + C4 - 21].sum() == 2
    assert note_tuples(onset.decode(frames)) == [(0, 480, C4, 80), (480, 480, C4, 80)]


def test_sustain_pedal_extends_released_notes():
    score = make_score([(0, 240, C4), (960, 240, 64)], pedals=[(120, 720)])
    assert note_tuples(roll(sustain=False).quantize(score)) == [(0, 240, C4, 80), (960, 240, 64, 80)]
    # C4 is released at 240 while the pedal is down (120..720): it sounds until 720; E4 is not pedalled
    assert note_tuples(roll(sustain=True).quantize(score)) == [(0, 720, C4, 80), (960, 240, 64, 80)]


def test_very_short_note_keeps_one_frame():
    enc = roll()
    assert note_tuples(enc.quantize(make_score([(100, 10, C4)]))) == [(120, 120, C4, 80)]


def test_decode_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"expected \(frames, 88\)"):
        roll().decode(np.zeros((4, 87)))


def test_bad_parameters_name_the_field():
    with pytest.raises(LstmidiError, match="timing"):
        roll(timing="bars")
    with pytest.raises(LstmidiError, match="exceeds 128"):
        roll(low=100, keys=88)
    with pytest.raises(LstmidiError, match="unknown encoding 'nope'"):
        build_encoding({"name": "nope"})


ENCODING_VARIANTS = [
    {"name": "pianoroll"},
    {"name": "pianoroll", "onsets": True},
    {"name": "pianoroll", "sustain": True, "onsets": True},
    {"name": "pianoroll", "timing": "seconds", "step_seconds": 0.05},
    {"name": "pianoroll", "timing": "seconds", "step_seconds": 0.1, "onsets": True, "sustain": True},
    {"name": "pianoroll", "steps_per_quarter": 3, "low": 36, "keys": 49},
    {"name": "notes"},
    {"name": "notes", "fields": ["pitch", "velocity", "step"]},
    {
        "name": "notes",
        "fields": ["pitch", "step", "duration", "velocity"],
        "resolution": 0.01,
        "max_step": 1.0,
        "low": 36,
        "high": 96,
    },
    {"name": "pseudonotes"},
    {"name": "pseudonotes", "velocity_bins": 2, "duration_bins": 3, "low": 36, "high": 96},
    {"name": "events"},
    {"name": "events", "tokenizer": "TSD", "programs": True, "drums": True},
    {"name": "events", "tokenizer": "MIDILike"},
    {
        "name": "events",
        "tokenizer": "MIDILike",
        "programs": True,
        "steps_per_quarter": 4,
        "num_velocities": 8,
        "rests": False,
    },
    {
        "name": "events",
        "steps_per_quarter": 6,
        "tempos": False,
        "time_signatures": False,
        "pitch_low": 36,
        "pitch_high": 96,
    },
    {"name": "voices"},
    {"name": "voices", "steps_per_quarter": 3, "low": 36, "high": 96},
]
assert {v["name"] for v in ENCODING_VARIANTS} == set(ENCODINGS), "every registered encoding needs variants here"


def fitting(enc, score):
    """The score as the encoding reads it: for four voices, its notes dealt round-robin to tracks S, A, T, B."""
    if enc.name != "voices":
        return score
    from symusic import Score, Track

    out = Score(score.ticks_per_quarter)
    out.tempos = score.tempos
    tracks = [Track(name=name, program=0) for name in ("Soprano", "Alto", "Tenor", "Bass")]
    for i, note in enumerate(score.tracks[0].notes):
        tracks[i % 4].notes.append(note)
    out.tracks = tracks
    return out


notes_strategy = st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 1500), st.integers(15, 115), st.integers(1, 127)),
    min_size=1,
    max_size=40,
)
pedal_strategy = st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 1500)), max_size=3)


@pytest.mark.parametrize(
    "spec", ENCODING_VARIANTS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items() if k != "name")
)
@settings(max_examples=60, deadline=None)
@given(notes=notes_strategy, pedals=pedal_strategy, qpm=st.sampled_from([60.0, 97.0, 120.0, 150.0]))
def test_decode_encode_equals_quantize(spec, notes, pedals, qpm):
    enc = build_encoding(spec)
    score = fitting(enc, make_score(notes, qpm=qpm, pedals=[(a, a + d) for a, d in pedals]))
    if enc.needs_fit:  # plus one in-range note: fitting on no notes is an error
        enc.fit([score, fitting(enc, make_score([(0, 480, 60)] * 4))])
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score))


@pytest.mark.parametrize("spec", ENCODING_VARIANTS)
def test_to_dict_rebuilds_the_same_encoding(spec):
    enc = build_encoding(spec)
    score = fitting(enc, make_score([(0, 480, 60), (240, 960, 67), (0, 240, 48), (480, 480, 72)]))
    if enc.needs_fit:
        enc.fit([score])
    again = build_encoding(enc.to_dict())
    assert again.to_dict() == enc.to_dict()
    np.testing.assert_array_equal(again.encode(score), enc.encode(score))


def test_piano_roll_augmentation_transposes_and_never_leaves_the_keyboard():
    enc = build_encoding({"name": "pianoroll", "steps_per_quarter": 1, "low": 60, "keys": 12, "onsets": True})
    roll = enc.encode(make_score([(0, 960, 62), (960, 480, 69)]))  # keys 2 and 9 of 12
    rng = np.random.default_rng(0)
    up = enc.augment(roll, rng, 2)
    assert note_tuples(enc.decode(up)) == [(p[0], p[1], p[2] + 2, p[3]) for p in note_tuples(enc.decode(roll))]
    assert (up[:, 12:].sum(0).nonzero()[0] == [4, 11]).all()  # onset columns move with their keys
    assert (enc.augment(roll, rng, 5) == enc.augment(roll, rng, 2)).all()  # key 9 can rise 2 at most
    assert (enc.augment(roll, rng, -7) == enc.augment(roll, rng, -2)).all()  # key 2 can fall 2 at most
    assert (enc.augment(roll, rng, 0) == roll).all()


def test_piano_roll_refuses_tempo_stretch():
    from lstmidi.batches import make_augmenter
    from lstmidi.config import AugmentConfig

    enc = build_encoding({"name": "pianoroll"})
    assert make_augmenter(enc, AugmentConfig(transpose=3)) is not None
    with pytest.raises(LstmidiError, match="has no tempo to stretch"):
        make_augmenter(enc, AugmentConfig(transpose=3, stretch=0.05))
