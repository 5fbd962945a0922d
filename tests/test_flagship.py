"""The flagship event-token model: training with augmentation, constraints, endings, fine-tuning, bundled model."""

import numpy as np
import pytest

from conftest import TINY_FLAGSHIP, make_score, note_tuples, run, write_corpus
from lstmidi.batches import WindowDataset, make_augmenter
from lstmidi.config import load_preset
from lstmidi.corpus import load_corpus
from lstmidi.errors import LstmidiError
from lstmidi.modelfile import load_model
from lstmidi.sampling import generate
from lstmidi.training import train

TINY = TINY_FLAGSHIP


@pytest.fixture(scope="module")
def flagship(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("flagship")
    os.environ["LSTMIDI_CACHE"] = str(root / "cache")
    write_corpus(root / "data", n=10, bars=4)
    result = train(load_preset("flagship", [*TINY, "train.epochs=6"]), [root / "data"], root / "run", progress=False)
    return result, root


def pitches_after_primer(loaded, piece, primer_len):
    pitch_of = loaded.encoding.pitch_of_token()
    new = piece.frames[primer_len:]
    return [int(pitch_of[t]) for t in new if pitch_of[t] >= 0]


def test_generated_pieces_decode_without_token_errors_and_end_with_eos(flagship):
    loaded = load_model(flagship[0].model_path)
    enc = loaded.encoding
    pieces = generate(loaded, seconds=4, num=6, seed=0)
    target = enc.steps_for_seconds(4)
    for p in pieces:
        assert p.frames[0] == enc.bos and p.frames[-1] == enc.eos
        assert enc.token_errors(p.frames) == 0
        assert abs(len(p.frames) - 2 - target) <= max(4, target // 10) + 1, (len(p.frames), target)
        assert note_tuples(p.score), "piece has no notes"


def test_pieces_end_on_their_home_chord_more_often_than_at_the_most_likely_place(flagship, monkeypatch):
    from lstmidi import samplers
    from lstmidi.quality import harmony

    loaded = load_model(flagship[0].model_path)

    def home_endings():
        return sum(harmony(p.score)["tonic_ending"] for p in generate(loaded, seconds=4, num=12, seed=3))

    home = home_endings()
    monkeypatch.setattr(samplers, "HOME_MARGIN", 0.0)  # the most likely place only, one try: the model alone
    monkeypatch.setattr(samplers, "ENDING_TRIES", 1)
    alone = home_endings()
    assert home > alone, (home, alone)


def test_endings_are_chosen_by_the_seconds_of_new_music_after_the_primer(flagship, monkeypatch):
    from lstmidi import samplers
    from lstmidi.metrics import notes_end

    loaded = load_model(flagship[0].model_path)
    monkeypatch.setattr(samplers, "ENDING_TRIES", 1)  # one choice per row
    seen = []
    choose = samplers.BestEnding.choose

    def spy(self, rows, places=None, seconds=None):
        chosen = choose(self, rows, places, seconds)
        seen.append((seconds, [places.seconds(row, c[0]) if c else None for row, c in enumerate(chosen)]))
        return chosen

    monkeypatch.setattr(samplers.BestEnding, "choose", spy)
    primer = flagship[1] / "data" / "piece01.mid"
    pieces = generate(loaded, seconds=4, num=3, seed=0, primer=primer, primer_seconds=2)
    assert len(seen) == 1 and seen[0][0] == 4
    for piece, length in zip(pieces, seen[0][1], strict=True):
        assert piece.primer_seconds > 0 and length is not None
        assert notes_end(piece.score) - piece.primer_seconds == pytest.approx(length, abs=1e-6)


def test_held_out_nll_by_token_type_adds_up(flagship):
    from lstmidi.evaluation import held_out_nll, token_type_nll

    result, root = flagship
    loaded = load_model(result.model_path)
    pieces = result.corpus.pieces["valid"]
    total = held_out_nll(loaded, pieces, notes=100)
    by_type = token_type_nll(loaded, pieces, notes=100)
    assert sum(v["tokens"] for v in by_type.values()) == total["steps"] == sum(len(p) - 1 for p in pieces)
    assert sum(v["per_note"] for v in by_type.values()) == pytest.approx(total["per_note"], rel=1e-4)
    types = set(loaded.encoding.token_types())
    assert {"Pitch", "Duration", "EOS"} <= set(by_type) <= types
    assert list(by_type) == sorted(by_type, key=lambda t: -by_type[t]["per_note"])  # largest share first
    assert by_type["Pitch"]["per_token"] == pytest.approx(
        by_type["Pitch"]["per_note"] * 100 / by_type["Pitch"]["tokens"]
    )


def test_key_range_and_repeat_constraints_hold(flagship):
    from lstmidi.processors import scale_mask

    loaded = load_model(flagship[0].model_path)
    in_key = scale_mask("D minor")
    for seed in range(4):
        piece = generate(loaded, seconds=6, num=1, seed=seed, key="D minor", pitch_range=(50, 74), max_repeat=1)[0]
        pitches = pitches_after_primer(loaded, piece, 1)
        assert pitches, "no notes generated"
        assert all(in_key[p] and 50 <= p <= 74 for p in pitches), pitches
        assert all(a != b for a, b in zip(pitches, pitches[1:])), pitches  # no pitch twice in a row


def test_beam_search_and_greedy(flagship):
    loaded = load_model(flagship[0].model_path)
    beam = generate(loaded, seconds=2, num=1, beam=3)[0]
    assert beam.frames[-1] == loaded.encoding.eos and loaded.encoding.token_errors(beam.frames) == 0
    a = generate(loaded, seconds=2, num=2, seed=1, top_k=1)
    b = generate(loaded, seconds=2, num=2, seed=5, greedy=True)
    assert all(np.array_equal(p.frames, q.frames) for p, q in zip(a, b))


def test_primer_is_continued_and_can_be_left_out(flagship):
    result, root = flagship
    loaded = load_model(result.model_path)
    primer = root / "data" / "piece01.mid"
    with_primer = generate(loaded, seconds=2, num=1, seed=2, primer=primer, primer_seconds=2)[0]
    without = generate(loaded, seconds=2, num=1, seed=2, primer=primer, primer_seconds=2, include_primer=False)[0]
    assert with_primer.primer_seconds > 0 and without.primer_seconds == 0
    assert len(note_tuples(without.score)) < len(note_tuples(with_primer.score))


def test_augmentation_transposes_training_windows_only_and_stays_in_range(flagship):
    loaded = load_model(flagship[0].model_path)
    enc = loaded.encoding
    piece = enc.encode(make_score([(i * 240, 240, 100 + i % 8) for i in range(40)]))  # near the top of the range
    aug = make_augmenter(enc, load_preset("flagship").train.augment)
    ds = WindowDataset([piece], 32, 8, aug, seed=0)
    plain = WindowDataset([piece], 32, 8)
    pitch_of = enc.pitch_of_token()
    changed = False
    for epoch in range(4):
        ds.epoch = epoch
        for i in range(len(ds)):
            x = ds[i][0].numpy()
            assert all(21 <= p <= 108 for p in pitch_of[x] if p >= 0)
            changed |= not np.array_equal(x, plain[i][0].numpy())
    assert changed
    assert load_preset("flagship").train.augment.transpose == 5


def test_fine_tuning_keeps_the_tokenizer(flagship, tmp_path):
    result, root = flagship
    write_corpus(tmp_path / "new", n=6, bars=2)
    base = load_model(result.model_path)
    tuned = train(
        base.preset.model_copy(update={"train": base.preset.train.model_copy(update={"epochs": 1})}),
        [tmp_path / "new"],
        tmp_path / "tuned",
        progress=False,
        init=result.model_path,
    )
    tuned_model = load_model(tuned.model_path)
    assert tuned_model.encoding.to_dict() == base.encoding.to_dict()
    # the card says how to make the model from nothing: the base model's own run, then the fine-tuning
    assert tuned_model.config["fine_tuned_from"] == [
        {
            "command": base.config["command"],
            "epochs": base.config["metrics"]["epochs"],
            "train_seconds": base.config["metrics"]["train_seconds"],
        }
    ]
    assert f"Fine-tuned from a model trained with ({base.config['metrics']['epochs']} epochs" in tuned_model.card
    assert base.config["command"] in tuned_model.card
    other = load_preset("flagship", [*TINY, "encoding.tokenizer=TSD"])
    with pytest.raises(LstmidiError, match="fine-tuning keeps the model's encoding"):
        train(other, [tmp_path / "new"], tmp_path / "bad", progress=False, init=result.model_path)


def test_programs_mode_writes_multi_track_pieces_with_chosen_instruments(tmp_path):
    import os

    os.environ["LSTMIDI_CACHE"] = str(tmp_path / "cache")
    data = tmp_path / "duets"
    data.mkdir()
    for k in range(8):
        score = make_score([(i * 480, 480, 60 + (i + k) % 12) for i in range(16)], program=0)
        strings = make_score([(i * 960, 960, 48 + (i + k) % 7) for i in range(8)], program=40).tracks[0]
        score.tracks.append(strings)
        score.dump_midi(data / f"duet{k}.mid")
    result = train(
        load_preset("flagship", [*TINY, "encoding.programs=true", "train.epochs=4"]),
        [data],
        tmp_path / "run",
        progress=False,
    )
    loaded = load_model(result.model_path)
    programs = loaded.encoding.program_of_token()
    corpus = load_corpus([data], loaded.encoding, loaded.preset.data, cache_dir=tmp_path / "cache")
    seen = {int(programs[t]) for piece in corpus.pieces["train"] for t in piece if programs[t] >= 0}
    assert seen == {0, 40}  # the training data kept both instruments apart
    for seed in range(3):
        piece = generate(loaded, seconds=6, num=1, seed=seed, programs=[0, 40])[0]
        used = {int(programs[t]) for t in piece.frames if programs[t] >= 0}
        assert used <= {0, 40}
    pieces = generate(loaded, seconds=8, num=4, seed=0)
    assert max(len([t for t in p.score.tracks if len(t.notes)]) for p in pieces) >= 2


def test_constraint_options_need_an_event_model(tmp_path, corpus_dir):
    result = train(
        load_preset("musicgenerator", ["model.hidden=8", "train.epochs=1", "train.window=8"]),
        [corpus_dir],
        tmp_path / "r",
        progress=False,
    )
    with pytest.raises(
        LstmidiError, match=r"--key needs an event-token model \(preset flagship\); this model uses .pianoroll."
    ):
        generate(load_model(result.model_path), seconds=1, key="C major")


def test_a_pitch_nucleus_cuts_only_pitches():
    """top_p near 0 over all tokens is greedy: every row from the same start is the same piece. Cutting only
    pitch tokens leaves timing and durations drawn from the model's whole distribution: the rows differ."""
    from lstmidi.api import bundled_model

    loaded = load_model(bundled_model("default"))
    assert loaded.preset.sample.nucleus == "pitch"  # the bundled model's default
    for nucleus, rows_differ in (("all", False), ("pitch", True)):
        pieces = generate(loaded, seconds=4, num=4, seed=0, primer_seconds=0, top_p=1e-6, nucleus=nucleus)
        tokens = {tuple(p.frames.tolist()) for p in pieces}
        assert (len(tokens) > 1) == rows_differ, nucleus
    with pytest.raises(LstmidiError, match=r"--nucleus needs an event-token model"):
        generate(load_model(bundled_model("chorale")), seconds=1, nucleus="pitch")


@pytest.mark.parametrize("name", ["default", "quartets"])
def test_bundled_models_load_and_write_a_whole_piece(name):
    from lstmidi.api import bundled_model

    path = bundled_model(name)
    assert path.stat().st_size < 25 * 2**20
    loaded = load_model(path)
    assert loaded.encoding.name == "events" and "lstmidi train " in loaded.card and "--preset " in loaded.card
    assert loaded.config["metrics"]["valid_loss"] < min(loaded.config["metrics"]["baselines"].values())
    piece = generate(loaded, seconds=3, num=1, seed=0)[0]
    assert piece.frames[0] == loaded.encoding.bos and piece.frames[-1] == loaded.encoding.eos
    assert loaded.encoding.token_errors(piece.frames) == 0 and note_tuples(piece.score)
    assert piece.primer_seconds == 0.0


def test_bundled_chorale_model_passes_the_gates_pitch_measures_in_its_card():
    from lstmidi.api import bundled_model

    loaded = load_model(bundled_model())
    assert not loaded.encoding.params.programs and not loaded.encoding.params.velocities
    rows = loaded.config["metrics"]["quality"]["rows"]
    for name in ("key_fit", "in_scale", "consonance", "time_within_voices"):
        assert rows[name]["passed"], (name, rows[name])


def test_bundled_model_writes_a_string_quartet_with_programs(tmp_path):
    from symusic import Score

    run(["generate", "quartets", "-o", tmp_path / "q.mid", "--programs", "40,41,42", "--seconds", "8", "--seed", "1"])
    assert {(tmp_path / f"q.{ext}").is_file() for ext in ("mid", "wav", "png")} == {True}
    tracks = [t for t in Score(str(tmp_path / "q.mid")).tracks if len(t.notes)]
    assert len(tracks) >= 2 and {t.program for t in tracks} <= {40, 41, 42}
