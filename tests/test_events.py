"""The `events` encoding: miditok REMI / TSD / MIDI-Like tokens, grammar mask and augmentation."""

import json

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track

from conftest import chorale_like, make_score, note_tuples
from lstmidi.encodings import build_encoding
from lstmidi.errors import LstmidiError

TOKENIZERS = ["REMI", "TSD", "MIDILike"]

# (start, duration, pitch, velocity) at 480 ticks per quarter: a chord, overlapping notes, a repeated pitch,
# a note shorter than one step, one longer than 12 beats, two out of range, and two overlapping notes of
# one pitch (which MIDI-Like's NoteOn/NoteOff pairing cannot keep apart).
NOTES = [
    (0, 480, 60, 90),
    (0, 480, 64, 90),
    (240, 960, 67, 50),
    (480, 120, 60, 100),
    (500, 7, 72, 30),
    (960, 480 * 14, 48, 70),
    (1000, 480, 15, 90),
    (1440, 240, 120, 90),
    (2000, 900, 62, 64),
    (2100, 300, 62, 64),
]


def events(**params):
    return build_encoding({"name": "events", **params})


def multi_track_score() -> Score:
    """Piano (program 0), bass (33) and drums, 480 ticks per quarter."""
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=100))
    for program, drum, notes in [
        (0, False, [(0, 480, 60), (480, 480, 64), (960, 960, 67)]),
        (33, False, [(0, 960, 36), (960, 960, 43)]),
        (0, True, [(0, 120, 36), (480, 120, 38), (960, 120, 42)]),
    ]:
        track = Track(name="t", program=program, is_drum=drum)
        for start, dur, pitch in notes:
            track.notes.append(Note(start, dur, pitch, 80))
        score.tracks.append(track)
    return score


# ---- round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("programs", [False, True])
def test_decode_encode_is_quantize_exactly(tokenizer, programs):
    enc = events(tokenizer=tokenizer, programs=programs)
    score = make_score(NOTES)
    quantized = enc.quantize(score)
    assert quantized.ticks_per_quarter == enc.time_division == 16  # 8 steps per beat, /8 time signatures possible
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(quantized)
    # the chorale-like pieces (four voices in one track) too
    for seed in range(3):
        piece = chorale_like(seed)
        assert note_tuples(enc.decode(enc.encode(piece))) == note_tuples(enc.quantize(piece))


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("programs", [False, True])
def test_chord_notes_go_from_low_to_high_across_tracks(tokenizer, programs):
    # four voices in four tracks of one program, the shortest note on top: the pitch tokens of each
    # onset come from low to high, whatever the durations and the track order
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=100))
    for pitch, dur in [(72, 240), (48, 960), (64, 480), (55, 960)]:
        track = Track(name=f"v{pitch}", program=0)
        track.notes.append(Note(0, dur, pitch, 80))
        track.notes.append(Note(960, 480, pitch + 2, 80))
        score.tracks.append(track)
    enc = events(tokenizer=tokenizer, programs=programs)
    pitch_of = enc.pitch_of_token()
    pitches = [int(pitch_of[i]) for i in enc.encode(score) if pitch_of[i] >= 0]
    assert pitches == [48, 55, 64, 72, 50, 57, 66, 74]


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_without_velocity_tokens_every_note_decodes_at_100(tokenizer):
    enc = events(tokenizer=tokenizer, velocities=False)
    assert "Velocity" not in enc.token_types()
    with_velocity = events(tokenizer=tokenizer)
    score = make_score(NOTES)
    expected = [(t, d, p, 100) for t, d, p, _ in note_tuples(with_velocity.quantize(score))]
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score)) == expected
    assert len(enc.encode(score)) == len(with_velocity.encode(score)) - len(expected)  # one token fewer per note


def test_quantize_values():
    # 16 ticks per quarter; velocity bins 7, 15, ..., 127; shortest duration one step (2 ticks); notes
    # longer than 12 beats cut to 12 (192 ticks); pitches outside 21..108 dropped
    expected = [
        (0, 16, 60, 87),
        (0, 16, 64, 87),
        (8, 32, 67, 47),
        (16, 2, 72, 31),
        (16, 4, 60, 103),
        (32, 192, 48, 71),
        (66, 30, 62, 63),
        (70, 10, 62, 63),
    ]
    assert note_tuples(events().quantize(make_score(NOTES))) == expected
    assert note_tuples(events(tokenizer="TSD").quantize(make_score(NOTES))) == expected
    # MIDI-Like: no duration tokens (the long note keeps 14 beats); the two overlapping D4s (66..96 and
    # 70..80) pair first-in-first-out: the first onset ends at the first note-off
    midilike = note_tuples(events(tokenizer="MIDILike").quantize(make_score(NOTES)))
    assert (32, 224, 48, 71) in midilike
    assert [n for n in midilike if n[2] == 62] == [(66, 14, 62, 63), (70, 26, 62, 63)]


def test_grid_and_pitch_range_parameters():
    enc = events(steps_per_quarter=4, num_velocities=4, pitch_low=60, pitch_high=72, time_signatures=False)
    assert enc.time_division == 4
    score = make_score([(0, 480, 59), (0, 480, 60, 100), (120, 240, 72, 20), (130, 100, 73)])
    assert note_tuples(enc.quantize(score)) == [(0, 4, 60, 95), (1, 2, 72, 31)]
    assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score))


def test_bos_first_eos_last():
    for tokenizer in TOKENIZERS:
        enc = events(tokenizer=tokenizer)
        for score in (make_score(NOTES), make_score([])):
            ids = enc.encode(score)
            assert ids.dtype == np.int64 and ids.ndim == 1
            assert ids[0] == enc.bos and ids[-1] == enc.eos
            assert (ids == enc.bos).sum() == 1 and (ids == enc.eos).sum() == 1 and not (ids == enc.pad).any()
    enc = events()
    assert (enc.pad, enc.bos, enc.eos) == (0, 1, 2)
    assert note_tuples(enc.decode(enc.encode(make_score([])))) == []


def test_to_dict_rebuilds_identical_vocabulary_and_ids():
    score = make_score(NOTES)
    for params in (
        {},
        {"tokenizer": "TSD", "programs": True, "drums": True, "steps_per_quarter": 12},
        {"tokenizer": "MIDILike", "num_velocities": 8, "rests": False, "tempos": False},
    ):
        enc = events(**params)
        spec = json.loads(json.dumps(enc.to_dict()))  # JSON-safe
        again = build_encoding(spec)
        assert again.tokenizer.vocab == enc.tokenizer.vocab
        np.testing.assert_array_equal(again.encode(score), enc.encode(score))
        assert again.to_dict() == spec
    # a vocabulary that does not match the saved fingerprint is refused, not decoded wrongly
    tampered = build_encoding({**events().to_dict(), "vocab_sha1": "0" * 40})
    with pytest.raises(ValueError, match="different vocabulary"):
        tampered.encode(score)


def test_the_tokenizer_tables_are_kept_on_disk_and_read_back_without_miditok(tmp_path, monkeypatch):
    from lstmidi.encodings.eventtables import cache_file, from_tokenizer

    for params in ({}, {"tokenizer": "TSD", "programs": True, "drums": True}, {"tokenizer": "MIDILike"}):
        enc = events(**params)
        built = enc._tables  # no cache yet: built from the tokenizer, then written
        assert built == json.loads(json.dumps(from_tokenizer(enc.tokenizer)))
        assert json.loads(cache_file(enc).read_text()) == built
        ids, transitions = enc.encode(multi_track_score()), enc.transitions
        decoded = enc.decode(ids)
        again = build_encoding(enc.to_dict())  # a new encoding (as a loaded model's) reads the file
        monkeypatch.setattr(type(again), "tokenizer", property(lambda self: pytest.fail("miditok was used")))
        assert again.vocab == enc.vocab and again.time_division == enc.time_division
        np.testing.assert_array_equal(again.transitions, transitions)
        if params.get("tokenizer") != "MIDILike":  # MIDI-Like decodes through miditok
            assert again.decode(ids) == decoded
        monkeypatch.undo()
    # a damaged file, or one holding another vocabulary than the encoding's fingerprint, is not used
    enc = events(tokenizer="TSD")
    path = cache_file(enc)
    _ = enc._tables
    spec = enc.to_dict()
    for bad in ("{not json", json.dumps({**json.loads(path.read_text()), "vocab": ["PAD_None", "BOS_None"]})):
        path.write_text(bad)
        assert build_encoding(spec).vocab == enc.vocab
        assert json.loads(path.read_text())["vocab"] == enc.vocab  # written again


def test_generating_from_a_saved_model_does_not_import_miditok(tmp_path):
    """The second process finds the tokenizer's tables on disk: miditok (and huggingface_hub, which it
    imports: 0.2 s) stay out of `lstmidi generate`."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from lstmidi.api import bundled_model; from lstmidi.modelfile import load_model; "
        "from lstmidi.sampling import generate; generate(load_model(bundled_model()), seconds=2, seed=0); "
        "print('miditok' in sys.modules, 'huggingface_hub' in sys.modules)"
    )
    env = {**os.environ, "LSTMIDI_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["True", "True"], ["False", "False"]], runs[1].stderr


def test_vocab_sizes_and_tables():
    enc = events()
    assert enc.sizes == {"vocab_size": 341}
    assert events(programs=True).sizes == {"vocab_size": 469}  # + Program_0..127
    types = enc.token_types()
    assert types[:3] == ["PAD", "BOS", "EOS"] and len(types) == 341
    assert {"Bar", "Position", "Pitch", "Velocity", "Duration", "Rest", "Tempo", "TimeSig"} <= set(types)
    pitch = enc.pitch_of_token()
    assert pitch.shape == (341,) and pitch[enc.tokenizer.vocab["Pitch_60"]] == 60
    assert (pitch >= 0).sum() == 88 and pitch[enc.tokenizer.vocab["Velocity_87"]] == -1
    midilike = events(tokenizer="MIDILike")
    assert midilike.pitch_of_token()[midilike.tokenizer.vocab["NoteOn_60"]] == 60
    assert midilike.pitch_of_token()[midilike.tokenizer.vocab["NoteOff_60"]] == -1  # onsets only
    drums = events(programs=True, drums=True)
    program = drums.program_of_token()
    assert program[drums.tokenizer.vocab["Program_33"]] == 33
    assert program[drums.tokenizer.vocab["Program_-1"]] == drums.DRUM_PROGRAM == 128
    assert (program >= 0).sum() == 129 and (enc.program_of_token() == -1).all()
    assert drums.pitch_of_token()[drums.tokenizer.vocab["PitchDrum_36"]] == -1


# ---- instruments -----------------------------------------------------------------------------------
def test_programs_keep_instruments_and_drums_only_when_asked():
    score = multi_track_score()

    def tracks(enc):
        decoded = enc.decode(enc.encode(score))
        assert note_tuples(decoded) == note_tuples(enc.quantize(score))
        return sorted((t.program, t.is_drum, len(t.notes)) for t in decoded.tracks)

    assert tracks(events(programs=True)) == [(0, False, 3), (33, False, 2)]
    assert tracks(events(programs=True, drums=True)) == [(0, False, 3), (0, True, 3), (33, False, 2)]
    assert tracks(events(tokenizer="MIDILike", programs=True, drums=True)) == [
        (0, False, 3),
        (0, True, 3),
        (33, False, 2),
    ]
    assert tracks(events(tokenizer="TSD", programs=True)) == [(0, False, 3), (33, False, 2)]
    assert tracks(events()) == [(0, False, 5)]  # programs off: the non-drum tracks merged into one


def test_bad_parameters_name_the_field():
    with pytest.raises(LstmidiError, match="drums=True needs programs=True"):
        events(drums=True)
    with pytest.raises(LstmidiError, match="pitch_low"):
        events(pitch_low=80, pitch_high=80)
    with pytest.raises(LstmidiError, match="tokenizer"):
        events(tokenizer="CPWord")


# ---- decoding anything a sampler may emit ------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"tokenizer": "TSD", "programs": True, "drums": True},
        {"tokenizer": "MIDILike"},
        {"tokenizer": "MIDILike", "programs": True, "drums": True},
    ],
)
def test_decode_never_raises_on_in_vocabulary_ids(params):
    enc = events(**params)
    rng = np.random.default_rng(0)
    vocab = enc.sizes["vocab_size"]
    for length in (0, 1, 2, 7, 50, 400):
        for _ in range(5):
            enc.decode(rng.integers(0, vocab, length))
    enc.decode(np.array([enc.bos, enc.bos, enc.pad, enc.eos]))
    assert enc.decode([]).ticks_per_quarter == enc.time_division


def miditok_decode(enc, ids) -> Score:
    """miditok's own decoding of `ids` (BOS/EOS/PAD dropped), as Events.decode did before FastDecoder."""
    from miditok import TokSequence

    ids = [int(i) for i in ids if i not in (enc.bos, enc.eos, enc.pad)]
    seq = TokSequence(ids=ids)
    enc.tokenizer.complete_sequence(seq)
    return enc.tokenizer.decode(seq if enc.params.programs else [seq])


def one_track_score(tpq: int, signatures, tempos, notes) -> Score:
    """A piano score: (tick, numerator, denominator) time signatures, (tick, qpm) tempos, (start, duration,
    pitch) notes at velocity 70."""
    score = Score(tpq)
    for time, num, den in signatures:
        score.time_signatures.append(TimeSignature(time, num, den))
    for time, qpm in tempos:
        score.tempos.append(Tempo(time, qpm=qpm))
    track = Track(name="t", program=0, is_drum=False)
    for start, dur, pitch in notes:
        track.notes.append(Note(start, dur, pitch, 70))
    score.tracks.append(track)
    return score


def signature_changes_score() -> Score:
    """Time signatures 3/4 -> 6/8 -> 2/4 -> 12/8, tempo changes, notes over the bar lines and a silence."""
    return one_track_score(
        480,
        [(0, 3, 4), (1440, 6, 8), (2880, 2, 4), (3840, 12, 8)],
        [(0, 80), (1440, 132), (3000, 60)],
        [(0, 700, 60), (400, 1500, 64), (1300, 250, 67), (2000, 80, 71), (4800, 960, 55)],
    )


# REMI and TSD settings that the fast decoder and encoder are checked against miditok with
FAST_SETTINGS = (
    [{"tokenizer": t, "programs": p, "drums": p} for t in ("REMI", "TSD") for p in (False, True)]
    + [{"tokenizer": t, "velocities": False, "programs": True} for t in ("REMI", "TSD")]
    + [{"tokenizer": "REMI", "time_signatures": False, "tempos": False, "rests": False, "steps_per_quarter": 4}]
    + [{"tokenizer": "TSD", "time_signatures": False, "steps_per_quarter": 6}]
)


@pytest.mark.parametrize("params", FAST_SETTINGS)
def test_fast_decoding_is_miditok_decoding_score_for_score(params):
    """REMI and TSD decode with lstmidi's FastDecoder: the same Score as miditok's, for real pieces (bundled
    chorales and quartets, hand-built ones with several instruments and time signature changes), pieces the
    grammar allows, and ids drawn at random (out of grammar)."""
    from lstmidi.corpus import bundled_corpus

    enc = events(**params)
    assert enc._fast_decoder is not None
    files = sorted(bundled_corpus("bach").glob("*.mid"))[:6] + sorted(bundled_corpus("quartets").glob("*.mid"))[:3]
    scores = [Score(f) for f in files] + [make_score(NOTES), multi_track_score(), signature_changes_score()]
    pieces = [enc.encode(s) for s in scores]
    pieces += [enc.finish(random_walk(enc, 400, seed)) for seed in range(8)]
    rng = np.random.default_rng(0)
    pieces += [rng.integers(3, enc.sizes["vocab_size"], n) for n in (1, 2, 3, 40, 1000) for _ in range(8)]
    for ids in pieces:
        fast, slow = enc.decode(ids), miditok_decode(enc, ids)
        assert fast == slow, (params, len(ids))
    assert sum(len(t.notes) for ids in pieces[: len(scores)] for t in enc.decode(ids).tracks) > 1000


@pytest.mark.parametrize("params", [*FAST_SETTINGS, {"tokenizer": "MIDILike"}])
def test_prefix_decoder_decodes_every_prefix_as_decode_does(params):
    """`prefix_decoder(ids)(k) == decode(ids[:k])` for every k, from 0 to past the end (generation asks this
    of many places in one piece): a real piece with time signature and tempo changes, a grammar walk, the
    walk with PAD and BOS in front and an EOS inside, and random ids."""
    enc = events(**params)
    walk = enc.finish(random_walk(enc, 300, 3))
    rows = [
        enc.encode(signature_changes_score()),
        walk,
        np.concatenate([[enc.pad, enc.bos], walk[1:-1], [enc.eos], walk[1:40]]),
        np.random.default_rng(1).integers(3, enc.sizes["vocab_size"], 300),
    ]
    for ids in rows:
        decode = enc.prefix_decoder(ids)
        for k in range(len(ids) + 2):
            assert decode(k) == enc.decode(ids[:k]), (params, k)
    assert sum(len(t.notes) for t in enc.prefix_decoder(rows[0])(len(rows[0]) // 2).tracks) > 0


def miditok_encode(enc, score) -> list[int]:
    """miditok's own tokenization of `score`, as Events.encode did before FastEncoder."""
    seq = enc.tokenizer.encode(enc._prepare(score))
    return [enc.bos, *(seq if enc.params.programs else seq[0]).ids, enc.eos]


def rests_and_pickup_score() -> Score:
    """A pickup, long and short silences, a note held over several bars, tempo changes between notes and
    a 6/8 bar that starts off the beat grid of 4/4."""
    return one_track_score(
        96,
        [(0, 4, 4), (96 * 9, 6, 8), (96 * 12, 3, 4)],
        [(0, 72), (250, 140), (96 * 9, 50)],
        [(72, 24, 60), (96, 96 * 5, 48), (700, 10, 62), (96 * 9 + 48, 48, 64), (2000, 300, 65)],
    )


@pytest.mark.parametrize("params", FAST_SETTINGS)
def test_fast_encoding_is_miditok_encoding_id_for_id(params):
    """REMI and TSD encode with lstmidi's FastEncoder: the same ids as miditok's own tokenization, for real
    pieces (bundled chorales and quartets), hand-built ones (several instruments, time signature changes,
    pickups, silences, tempo changes) and the pieces that decoding random grammatical ids gives."""
    from lstmidi.corpus import bundled_corpus

    enc = events(**params)
    assert enc._fast_encoder is not None
    files = sorted(bundled_corpus("bach").glob("*.mid"))[:6] + sorted(bundled_corpus("quartets").glob("*.mid"))[:3]
    scores = [Score(f) for f in files] + [make_score(NOTES), multi_track_score(), signature_changes_score()]
    scores += [rests_and_pickup_score(), Score(480)]
    scores += [enc.decode(enc.finish(random_walk(enc, 400, seed))) for seed in range(8)]
    for score in scores:
        assert enc.encode(score).tolist() == miditok_encode(enc, score), params
    assert sum(len(enc.encode(s)) for s in scores) > 5000


def test_fast_encoding_of_every_bundled_file_with_the_default_preset_is_miditoks():
    from lstmidi.config import load_preset
    from lstmidi.corpus import bundled_corpus

    enc = build_encoding(load_preset("flagship").encoding)
    files = sorted(bundled_corpus("bach").glob("*.mid")) + sorted(bundled_corpus("quartets").glob("*.mid"))
    assert len(files) > 400
    for f in files:
        assert enc.encode(Score(f)).tolist() == miditok_encode(enc, Score(f)), f.name


def test_fast_encoder_refuses_a_score_miditok_did_not_preprocess():
    enc = events()
    ready = enc.tokenizer.preprocess_score(enc._prepare(signature_changes_score()))
    assert enc._fast_encoder.encode(ready).tolist() == miditok_encode(enc, signature_changes_score())[1:-1]
    moved = ready.copy()
    moved.time_signatures[1].time += ready.ticks_per_quarter  # a beat after the bar line
    with pytest.raises(ValueError, match="time signature off the bar line"):
        enc._fast_encoder.encode(moved)
    loud = ready.copy()
    loud.tracks[0].notes[0].velocity = 126  # not one of the 16 velocity bins
    with pytest.raises(KeyError, match="outside the tokenizer's vocabulary"):
        enc._fast_encoder.encode(loud)


def test_decode_stops_at_first_eos_and_skips_bos_pad():
    enc = events()
    ids = enc.encode(make_score([(0, 480, 60), (480, 480, 62)]))
    more = enc.encode(make_score([(0, 480, 70)]))
    expected = note_tuples(enc.decode(ids))
    assert note_tuples(enc.decode(np.concatenate([ids, more]))) == expected
    padded = np.insert(ids, [3, 5], enc.pad)
    assert note_tuples(enc.decode(np.concatenate([[enc.pad, enc.bos], padded]))) == expected


def test_decode_rejects_ids_outside_the_vocabulary():
    enc = events()
    with pytest.raises(ValueError, match=r"token 341 outside the vocabulary 0\.\.340"):
        enc.decode(np.array([1, 3, 341]))
    with pytest.raises(ValueError, match="token -1 outside"):
        enc.decode(np.array([-1]))


# ---- grammar --------------------------------------------------------------------------------------
def random_walk(enc, steps: int, seed: int, first_order_only: bool = False) -> np.ndarray:
    """BOS + `steps` ids drawn uniformly among the allowed ones (EOS held back until the end)."""
    rng = np.random.default_rng(seed)
    grammar = enc.grammar([enc.bos])
    ids = [enc.bos]
    for _ in range(steps):
        allowed = enc.allowed_next(ids[-1]).copy() if first_order_only else grammar.allowed()
        allowed[enc.eos] = False
        token = int(rng.choice(np.flatnonzero(allowed)))
        ids.append(token)
        grammar.push(token)
    return np.array(ids, np.int64)


@pytest.mark.parametrize(
    "params",
    [{"tokenizer": t} for t in TOKENIZERS]
    + [{"tokenizer": t, "programs": True, "drums": True} for t in TOKENIZERS]
    + [{"tokenizer": "REMI", "time_signatures": False, "tempos": False, "steps_per_quarter": 4}]
    + [{"tokenizer": t, "velocities": False, "programs": True} for t in TOKENIZERS],
)
def test_grammar_random_walks_decode_without_token_errors(params):
    enc = events(**params)
    for seed in range(2):
        walk = random_walk(enc, 500, seed)
        piece = enc.finish(walk)
        assert piece[-1] == enc.eos and len(piece) >= len(walk) - 6  # at most an unfinished note cut
        assert enc.token_errors(piece) == 0.0
        grammar = enc.grammar()  # the finished piece follows the grammar too
        for token in piece:
            assert grammar.allowed()[token]
            grammar.push(token)
        assert sum(len(t.notes) for t in enc.decode(piece).tracks) > 0
    if params["tokenizer"] == "TSD":  # TSD's rules are all first-order: the matrix alone suffices
        assert enc.token_errors(enc.finish(random_walk(enc, 500, 7, first_order_only=True))) == 0.0


def test_grammar_accepts_real_encodings_and_token_errors_are_counted():
    for params in ({"tokenizer": t, "programs": p, "drums": p} for t in TOKENIZERS for p in (False, True)):
        enc = events(**params)
        for score in (chorale_like(0), make_score(NOTES), multi_track_score()):
            ids = enc.encode(score)
            grammar = enc.grammar()
            for token in ids:
                assert grammar.allowed()[token], (params, enc.vocab[grammar.prev], enc.vocab[token])
                grammar.push(token)
            assert enc.token_errors(ids) == 0.0
            np.testing.assert_array_equal(enc.finish(ids), ids)
    enc = events()
    ids = enc.encode(chorale_like(0))
    backwards = np.array([*ids[:-1], enc.tokenizer.vocab["Position_0"], enc.eos])  # Position going back
    assert enc.token_errors(backwards) > 0


def test_transition_matrix_shape_and_rules():
    enc = events(programs=True, drums=True)
    m, vocab = enc.transitions, enc.tokenizer.vocab
    assert m.shape == (enc.sizes["vocab_size"],) * 2 and m.dtype == bool and not m.flags.writeable
    assert m.any(axis=1).all() and not m[:, enc.bos].any() and not m[:, enc.pad].any()
    assert np.flatnonzero(m[enc.bos]).tolist() == [vocab["Bar_None"]]
    assert m[vocab["Pitch_60"], vocab["Velocity_87"]] and not m[vocab["Pitch_60"], vocab["Duration_1.0.8"]]
    assert m[vocab["Duration_1.0.8"], enc.eos] and not m[vocab["Velocity_87"], enc.eos]
    assert m[vocab["Program_-1"], vocab["PitchDrum_36"]] and not m[vocab["Program_-1"], vocab["Pitch_36"]]
    assert m[vocab["Program_0"], vocab["Pitch_36"]] and not m[vocab["Program_0"], vocab["PitchDrum_36"]]
    np.testing.assert_array_equal(enc.allowed_next(vocab["Bar_None"]), m[vocab["Bar_None"]])
    # REMI: positions only move forward within a bar
    g = enc.grammar([enc.bos, vocab["Bar_None"], vocab["TimeSig_3/4"], vocab["Position_8"]])
    for token in ("Program_0", "Pitch_60", "Velocity_87", "Duration_1.0.8"):
        g.push(vocab[token])
    allowed = g.allowed()
    assert not allowed[vocab["Position_8"]] and allowed[vocab["Position_9"]] and allowed[vocab["Position_23"]]
    assert not allowed[vocab["Position_24"]]  # a 3/4 bar has 24 positions


# ---- augmentation ----------------------------------------------------------------------------------
def transposed(notes, k):
    return make_score([(s, d, p + k, v) for s, d, p, v in notes])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_augment_transposes_exactly_when_it_fits(tokenizer):
    enc = events(tokenizer=tokenizer)
    rng = np.random.default_rng(0)
    notes = [(s, d, p, v) for s, d, p, v in NOTES if 21 <= p <= 108]  # 48 .. 72
    ids = enc.encode(make_score(notes))
    for k in (-5, 3, 12, 0):
        np.testing.assert_array_equal(enc.augment(ids, rng, k, 1.0), enc.encode(transposed(notes, k)))
    # too far: the largest shift of the same sign that fits (highest 72 -> 108: +36; lowest 48 -> 21: -27)
    np.testing.assert_array_equal(enc.augment(ids, rng, 40, 1.0), enc.encode(transposed(notes, 36)))
    np.testing.assert_array_equal(enc.augment(ids, rng, -40, 1.0), enc.encode(transposed(notes, -27)))
    edge = enc.encode(make_score([(0, 480, 21), (0, 480, 108)]))
    np.testing.assert_array_equal(enc.augment(edge, rng, 5, 1.0), edge)  # no room either way: shift 0
    out = enc.augment(ids, rng, 40, 1.0)
    pitches = enc.pitch_of_token()[out]
    assert pitches[pitches >= 0].min() >= 21 and pitches.max() <= 108
    np.testing.assert_array_equal(ids, enc.encode(make_score(notes)))  # input untouched


def test_augment_leaves_drums_alone():
    enc = events(programs=True, drums=True)
    vocab = enc.tokenizer.vocab
    score = multi_track_score()
    out = enc.augment(enc.encode(score), np.random.default_rng(0), 2, 1.0)
    decoded = enc.decode(out)
    drums = [n.pitch for t in decoded.tracks if t.is_drum for n in t.notes]
    melodic = sorted(n.pitch for t in decoded.tracks if not t.is_drum for n in t.notes)
    assert sorted(drums) == [36, 38, 42]
    assert melodic == sorted(p + 2 for p in (60, 64, 67, 36, 43))
    # a Pitch token after the drum program is not transposed either (ill-formed, but never moved)
    ids = np.array([vocab["Program_-1"], vocab["Pitch_40"], vocab["Program_0"], vocab["Pitch_40"]])
    out = enc.augment(ids, np.random.default_rng(0), 2, 1.0)
    assert [enc.vocab[i] for i in out] == ["Program_-1", "Pitch_40", "Program_0", "Pitch_42"]


def test_augment_stretches_tempo_to_the_nearest_bin():
    enc = events(tokenizer="TSD")
    ids = enc.encode(make_score([(0, 480, 60)], qpm=120))
    tempo_ids = np.flatnonzero(np.array(enc.token_types()) == "Tempo")
    bins = np.array([float(enc.vocab[i].split("_")[1]) for i in tempo_ids])
    before = [enc.vocab[i] for i in ids if i in tempo_ids]
    assert before == ["Tempo_121.29"]
    for stretch in (0.5, 0.9, 1.3):
        out = enc.augment(ids, np.random.default_rng(0), 0, stretch)
        (tempo,) = [float(enc.vocab[i].split("_")[1]) for i in out if i in tempo_ids]
        assert tempo == bins[np.abs(bins - 121.29 * stretch).argmin()]
        assert (out[~np.isin(ids, tempo_ids)] == ids[~np.isin(ids, tempo_ids)]).all()
    assert tempo != 121.29
    no_tempo = events(tempos=False)
    plain = no_tempo.encode(make_score([(0, 480, 60)]))
    np.testing.assert_array_equal(no_tempo.augment(plain, np.random.default_rng(0), 0, 1.5), plain)


def test_steps_for_seconds():
    enc = events()
    assert enc.steps_for_seconds(10) == round(10 * 27.9) and enc.steps_for_seconds(0.001) == 1
    assert events(tokenizer="MIDILike", programs=True).steps_for_seconds(10) == round(10 * 42.9)
    assert events(tokens_per_second=5.0).steps_for_seconds(3) == 15


def test_tsd_rests_after_a_change_from_x8_to_x4_may_lose_one_tick():
    """miditok's TSD counts a Rest from the previous note's end; a note of a 6/8 bar ending inside the next
    4/4 bar between two of its (twice as coarse) steps loses that odd tick, so what follows decodes one
    tick early. REMI (Position re-anchors) and TSD without rests stay exact."""
    score = Score(16)
    score.time_signatures.append(TimeSignature(0, 6, 8))
    score.time_signatures.append(TimeSignature(48, 4, 4))  # 6/8 bar = 48 ticks at 16 per quarter
    track = Track(name="t", program=0, is_drum=False)
    for start, dur, pitch in [(40, 13, 60), (60, 4, 62), (64, 4, 64)]:  # the first one ends at tick 53
        track.notes.append(Note(start, dur, pitch, 90))
    score.tracks.append(track)
    for params in ({}, {"tokenizer": "TSD", "rests": False}, {"tokenizer": "MIDILike"}):
        enc = events(**params)
        assert note_tuples(enc.decode(enc.encode(score))) == note_tuples(enc.quantize(score))
    enc = events(tokenizer="TSD")
    got, want = note_tuples(enc.decode(enc.encode(score))), note_tuples(enc.quantize(score))
    assert [n[1:] for n in got] == [n[1:] for n in want]  # durations, pitches, velocities kept
    assert all(0 <= w[0] - g[0] <= 1 for g, w in zip(got, want))  # onsets at most one tick early


@pytest.mark.parametrize(
    "params",
    [{"tokenizer": t} for t in TOKENIZERS]
    + [{"tokenizer": t, "programs": True, "drums": True} for t in TOKENIZERS]
    + [{"tokenizer": "REMI", "time_signatures": False, "tempos": False, "steps_per_quarter": 4}],
)
def test_batched_grammar_equals_one_grammar_per_row(params):
    """`grammars` (the batched state generation pushes into) gives, at every step, each row's mask from
    `grammar`: on walks that follow the grammar (time signatures, rests, positions) and on ids out of
    order; `take` reorders and repeats rows, which then grow apart."""
    enc = events(**params)
    rng = np.random.default_rng(0)
    walks = [random_walk(enc, 80, seed) for seed in range(4)]
    walks.append(np.concatenate([[enc.bos], rng.integers(0, len(enc.vocab), 80)]))  # any ids at all
    rows = np.stack([w[:81] for w in walks])
    batch = enc.grammars(rows[:, :0])
    np.testing.assert_array_equal(batch.allowed(), np.stack([enc.grammar().allowed()] * len(rows)))
    for t in range(81):
        batch.push(rows[:, t])
        np.testing.assert_array_equal(batch.allowed(), np.stack([enc.grammar(r[: t + 1]).allowed() for r in rows]))
    np.testing.assert_array_equal(
        enc.grammars(rows[:, :50]).allowed(), np.stack([enc.grammar(r[:50]).allowed() for r in rows])
    )
    picked = batch.take([4, 0, 0, 2])
    seqs = [rows[4], rows[0], rows[0], rows[2]]
    for _ in range(20):
        allowed = picked.allowed()
        for seq, mask in zip(seqs, allowed):
            np.testing.assert_array_equal(mask, enc.grammar(seq).allowed())
        allowed[:, enc.eos] = False
        tokens = [rng.choice(np.flatnonzero(m)) for m in allowed]
        picked.push(tokens)
        seqs = [np.append(s, k) for s, k in zip(seqs, tokens)]
    assert not np.array_equal(seqs[1], seqs[2])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_grammar_tracker_masks_equal_fresh_grammars(tokenizer):
    """The tracker used while sampling (rows pushed in place) and in beam search (rows reordered and
    duplicated) gives the mask of a grammar read from scratch over each whole sequence."""
    import torch

    from lstmidi.sampling import GrammarTracker

    enc = events(tokenizer=tokenizer, programs=True)
    walks = [random_walk(enc, 60, seed) for seed in range(3)]
    tracker = GrammarTracker(enc)

    def check(seqs):
        masks = tracker.allowed(torch.from_numpy(np.stack(seqs)))
        for row, mask in zip(seqs, masks.numpy()):
            np.testing.assert_array_equal(mask, enc.grammar(row).allowed())

    for t in range(2, 40):  # growing together: the in-place path
        check([w[:t] for w in walks])
    seqs = [walks[2][:40], walks[0][:40], walks[0][:40]]  # a beam step: reordered, one row duplicated
    check(seqs)
    rng = np.random.default_rng(0)
    for _ in range(10):  # then the rows grow in place and the duplicated two diverge: each needs its own state
        grown = []
        for row in seqs:
            allowed = enc.grammar(row).allowed()
            allowed[enc.eos] = False
            grown.append(np.append(row, rng.choice(np.flatnonzero(allowed))))
        seqs = grown
        check(seqs)
    assert not np.array_equal(seqs[1], seqs[2])


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_data_drums_keeps_drum_tracks_through_encode_and_decode(tokenizer, tmp_path):
    """`--set data.drums=true` on the flagship preset: the drum track (200 notes) is read, and the
    encoding (whose drums follow data.drums) keeps every one of them through encode -> decode."""
    from conftest import chorale_like, make_score
    from lstmidi.config import load_preset
    from lstmidi.midi import load_score

    score = chorale_like(1, bars=4)
    score.tracks.append(make_score([(i * 120, 60, 36 + (i % 3) * 2) for i in range(200)], drum=True).tracks[0])
    score.dump_midi(tmp_path / "drums.mid")
    preset = load_preset("flagship", ["data.drums=true", f"encoding.tokenizer={tokenizer}"])
    assert preset.encoding["drums"] is True
    read = load_score(tmp_path / "drums.mid", preset.data.tracks, preset.data.drums)
    enc = build_encoding(preset.encoding)
    decoded = enc.decode(enc.encode(read))

    def drum_notes(s):
        return sorted((n.pitch, n.velocity > 0) for t in s.tracks if t.is_drum for n in t.notes)

    assert len(drum_notes(read)) == 200 and drum_notes(decoded) == drum_notes(enc.quantize(read))
    assert len(drum_notes(decoded)) == 200
