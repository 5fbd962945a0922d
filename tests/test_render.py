"""Tests for lstmidi.render: MIDI round trip, SoundFont and built-in audio, piano-roll PNG, no-overwrite."""

from __future__ import annotations

import ast
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import symusic

from lstmidi import files, render
from lstmidi.errors import LstmidiError, OutputExistsError

TPQ = 480
SCORE_END_S = 3.0  # 1 s chord + 8 eighth notes at 120 qpm


def _score() -> symusic.Score:
    """C major chord (C4 E4 G4, one half note = 1 s), then an eighth-note melody; plus a bass line."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    piano = symusic.Track(name="piano", program=0)
    for pitch in (60, 64, 67):
        piano.notes.append(symusic.Note(0, 2 * TPQ, pitch, 90))
    for i, pitch in enumerate([72, 74, 76, 77, 79, 77, 76, 74]):
        piano.notes.append(symusic.Note(2 * TPQ + i * TPQ // 2, TPQ // 2, pitch, 60 + 8 * i))
    bass = symusic.Track(name="bass", program=32)
    for i, pitch in enumerate([48, 43, 48]):
        bass.notes.append(symusic.Note(2 * TPQ * i, 2 * TPQ, pitch, 100))
    score.tracks.append(piano)
    score.tracks.append(bass)
    return score


def _one_note(pitch: int = 69, seconds: float = 1.0) -> symusic.Score:
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, int(seconds * 2 * TPQ), pitch, 100))
    score.tracks.append(track)
    return score


def _notes(score: symusic.Score) -> list[list[tuple[int, int, int, int]]]:
    return [sorted((n.time, n.duration, n.pitch, n.velocity) for n in t.notes) for t in score.tracks]


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Return (mono float audio in [-1, 1], sample rate)."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return pcm.reshape(-1, channels).mean(axis=1), rate


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def no_env_soundfont(monkeypatch):
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)


@pytest.fixture
def builtin_only(monkeypatch):
    """Pretend no SoundFont is installed (the one-time warning counts as already given)."""
    monkeypatch.setattr(render, "find_soundfont", lambda explicit=None: None)
    monkeypatch.setattr(render, "_warned_no_soundfont", True)


# ----------------------------------------------------------------------------------------------- MIDI


def test_midi_round_trip(tmp_path):
    score = _score()
    out = tmp_path / "sub" / "dir" / "song.mid"  # parents are created
    assert render.write_midi(score, out) == str(out)
    back = symusic.Score(str(out))
    assert back.ticks_per_quarter == TPQ
    assert _notes(back) == _notes(score)
    assert [t.program for t in back.tracks] == [0, 32]
    assert [round(t.qpm, 3) for t in back.tempos] == [120.0]
    assert [p.name for p in out.parent.iterdir()] == ["song.mid"]  # no temp file left behind
    assert out.stat().st_mode & 0o777 == 0o666 & ~files._UMASK  # not mkstemp's private 0600 (lstmidi.files writes it)


# ---------------------------------------------------------------------------------------------- audio


def test_soundfont_wav_is_real_audio(tmp_path, no_env_soundfont):
    sf = render.find_soundfont()
    if sf is None:
        pytest.skip("no SoundFont installed (apt-get install fluid-soundfont-gm) - cannot test the synthesizer")
    out = tmp_path / "song.wav"
    with _no_fallback_warning():
        engine = render.render_wav(_score(), out, sample_rate=22050)
    # A broken synthesizer (raising, or returning silence) would make render_wav fall back: fail here.
    assert engine == f"soundfont:{sf}"
    audio, rate = _read_wav(out)
    assert rate == 22050
    duration = len(audio) / rate
    assert SCORE_END_S <= duration <= SCORE_END_S + 0.5 + 1.5  # + the instruments' release
    first = audio[:rate]
    rms = float(np.sqrt(np.mean(first**2)))
    assert rms > 0.01, f"first second is (nearly) silent: RMS {rms:.5f}"


class _no_fallback_warning:
    """Context manager: fail if render_wav warns that it fell back to the built-in synth."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self._log = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        messages = [str(w.message) for w in self._log if "built-in synth" in str(w.message)]
        assert not messages, messages


def test_silent_synthesizer_falls_back_to_builtin(tmp_path, monkeypatch):
    fake_sf = tmp_path / "fake.sf2"
    fake_sf.write_bytes(b"not really")

    class SilentSynth:
        def __init__(self, *args, **kwargs):
            pass

        def render(self, score, stereo=True):
            return np.zeros((2, 1000), dtype=np.float32)

    monkeypatch.setattr(render.symusic, "Synthesizer", SilentSynth)
    out = tmp_path / "song.wav"
    with pytest.warns(RuntimeWarning, match="returned silence"):
        engine = render.render_wav(_score(), out, soundfont=fake_sf, sample_rate=8000)
    assert engine == "builtin"
    audio, _ = _read_wav(out)
    assert np.abs(audio).max() > 0.5


def test_raising_synthesizer_falls_back_to_builtin(tmp_path, monkeypatch):
    fake_sf = tmp_path / "fake.sf2"
    fake_sf.write_bytes(b"not really")

    class BrokenSynth:
        def __init__(self, *args, **kwargs):
            pass

        def render(self, score, stereo=True):
            raise TypeError("Unable to convert function return value to a Python type!")

    monkeypatch.setattr(render.symusic, "Synthesizer", BrokenSynth)
    with pytest.warns(RuntimeWarning, match="Unable to convert"):
        engine = render.render_wav(_score(), tmp_path / "song.wav", soundfont=fake_sf, sample_rate=8000)
    assert engine == "builtin"


def test_builtin_synth_pitch_and_warning(tmp_path, builtin_only, monkeypatch):
    monkeypatch.setattr(render, "_warned_no_soundfont", False)
    out = tmp_path / "a4.wav"
    with pytest.warns(RuntimeWarning, match="fluid-soundfont-gm") as record:
        engine = render.render_wav(_one_note(69, 1.0), out, sample_rate=16000)
    assert engine == "builtin"
    assert any(render.SOUNDFONT_ENV in str(w.message) for w in record)
    audio, rate = _read_wav(out)
    assert rate == 16000
    assert 1.0 <= len(audio) / rate <= 1.0 + 0.5
    assert np.sqrt(np.mean(audio**2)) > 0.05
    # Dominant frequency: Hann window, 8x zero padding -> bins of ~0.25 Hz.
    n = len(audio)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(n), 8 * n))
    peak_hz = np.argmax(spectrum) * rate / (8 * n)
    assert abs(peak_hz - 440.0) <= 2.0, peak_hz

    # The "no SoundFont" warning is given once per process, not for every file.
    import warnings

    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        render.render_wav(_one_note(60), tmp_path / "c4.wav", sample_rate=8000)
    assert not [w for w in again if "fluid-soundfont-gm" in str(w.message)]


def test_builtin_synth_velocity_and_timing(builtin_only):
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, TPQ, 69, 120))  # 0.0-0.5 s, loud
    track.notes.append(symusic.Note(2 * TPQ, TPQ, 69, 40))  # 1.0-1.5 s, soft
    score.tracks.append(track)
    rate = 8000
    audio = render._synth_builtin(score, rate)
    loud = np.sqrt(np.mean(audio[int(0.05 * rate) : int(0.45 * rate)] ** 2))
    gap = np.sqrt(np.mean(audio[int(0.75 * rate) : int(0.95 * rate)] ** 2))
    soft = np.sqrt(np.mean(audio[int(1.05 * rate) : int(1.45 * rate)] ** 2))
    assert loud > 3 * soft > 0
    assert gap < 1e-3 * loud
    assert np.abs(audio).max() == pytest.approx(0.9, abs=1e-3)


# --------------------------------------------------------------------------------------------- picture


def test_pianoroll_png(tmp_path):
    out = tmp_path / "song.png"
    assert render.render_pianoroll_png(_score(), out, primer_seconds=1.0) == str(out)
    width, height = _png_size(out)
    assert 700 <= width <= 2600 and 350 <= height <= 1000
    assert out.stat().st_size > 10_000  # notes, axes, labels: not an empty canvas

    # Width grows with duration, up to a cap.
    long_score = _score()
    long_score.tracks[0].notes.append(symusic.Note(60 * TPQ, TPQ, 60, 80))  # ends at 30.5 s
    render.render_pianoroll_png(long_score, tmp_path / "long.png")
    very_long = _score()
    very_long.tracks[0].notes.append(symusic.Note(1200 * TPQ, TPQ, 60, 80))  # ends at 600.5 s
    render.render_pianoroll_png(very_long, tmp_path / "very_long.png")
    w_long, _ = _png_size(tmp_path / "long.png")
    w_very_long, _ = _png_size(tmp_path / "very_long.png")
    assert width < w_long <= w_very_long <= 2600


def test_pianoroll_empty_score(tmp_path):
    out = tmp_path / "empty.png"
    render.render_pianoroll_png(symusic.Score(TPQ), out)
    assert _png_size(out)[0] > 0


# ------------------------------------------------------------------------------------------ overwriting


@pytest.mark.parametrize("kind", ["midi", "wav", "png"])
def test_no_overwrite_without_force(tmp_path, kind, builtin_only):
    writers = {
        "midi": (render.write_midi, "song.mid"),
        "wav": (lambda s, p, **kw: render.render_wav(s, p, sample_rate=8000, **kw), "song.wav"),
        "png": (render.render_pianoroll_png, "song.png"),
    }
    write, name = writers[kind]
    out = tmp_path / name
    old = b"precious old content"
    out.write_bytes(old)
    with pytest.raises(OutputExistsError) as info:
        write(_score(), out)
    assert str(out) in str(info.value) and "--force" in str(info.value)
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind

    write(_score(), out, force=True)
    assert out.read_bytes() != old


def test_render_all_writes_three_files(tmp_path, builtin_only):
    paths = render.render_all(_score(), tmp_path / "out" / "song.mid", primer_seconds=1.0)
    assert set(paths) == {"midi", "wav", "png"}
    assert {Path(p).name for p in paths.values()} == {"song.mid", "song.wav", "song.png"}
    assert all(Path(p).is_file() for p in paths.values())
    assert _notes(symusic.Score(paths["midi"])) == _notes(_score())


def test_render_all_refuses_before_writing_anything(tmp_path, builtin_only):
    png = tmp_path / "song.png"
    png.write_bytes(b"old picture")
    with pytest.raises(OutputExistsError, match="song.png"):
        render.render_all(_score(), tmp_path / "song.mid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.png"]
    assert png.read_bytes() == b"old picture"


def test_render_all_missing_soundfont_writes_nothing(tmp_path):
    with pytest.raises(LstmidiError, match="nope.sf2"):
        render.render_all(_score(), tmp_path / "song.mid", soundfont=tmp_path / "nope.sf2")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- soundfont


def test_find_soundfont_env_and_explicit(tmp_path, monkeypatch):
    from_env = tmp_path / "env.sf2"
    from_env.write_bytes(b"x")
    explicit = tmp_path / "explicit.sf2"
    explicit.write_bytes(b"x")
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(from_env))
    assert render.find_soundfont() == from_env
    assert render.find_soundfont(explicit) == explicit  # the argument wins over the env var

    missing = tmp_path / "missing.sf2"
    with pytest.raises(LstmidiError, match="missing.sf2"):
        render.find_soundfont(missing)
    monkeypatch.setenv(render.SOUNDFONT_ENV, str(missing))
    with pytest.raises(LstmidiError, match=render.SOUNDFONT_ENV):
        render.find_soundfont()


def test_find_soundfont_system_paths(no_env_soundfont, monkeypatch, tmp_path):
    sf2 = tmp_path / "sounds" / "b.sf2"
    sf2.parent.mkdir()
    sf2.write_bytes(b"x")
    (tmp_path / "sounds" / "a.txt").write_bytes(b"x")
    monkeypatch.setattr(render, "_SYSTEM_SOUNDFONTS", (str(tmp_path / "none.sf2"), str(tmp_path / "sounds" / "*.sf2")))
    assert render.find_soundfont() == sf2
    monkeypatch.setattr(render, "_SYSTEM_SOUNDFONTS", (str(tmp_path / "none.sf2"),))
    assert render.find_soundfont() is None


# -------------------------------------------------------------------------------------------- structure


def test_render_imports_no_torch_and_no_other_lstmidi_modules():
    tree = ast.parse(Path(render.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {m for m in imported if m.split(".")[0] == "torch"}
    assert {m for m in imported if m.split(".")[0] == "lstmidi"} <= {"lstmidi.errors"}
    assert "BuiltInSF3" not in Path(render.__file__).read_text()  # it would download a SoundFont


def test_a_piece_without_notes_is_written_with_its_events_in_order(tmp_path):
    """symusic writes a track-less score's tempos and time signatures out of order (a negative delta time:
    a file of ~50 million quarter notes); write_midi gives it an empty track."""
    from symusic import Score, Tempo, TimeSignature

    from lstmidi import smf
    from lstmidi.render import write_midi

    score = Score(16)
    score.time_signatures.extend([TimeSignature(0, 2, 4), TimeSignature(14, 12, 8)])
    score.tempos.extend([Tempo(0, qpm=120), Tempo(83, qpm=200)])
    write_midi(score, tmp_path / "empty.mid")
    data = (tmp_path / "empty.mid").read_bytes()
    assert b"\xff\xff\xff" not in data
    parsed = smf.parse(data, build=False)
    assert (
        parsed.ticks in (83, 84) and not parsed.problems
    )  # the last tempo change (symusic ends the track a tick later)
