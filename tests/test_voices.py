"""Four voices: the `voices` encoding, the chorale preset (voicenet + Gibbs sampling), harmonize and --rewrite."""

import numpy as np
import pytest
from symusic import Note, Score, Tempo, TimeSignature, Track

from conftest import four_voices, make_score, run, run_main
from lstmidi.config import load_preset
from lstmidi.encodings.voices import FIRST_PITCH, HOLD, REST, Voices
from lstmidi.errors import LstmidiError, MidiError
from lstmidi.harmonize import MAX_BEATS, harmonize, rewrite
from lstmidi.modelfile import load_model
from lstmidi.training import train

TINY = ["model.embed=8", "model.hidden=24", "model.center=16", "train.window=32", "train.hop=8", "train.lr=0.01"]


def voices_score(lines, tpq=480, names=("Soprano", "Alto", "Tenor", "Bass")) -> Score:
    """lines: per track a list of (start_quarter, quarters, pitch)."""
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm=90.0))
    for name, line in zip(names, lines, strict=True):
        track = Track(name=name, program=0, is_drum=False)
        for start, length, pitch in line:
            track.notes.append(Note(round(start * tpq), round(length * tpq), pitch, 80))
        score.tracks.append(track)
    return score


def notes_of(score: Score, name: str) -> list[tuple[float, float, int]]:
    track = next(t for t in score.to("quarter").tracks if t.name == name)
    return sorted((round(n.time, 4), round(n.duration, 4), n.pitch) for n in track.notes)


def test_encoding_gives_one_token_per_voice_and_frame():
    enc = Voices(low=40, high=80)
    s = voices_score([[(0, 1, 72), (1, 0.5, 74)], [(0, 2, 67)], [(1, 1, 60)], [(0, 0.25, 48), (0.25, 1.75, 43)]])
    x = enc.encode(s)
    p = lambda pitch: FIRST_PITCH + pitch - 40  # noqa: E731
    assert x.shape == (8, 5)
    assert x[:, 0].tolist() == [p(72), HOLD, HOLD, HOLD, p(74), HOLD, REST, REST]
    assert x[:, 1].tolist() == [p(67)] + [HOLD] * 7
    assert x[:, 2].tolist() == [REST] * 4 + [p(60), HOLD, HOLD, HOLD]
    assert x[:, 3].tolist() == [p(48), p(43)] + [HOLD] * 6
    assert x[:, 4].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_decode_inverts_encode_on_the_grid_and_tracks_are_found_by_name_or_by_pitch():
    enc = Voices()
    s = voices_score([[(0, 1.1, 72), (1.1, 0.4, 74)], [(0, 2, 67)], [(0.5, 1, 60)], [(0, 1, 48), (1, 1, 43)]])
    d = enc.decode(enc.encode(s))
    q = enc.quantize(s)
    assert [t.name for t in d.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    for name in ("Soprano", "Alto", "Tenor", "Bass"):
        assert notes_of(d, name) == notes_of(q, name)
    assert notes_of(d, "Soprano") == [(0.0, 1.0, 72), (1.0, 0.5, 74)]  # 1.1 and 1.5 snapped to 16ths
    # unnamed tracks: from the highest mean pitch down; shuffled order and names give the same array
    unnamed = voices_score(
        [[(0, 1, 48), (1, 1, 43)], [(0, 2, 67)], [(0, 1, 72), (1, 0.5, 74)], [(0.5, 1, 60)]], names="wxyz"
    )
    named = voices_score([[(0, 1, 72), (1, 0.5, 74)], [(0, 2, 67)], [(0.5, 1, 60)], [(0, 1, 48), (1, 1, 43)]])
    assert np.array_equal(enc.encode(unnamed), enc.encode(named))
    with pytest.raises(MidiError, match="not four voices.*found 1 pitched"):
        enc.encode(make_score([(0, 480, 60)]))


def test_fit_learns_each_voice_range_and_augment_keeps_voices_inside_them():
    enc = Voices().fit([four_voices(i) for i in range(4)])
    ranges = enc.voice_ranges()
    assert ranges[0][0] > ranges[3][1] - 12 and all(a <= b for a, b in ranges)
    x = enc.encode(four_voices(0))
    room_up = min(
        b - (int(x[:, v][x[:, v] >= FIRST_PITCH].max()) + enc.params.low - FIRST_PITCH)
        for v, (_, b) in enumerate(ranges)
    )
    up = enc.augment(x, np.random.default_rng(0), semitones=99)
    moved = up[:, :4][x[:, :4] >= FIRST_PITCH] - x[:, :4][x[:, :4] >= FIRST_PITCH]
    assert set(moved.tolist()) == {room_up}  # the largest shift that keeps every voice in range
    assert np.array_equal(up[:, 4], x[:, 4]) and np.array_equal(up[:, :4] < FIRST_PITCH, x[:, :4] < FIRST_PITCH)
    allowed = enc.allowed_tokens()
    assert allowed[:, [REST, HOLD]].all() and allowed[0].sum() == 2 + ranges[0][1] - ranges[0][0] + 1


@pytest.fixture(scope="module")
def chorale(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("chorale")
    os.environ["LSTMIDI_CACHE"] = str(root / "cache")
    data = root / "data"
    data.mkdir()
    for i in range(10):
        four_voices(i, bars=4).dump_midi(data / f"c{i}.mid")
    result = train(load_preset("chorale", [*TINY, "train.epochs=8"]), [data], root / "run", progress=False)
    return load_model(result.model_path), result, root


def test_the_chorale_model_learns_and_scores_every_cell_from_the_others(chorale):
    loaded, result, _ = chorale
    m = result.metrics
    assert m["valid_loss"] < 0.7 * m["baselines"]["unigram"], m  # well below the per-voice unigram


def test_gibbs_sampling_keeps_fixed_cells_and_ranges_and_repeats_with_the_seed(chorale):
    from lstmidi.harmonize import fill

    loaded = chorale[0]
    enc = loaded.encoding
    x = enc.encode(four_voices(3)).astype(np.int64)
    free = np.zeros((len(x), 4), bool)
    free[8:40, 1:3] = True  # alto and tenor, beats 2-10
    a = fill(loaded, x, free, num=3, seed=5, iterations=3)
    b = fill(loaded, x, free, num=3, seed=5, iterations=3)
    assert np.array_equal(a, b)
    assert all(np.array_equal(row[:, :4][~free], x[:, :4][~free]) and np.array_equal(row[:, 4], x[:, 4]) for row in a)
    assert not np.array_equal(a[0], fill(loaded, x, free, num=1, seed=6, iterations=3)[0])
    allowed = enc.allowed_tokens()
    for v in range(4):
        assert allowed[v][a[..., v]].all()
    assert (a[:, 8, 1:3] != HOLD).all()  # a free cell right after a kept note never extends it


def test_harmonize_keeps_the_melody_note_for_note_and_writes_four_voices(chorale):
    loaded = chorale[0]
    melody = make_score([(0, 480, 72), (480, 240, 74), (720, 240, 76), (960, 960, 77), (1920, 480, 76)])
    pieces = harmonize(loaded, melody, num=2, seed=1, iterations=2)
    assert len(pieces) == 2
    for piece in pieces:
        assert [t.name for t in piece.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert notes_of(piece, "Soprano") == [
            (0.0, 1.0, 72),
            (1.0, 0.5, 74),
            (1.5, 0.5, 76),
            (2.0, 2.0, 77),
            (4.0, 1.0, 76),
        ]
        assert sum(len(t.notes) for t in piece.tracks[1:]) > 0
        assert round(piece.tempos[0].qpm) == 120  # the melody's tempo
    # an octave too high for the soprano: harmonised an octave lower, then moved back up
    high = harmonize(loaded, melody.shift_pitch(24), seed=1, iterations=2)[0]
    assert [p for _, _, p in notes_of(high, "Soprano")] == [96, 98, 100, 101, 100]


def test_given_voices_are_clamped_exactly(chorale):
    loaded = chorale[0]
    piece = four_voices(7)
    out = harmonize(loaded, piece, voices="S,B", seed=2, iterations=2)[0]
    enc = loaded.encoding
    q = enc.quantize(piece)
    assert notes_of(out, "Soprano") == notes_of(q, "Soprano") and notes_of(out, "Bass") == notes_of(q, "Bass")
    only_bass = Score(480)
    only_bass.tracks.append(piece.tracks[3])
    out = harmonize(loaded, only_bass, voices="B", seed=2, iterations=2)[0]
    assert notes_of(out, "Bass") == notes_of(q, "Bass")


def test_rewrite_changes_only_the_chosen_voices_inside_the_bars(chorale):
    loaded = chorale[0]
    piece = four_voices(4, bars=4)
    piece.time_signatures.append(TimeSignature(0, 4, 4))
    before = loaded.encoding.quantize(piece)
    changed = False
    for seed in range(3):
        out = rewrite(loaded, piece, (2, 3), voices="A,T", seed=seed, iterations=2)[0]
        for name in ("Soprano", "Bass"):
            assert notes_of(out, name) == notes_of(before, name)
        for name in ("Alto", "Tenor"):
            outside = lambda notes: [n for n in notes if n[0] + n[1] <= 4 or n[0] >= 12]  # noqa: E731
            assert outside(notes_of(out, name)) == outside(notes_of(before, name))
            changed |= notes_of(out, name) != notes_of(before, name)
    assert changed


def test_what_cannot_be_harmonised_gets_a_clear_error(chorale, tmp_path):
    loaded = chorale[0]
    drums = make_score([(0, 480, 36)], drum=True)
    with pytest.raises(LstmidiError, match="no pitched notes"):
        harmonize(loaded, drums)
    chords = make_score([(0, 480, 60), (0, 480, 64), (480, 480, 62), (480, 480, 65)])
    with pytest.raises(LstmidiError, match="track 0 is polyphonic.*single line"):
        harmonize(loaded, chords, track=0)
    assert len(harmonize(loaded, chords, iterations=1)[0].tracks) == 4  # without --track: its highest line
    long = make_score([(i * 480, 480, 72) for i in range(MAX_BEATS + 1)])
    with pytest.raises(LstmidiError, match=f"{MAX_BEATS + 1} beats long; the limit is {MAX_BEATS}"):
        harmonize(loaded, long)
    wide = make_score([(0, 480, 40), (480, 480, 90)])
    with pytest.raises(
        LstmidiError, match="cannot be moved into the model's voice ranges: no transposition puts S 40-90"
    ):
        harmonize(loaded, wide)
    with pytest.raises(LstmidiError, match="voices are S, A, T and B"):
        harmonize(loaded, chords, voices="X")
    with pytest.raises(LstmidiError, match="2 given voices need 2 pitched tracks; it has 1"):
        harmonize(loaded, make_score([(0, 480, 72)]), voices="S,B")


def test_cli_harmonize_and_rewrite_end_to_end(chorale, tmp_path, monkeypatch, capsys):
    model = chorale[1].model_path
    melody = tmp_path / "melody.mid"
    make_score([(0, 480, 72), (480, 480, 71), (960, 960, 72)]).dump_midi(melody)
    out = run(
        [
            "harmonize",
            melody,
            "-m",
            model,
            "-o",
            tmp_path / "h.mid",
            "--iterations",
            "2",
            "--num",
            "2",
            "--parallels",
            "6",
        ]
    )
    for i in (1, 2):
        assert (tmp_path / f"h-{i}.mid").exists() and (tmp_path / f"h-{i}.wav").exists()
    assert "h-2.png" in out.output
    assert [t.name for t in Score(tmp_path / "h-1.mid").tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    run(["harmonize", melody, "-m", model, "-o", tmp_path / "s.mid", "--iterations", "1", "--score", "--no-wav"])
    import music21

    parts = music21.converter.parse(str(tmp_path / "s.musicxml")).parts
    assert [p.partName for p in parts] == ["Soprano", "Alto", "Tenor", "Bass"] and (tmp_path / "s.svg").exists()
    code, err = run_main(
        ["harmonize", melody, "-m", model, "-o", tmp_path / "h.mid", "--num", "2"], monkeypatch, capsys
    )
    assert code == 1 and "exists" in err  # no overwrite without --force
    piece = tmp_path / "piece.mid"
    four_voices(2).dump_midi(piece)
    run(
        [
            "generate",
            model,
            "--primer",
            piece,
            "--rewrite",
            "2-3",
            "--rewrite-voices",
            "A",
            "-o",
            tmp_path / "r.mid",
            "--iterations",
            "1",
        ]
    )
    assert notes_of(Score(tmp_path / "r.mid"), "Soprano") == notes_of(
        chorale[0].encoding.quantize(Score(piece)), "Soprano"
    )
    code, err = run_main(["generate", model, "--rewrite", "2-3", "-o", tmp_path / "x.mid"], monkeypatch, capsys)
    assert code == 1 and "--rewrite needs the piece to rewrite: --primer" in err
    code, err = run_main(
        ["generate", model, "--primer", piece, "--rewrite", "3-1", "-o", tmp_path / "x.mid"], monkeypatch, capsys
    )
    assert code == 1 and "bars FIRST-LAST counted from 1" in err
    run(["generate", model, "-o", tmp_path / "g.mid", "--seconds", "4", "--iterations", "1", "--no-wav", "--no-png"])
    assert len(Score(tmp_path / "g.mid").tracks) == 4


def test_parallel_counts_are_what_each_token_adds_to_the_pieces_parallels():
    # for every cell and token: parallels(piece with the cell set to the token) - parallel_counts[token] is
    # the same for all tokens, i.e. the counts are exactly each token's part of the piece's parallels
    import torch

    from lstmidi.samplers import parallel_counts, sounding
    from lstmidi.voiceleading import parallels

    g = torch.Generator().manual_seed(1)
    vocab, spacing, checked = 14, 4, 0
    for _ in range(60):
        steps = int(torch.randint(4, 30, (1,), generator=g))
        r = torch.rand(2, steps, 4, generator=g)
        tokens = torch.where(r < 0.5, HOLD, torch.randint(FIRST_PITCH, vocab, (2, steps, 4), generator=g))
        x = torch.cat([torch.where(r > 0.95, REST, tokens), torch.zeros(2, steps, 1, dtype=torch.long)], -1)
        voice, offset = int(torch.randint(4, (1,), generator=g)), int(torch.randint(spacing, (1,), generator=g))
        at = torch.arange(offset, steps, spacing)
        counts = parallel_counts(x, voice, at, spacing, vocab)
        for b in range(2):
            for cell, t in enumerate(at.tolist()):
                rest = set()
                for token in range(vocab):
                    y = x.clone()
                    y[b, t, voice] = token
                    grid = sounding(y[..., :-1])[b, ::spacing].numpy()  # the pitch at each beat, -1 for none
                    rest.add(round(parallels(grid) * len(grid) / 100) - int(counts[b, cell, token]))
                assert len(rest) == 1, (b, t, voice)
                checked += int(counts[b, cell].max() > 0)
    assert checked > 10  # the hand-made pieces have parallels to find


def test_the_parallels_penalty_steers_gibbs_sampling_away_from_parallels(chorale):
    from lstmidi.harmonize import fill
    from lstmidi.voiceleading import beat_grid, parallels

    loaded = chorale[0]
    enc = loaded.encoding
    x = enc.encode(four_voices(3)).astype(np.int64)
    free = np.zeros((len(x), 4), bool)
    free[:, 1:] = True  # the soprano given
    rates = {}
    for nats in (0.0, 20.0):
        out = fill(loaded, x, free, num=8, seed=0, iterations=4, parallels=nats)
        rates[nats] = np.mean([parallels(beat_grid(enc.decode(row))) for row in out])
    assert rates[20.0] < 0.25 * rates[0.0], rates


def test_a_harmonisation_ends_on_the_home_chord_when_the_melody_does(chorale):
    from lstmidi.harmonize import home_ending

    loaded = chorale[0]
    enc = loaded.encoding  # voice ranges of the tiny corpus: S 71-76, A 67-69, T 62-65, B 48-57
    tune = [72, 71, 72, 74, 76, 74, 72, 71, 72, 74, 71, 72]  # C major (find_key), ending on the tonic
    melody = make_score([(480 * i, 480, p) for i, p in enumerate(tune)])
    for seed in range(3):
        out = harmonize(loaded, melody, seed=seed, iterations=2)[0]
        final = {v: notes_of(out, v)[-1] for v in ("Soprano", "Alto", "Tenor", "Bass")}
        assert all(start == 11.0 and length == 1.0 for start, length, _ in final.values()), final
        assert {p % 12 for _, _, p in final.values()} <= {0, 4, 7} and final["Bass"][2] % 12 == 0, final
    # ending on C#, outside the tonic triad of its key (G major): every cell keeps its voice's range
    free = np.ones((48, 4), bool)
    free[:, 0] = False
    open_end = [(p, 4 * i, 4 * i + 4) for i, p in enumerate([*tune[:-1], 73])]
    assert np.array_equal(home_ending(enc, [open_end], free), np.repeat(enc.allowed_tokens()[None], 48, 0))


def test_a_composed_chorale_ends_on_its_home_chord(chorale, monkeypatch):
    from lstmidi.sampling import generate

    loaded = chorale[0]  # voice ranges S 71-76, A 67-69, T 62-65, B 48-57: C major's triad fits all four
    monkeypatch.setattr("lstmidi.quality.find_key", lambda pitches, durations: (0, "major", 1.0))
    for seed in range(3):
        piece = generate(loaded, seconds=6, seed=seed, iterations=2)[0]
        frames = piece.frames
        last = (len(frames) - 1) // 4 * 4
        assert (frames[last, :4] >= FIRST_PITCH).all() and (frames[last + 1 :, :4] == HOLD).all()
        pitches = frames[last, :4] - FIRST_PITCH + loaded.encoding.params.low
        assert {int(p) % 12 for p in pitches} <= {0, 4, 7} and pitches[3] % 12 == 0, pitches


def test_options_of_other_kinds_are_refused_and_iterations_checked(chorale, tmp_path, monkeypatch, capsys):
    from lstmidi.sampling import generate

    loaded = chorale[0]
    with pytest.raises(LstmidiError, match="--top-k.*Gibbs sampling"):
        generate(loaded, seconds=2, top_k=3)
    with pytest.raises(LstmidiError, match="--iterations 0: 1 to 1000 sweeps"):
        generate(loaded, seconds=2, iterations=0)
    with pytest.raises(LstmidiError, match="--parallels -1: a finite number of nats, 0 or more"):
        generate(loaded, seconds=2, parallels=-1)
    piece = generate(loaded, seconds=2, iterations=1)[0]
    assert [t.name for t in piece.score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"] and piece.primer_seconds == 0
    from lstmidi.api import bundled_model

    events = load_model(bundled_model("default"))
    with pytest.raises(LstmidiError, match="--iterations: for four-voice models"):
        generate(events, seconds=2, iterations=3)
    with pytest.raises(LstmidiError, match="--parallels: for four-voice models"):
        generate(events, seconds=2, parallels=2)
    with pytest.raises(LstmidiError, match="harmonising needs a four-voice model"):
        harmonize(events, make_score([(0, 480, 72)]))


def test_the_bundled_chorale_model_harmonises_a_melody():
    from lstmidi.api import bundled_model

    path = bundled_model("chorale")
    assert path.stat().st_size < 25 * 2**20
    loaded = load_model(path)
    assert loaded.encoding.name == "voices" and "--preset chorale" in loaded.card
    assert loaded.config["metrics"]["valid_loss"] < 0.5 * loaded.config["metrics"]["baselines"]["unigram"]
    melody = make_score([(0, 480, 67), (480, 480, 69), (960, 480, 71), (1440, 480, 72), (1920, 960, 67)])
    piece = harmonize(loaded, melody, iterations=2)[0]
    assert notes_of(piece, "Soprano") == [
        (0.0, 1.0, 67),
        (1.0, 1.0, 69),
        (2.0, 1.0, 71),
        (3.0, 1.0, 72),
        (4.0, 2.0, 67),
    ]
    assert all(len(t.notes) for t in piece.tracks)
