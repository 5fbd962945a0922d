"""Shared fixtures: hand-built scores and tiny corpora written as real MIDI files."""

from __future__ import annotations

from pathlib import Path

import pytest
from symusic import ControlChange, Note, Score, Tempo, Track


def make_score(notes, tpq: int = 480, qpm: float = 120.0, pedals=(), program: int = 0, drum: bool = False) -> Score:
    """notes: (start_tick, duration_ticks, pitch[, velocity]); pedals: (down_tick, up_tick)."""
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm=qpm))
    track = Track(name="t", program=program, is_drum=drum)
    for n in notes:
        track.notes.append(Note(n[0], n[1], n[2], n[3] if len(n) > 3 else 90))
    for down, up in pedals:
        track.controls.append(ControlChange(down, 64, 127))
        track.controls.append(ControlChange(up, 64, 0))
    score.tracks.append(track)
    return score


def note_tuples(score: Score) -> list[tuple[int, int, int, int]]:
    """(start, duration, pitch, velocity) of all notes, sorted: the identity used by round-trip tests."""
    return sorted((n.time, n.duration, n.pitch, n.velocity) for t in score.tracks for n in t.notes)


def chorale_like(seed: int, bars: int = 4) -> Score:
    """A small four-voice piece in C major, deterministic in `seed`: quarter-note chords moving stepwise."""
    import random

    rng = random.Random(seed)
    chords = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 76), (57, 64, 69, 72)]
    notes = []
    for beat in range(bars * 4):
        chord = chords[rng.randrange(len(chords))]
        for p in chord:
            notes.append((beat * 480, 480, p, 80))
    return make_score(notes)


def four_voices(seed: int, bars: int = 4, tpq: int = 480) -> Score:
    """`chorale_like(seed, bars)` with its voices on four tracks named Soprano, Alto, Tenor and Bass."""
    chords = chorale_like(seed, bars).tracks[0].notes
    score = Score(tpq)
    score.tempos.append(Tempo(0, qpm=100.0))
    for v, name in enumerate(("Soprano", "Alto", "Tenor", "Bass")):
        track = Track(name=name, program=52, is_drum=False)
        for n in chords:
            if sorted(m.pitch for m in chords if m.time == n.time)[3 - v] == n.pitch:
                track.notes.append(Note(n.time * tpq // 480, n.duration * tpq // 480, n.pitch, n.velocity))
        score.tracks.append(track)
    return score


def write_corpus(folder: Path, n: int = 8, bars: int = 4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"piece{i:02d}.mid"
        chorale_like(i, bars).dump_midi(path)
        paths.append(path)
    return paths


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    write_corpus(tmp_path / "data", n=10)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own corpus cache so tests never see each other's files."""
    monkeypatch.setenv("LSTMIDI_CACHE", str(tmp_path / "cache"))


TINY_FLAGSHIP = [  # a flagship small enough to train in seconds (preset overrides)
    "model.embed=16",
    "model.hidden=32",
    "model.layers=1",
    "train.window=48",
    "train.hop=24",
    "train.batch_size=16",
    "train.primer_steps=16",
    "train.lr=0.01",
]

TINY_CLI = [
    "--set",
    "model.hidden=16",
    "--set",
    "model.layers=1",
    "--set",
    "train.window=16",
    "--set",
    "train.hop=8",
    "--set",
    "train.primer_steps=8",
]


def run(args, code=0):
    """`lstmidi ARGS` through Typer's runner in this process; checks the exit code."""
    from typer.testing import CliRunner

    from lstmidi.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def run_main(args, monkeypatch, capsys):
    """Through `main()`, which turns LstmidiError into 'error: ...' and exit code 1 -> (code, stderr)."""
    from lstmidi.cli import main

    monkeypatch.setattr("sys.argv", ["lstmidi", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err
