"""Sheet music (lstmidi.sheet, lstmidi.render.render_score, `lstmidi render --score`, `generate --score`): the
MusicXML parses back with music21 with the right parts, names, staves, clefs, key, meter, tempo and durations."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest
import symusic

from conftest import run, run_main
from lstmidi import api, render, sheet
from lstmidi.errors import LstmidiError, OutputExistsError

music21 = pytest.importorskip("music21")
pytest.importorskip("verovio")

TPQ = 480
BACH = Path(render.__file__).parent / "corpora" / "bach"


def _score(tracks, *, qpm: float = 120.0, meter: tuple[int, int] | None = None, tpq: int = TPQ) -> symusic.Score:
    """tracks: (name, program, [(start quarter, quarters, pitch)]); times in quarter notes."""
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm=qpm))
    if meter:
        score.time_signatures.append(symusic.TimeSignature(0, *meter))
    for name, program, notes in tracks:
        track = symusic.Track(name=name, program=program)
        for start, length, pitch in notes:
            track.notes.append(symusic.Note(round(start * tpq), round(length * tpq), pitch, 80))
        score.tracks.append(track)
    return score


def _satb(names=("Soprano", "Alto", "Tenor", "Bass"), jitter: int = 0) -> symusic.Score:
    """Two bars of C major chords (C, F, G, C ... ) in four voices; `jitter` ticks shorten every note, as a
    performance would (the MIDI a naive import turns into 128th-note ties)."""
    chords = [(72, 67, 64, 48), (72, 69, 65, 53), (71, 67, 62, 55), (72, 67, 64, 48)] * 2
    tracks = [(n, 0, [(b, 1 - jitter / TPQ, c[v]) for b, c in enumerate(chords)]) for v, n in enumerate(names)]
    return _score(tracks, qpm=128.06)


def _parse(path) -> music21.stream.Score:
    return music21.converter.parse(str(path), format="musicxml")


def _clefs(parsed) -> list[str]:
    return [type(p.recurse().getElementsByClass(music21.clef.Clef)[0]).__name__ for p in parsed.parts]


def _sounding(parsed, part) -> list[tuple[Fraction, int, Fraction]]:
    """(offset, pitch, length) of every note of a part with the ties joined, in quarter notes."""
    notes = parsed.parts[part].stripTies().flatten().notes
    return sorted(
        (Fraction(n.offset), p.midi, Fraction(n.quarterLength))
        for n in notes
        for p in (n.pitches if n.isChord else [n.pitch])
    )


def test_satb_is_four_staves_with_choir_clefs_integer_tempo_and_no_tiny_notes(tmp_path):
    written = render.render_score(_satb(jitter=7), tmp_path / "chorale.mid")
    assert written == {"musicxml": str(tmp_path / "chorale.musicxml"), "svg": str(tmp_path / "chorale.svg")}
    parsed = _parse(written["musicxml"])
    assert [p.partName for p in parsed.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert _clefs(parsed) == ["TrebleClef", "TrebleClef", "Treble8vbClef", "BassClef"]
    marks = list(parsed.recurse().getElementsByClass(music21.tempo.MetronomeMark))
    assert [m.number for m in marks] == [128] and isinstance(marks[0].number, int)
    assert parsed.recurse().getElementsByClass(music21.meter.TimeSignature)[0].ratioString == "4/4"
    assert parsed.recurse().getElementsByClass(music21.key.KeySignature)[0].sharps == 0
    lengths = {Fraction(n.quarterLength) for n in parsed.recurse().notes}
    assert lengths == {1}  # the shortened quarters are quarters again: no ties, nothing shorter than a 16th
    for v, line in enumerate(([72, 72, 71, 72] * 2, [67, 69, 67, 67] * 2, [64, 65, 62, 64] * 2, [48, 53, 55, 48] * 2)):
        assert _sounding(parsed, v) == [(Fraction(b), p, Fraction(1)) for b, p in enumerate(line)]
    xml = Path(written["musicxml"]).read_text()
    assert xml.count("<score-part ") == 4 and "<group-symbol>bracket</group-symbol>" in xml
    svg = ET.parse(written["svg"]).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and "Soprano" in Path(written["svg"]).read_text()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("S", "A", "T", "B"), ["Soprano", "Alto", "Tenor", "Bass"]),
        (("Tenor", "Bass", "Soprano", "Alto"), ["Tenor", "Bass", "Soprano", "Alto"]),
        (("", "", "", ""), ["Soprano", "Alto", "Tenor", "Bass"]),  # four unnamed tracks of one program: by pitch
        (("Soprano 1", "Soprano II", "alto", "BASS."), ["Soprano 1", "Soprano 2", "Alto", "Bass"]),
    ],
)
def test_voices_are_named_from_track_names_or_four_tracks(names, expected):
    layout = sheet.score_layout(_satb(names))
    assert [p.name for p in layout.parts] == expected and layout.chorale
    clefs = {"Soprano": "treble", "Alto": "treble", "Tenor": "treble8vb", "Bass": "bass"}
    assert [s.clef for p in layout.parts for s in p.staves] == [clefs[n.split()[0]] for n in expected]


def test_unnamed_tracks_shuffled_get_voices_by_pitch():
    score = _satb(("", "", "", ""))
    score.tracks = [score.tracks[i] for i in (2, 0, 3, 1)]  # tenor, soprano, bass, alto
    assert [p.name for p in sheet.score_layout(score).parts] == ["Tenor", "Soprano", "Bass", "Alto"]


def test_instruments_are_named_by_general_midi_program_with_clefs_by_range():
    high, low = [(b, 1, 76 + b % 3) for b in range(4)], [(b, 1, 43 + b % 3) for b in range(4)]
    tracks = [("Violin I", 40, high), ("", 40, high), ("x", 41, high), ("", 42, low), ("", 73, high)]
    layout = sheet.score_layout(_score([*tracks, ("Alto Sax", 65, high), ("Bass Guitar", 33, low)]))
    names = ["Violin 1", "Violin 2", "Viola", "Cello", "Flute", "Alto Sax", "Electric Bass (finger)"]
    assert [p.name for p in layout.parts] == names  # "Alto Sax" and "Bass Guitar" are no voices
    assert [s.clef for p in layout.parts for s in p.staves] == ["treble"] * 3 + ["bass", "treble", "treble", "bass"]
    assert not layout.chorale
    # a lone track named "t" is no tenor: single letters count only when every track is named S, A, T or B
    assert sheet.score_layout(_score([("t", 0, high)])).parts[0].name == "Acoustic Grand Piano"


def test_piano_is_a_grand_staff_split_at_middle_c(tmp_path):
    # a bass line under a two-voice right hand: C4 (60) belongs to the treble staff, B3 (59) to the bass
    notes = [(0, 2, 48), (0, 2, 60), (2, 2, 59), (0, 1, 72), (1, 3, 76)]
    written = render.render_score(_score([("", 0, notes)]), tmp_path / "piano.mid")
    xml = Path(written["musicxml"]).read_text()
    assert xml.count("<score-part ") == 1 and "<staves>2</staves>" in xml
    assert "<voice>0</voice>" not in xml  # voices numbered from 1 through the two staves
    parsed = _parse(written["musicxml"])
    assert len(parsed.parts) == 2 and {p.partName for p in parsed.parts} == {"Acoustic Grand Piano"}
    assert _clefs(parsed) == ["TrebleClef", "BassClef"]
    assert [p for _, p, _ in _sounding(parsed, 0)] == [60, 72, 76]
    assert [p for _, p, _ in _sounding(parsed, 1)] == [48, 59]
    # every note, with its length, on the right staff: the two voices of the treble staff overlap
    assert _sounding(parsed, 0) == [(0, 60, 2), (0, 72, 1), (1, 76, 3)]
    layout = sheet.score_layout(_score([("", 0, notes)]))
    assert [len(s.voices) for s in layout.parts[0].staves] == [2, 1]


@pytest.mark.parametrize(
    ("line", "meter", "sharps", "mode"),
    [
        ([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 60], (4, 4), 0, "major"),  # C major
        ([67, 69, 71, 72, 74, 76, 78, 79, 74, 71, 67, 67], (3, 4), 1, "major"),  # G major in 3/4
        ([62, 64, 65, 67, 69, 70, 73, 74, 69, 65, 62, 62], (6, 8), -1, "minor"),  # D minor in 6/8
    ],
)
def test_key_signature_of_the_found_key_and_meter_of_the_data(tmp_path, line, meter, sharps, mode):
    notes = [(i, 1 if i < len(line) - 1 else 3, p) for i, p in enumerate(line)]
    written = render.render_score(_score([("", 73, notes)], meter=meter), tmp_path / "tune.mid")
    parsed = _parse(written["musicxml"])
    found = parsed.recurse().getElementsByClass(music21.key.KeySignature)[0]
    assert found.sharps == sharps and getattr(found, "mode", None) == mode
    assert parsed.recurse().getElementsByClass(music21.meter.TimeSignature)[0].ratioString == f"{meter[0]}/{meter[1]}"
    bar = Fraction(4 * meter[0], meter[1])
    measures = parsed.parts[0].getElementsByClass(music21.stream.Measure)
    assert len(measures) == -(-(len(line) + 2) // bar)  # whole bars of the meter, the last one filled with rests
    assert [p for _, p, _ in _sounding(parsed, 0)] == line  # the pitches come back (spelled in the key)


def test_default_meter_is_four_four_and_a_missing_tempo_is_midis_120():
    score = _score([("", 73, [(0, 1, 72)])])
    score.tempos = []
    layout = sheet.score_layout(score)
    assert layout.meters == ((0, 4, 4),) and layout.tempos == ((0, 120),) and layout.end == 16  # one bar of 16ths


def test_tempo_changes_are_whole_numbers_once_per_change():
    score = _score([("", 73, [(b, 1, 72) for b in range(8)])], qpm=96.4)
    for at, qpm in ((2, 96.2), (4, 71.51), (6, 72.2), (20, 50)):  # 96 again, 72, 72 again, after the music
        score.tempos.append(symusic.Tempo(at * TPQ, qpm=qpm))
    assert sheet.score_layout(score).tempos == ((0, 96), (16, 72))


def test_grid_is_16ths_or_triplet_eighths_and_no_note_is_shorter(tmp_path):
    swing = [(i / 3, 1 / 3, 72 + i % 5) for i in range(12)] + [(4, 2 / 3, 72), (4 + 2 / 3, 1 / 3 + 0.01, 74)]
    assert sheet.score_layout(_score([("", 73, swing)])).grid == 3
    # 16ths played a little early or late, and one 64th-note blip that must not become a 64th note
    played = [(i / 4 + (0.02 if i % 2 else -0.015), 0.23, 60 + i % 7) for i in range(1, 16)] + [(4.5, 1 / 16, 79)]
    layout = sheet.score_layout(_score([("", 73, played)]))
    assert layout.grid == 4
    for grid, notes in ((3, swing), (4, played)):
        parsed = _parse(render.render_score(_score([("", 73, notes)]), tmp_path / f"g{grid}.mid")["musicxml"])
        lengths = {Fraction(n.quarterLength) for n in parsed.recurse().notes}
        assert min(lengths) == Fraction(1, grid) and all(length % Fraction(1, grid) == 0 for length in lengths)


def test_a_bundled_chorale_is_four_voices_in_its_key(tmp_path):
    path = BACH / "bwv1.6.mid"  # F major, four tracks named Soprano..Bass, tempo 75.99996
    parsed = _parse(render.render_score(path, tmp_path / "bwv1.6.mid")["musicxml"])
    assert [p.partName for p in parsed.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert parsed.recurse().getElementsByClass(music21.key.KeySignature)[0].sharps == -1
    assert [m.number for m in parsed.recurse().getElementsByClass(music21.tempo.MetronomeMark)] == [76]
    original = symusic.Score(str(path))
    for v, track in enumerate(original.tracks):
        assert len(_sounding(parsed, v)) == len(track.notes)  # every note kept, none split into ties


def test_refuses_to_overwrite_before_writing_anything(tmp_path):
    (tmp_path / "x.svg").write_text("mine")
    with pytest.raises(OutputExistsError, match="x.svg"):
        render.render_score(_satb(), tmp_path / "x.mid")
    assert not (tmp_path / "x.musicxml").exists() and (tmp_path / "x.svg").read_text() == "mine"
    render.render_score(_satb(), tmp_path / "x.mid", force=True)
    assert (tmp_path / "x.svg").read_text().lstrip().startswith("<svg")
    with pytest.raises(LstmidiError, match="give `out`"):
        render.render_score(_satb())


def test_render_all_writes_the_score_beside_the_midi_and_refuses_first(tmp_path):
    written = render.render_all(_satb(), tmp_path / "song.mid", wav=False, sheet=True)
    assert sorted(written) == ["midi", "musicxml", "png", "svg"]
    assert all(Path(p).is_file() for p in written.values())
    (tmp_path / "again.musicxml").write_text("mine")
    with pytest.raises(OutputExistsError):
        render.render_all(_satb(), tmp_path / "again.mid", wav=False, sheet=True)
    assert not (tmp_path / "again.mid").exists() and not (tmp_path / "again.png").exists()


def test_a_long_piece_is_one_svg_with_the_pages_stacked(tmp_path, monkeypatch):
    monkeypatch.setitem(sheet.VEROVIO_OPTIONS, "pageHeight", 800)  # a short page: several pages
    svg = ET.parse(render.render_score(BACH / "bwv10.7.mid", tmp_path / "long.mid")["svg"]).getroot()
    pages = [child for child in svg if child.tag == "{http://www.w3.org/2000/svg}svg"]
    assert len(pages) >= 2
    tops = [float(p.get("y")) for p in pages]
    assert tops[0] == 0 and tops == sorted(tops) and float(svg.get("viewBox").split()[3]) > tops[-1]


def test_sheet_music_from_any_thread(tmp_path):
    """verovio's default resource path is per thread (set where it was imported): the studio engraves in worker
    threads, each a new one at times, and every one must find verovio's fonts."""
    import threading

    results = {}

    def engrave(name: str) -> None:
        try:
            results[name] = render.render_score(_satb(), tmp_path / f"{name}.mid")["svg"]
        except LstmidiError as err:
            results[name] = err

    for name in ("first", "second", "third"):
        worker = threading.Thread(target=engrave, args=(name,))
        worker.start()
        worker.join()
    engrave("main")
    assert all(isinstance(r, str) and Path(r).read_text().lstrip().startswith("<svg") for r in results.values()), (
        results
    )


def test_an_empty_score_is_one_bar_of_rest(tmp_path):
    parsed = _parse(render.render_score(symusic.Score(TPQ), tmp_path / "empty.mid")["musicxml"])
    assert len(parsed.parts) == 1 and not list(parsed.recurse().notes)


def test_missing_libraries_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "verovio", None)  # `import verovio` raises ImportError
    with pytest.raises(LstmidiError, match=r"pip install 'lstmidi\[score\]'"):
        render.render_score(_satb(), tmp_path / "x.mid")
    with pytest.raises(LstmidiError, match=r"lstmidi\[score\]"):  # before the model loads or anything is written
        api.generate_files(None, tmp_path / "g.mid", sheet=True, seconds=2)
    assert list(tmp_path.iterdir()) == []


def test_cli_render_score_end_to_end(tmp_path, monkeypatch, capsys):
    midi = tmp_path / "satb.mid"
    _satb().dump_midi(str(midi))
    out = run(["render", midi, "--score", "--no-wav", "--no-png"]).output
    assert out.split() == [str(tmp_path / "satb.musicxml"), str(tmp_path / "satb.svg")]
    assert [p.partName for p in _parse(tmp_path / "satb.musicxml").parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    code, err = run_main(["render", midi, "--score", "--no-wav", "--no-png"], monkeypatch, capsys)
    assert code == 1 and "satb.musicxml, " in err and "use --force to overwrite" in err and "Traceback" not in err
    run(["render", midi, "--score", "--no-wav", "--no-png", "--force", "-o", tmp_path / "other.mid"])
    assert (tmp_path / "other.musicxml").is_file() and (tmp_path / "other.svg").is_file()
    monkeypatch.setitem(sys.modules, "music21", None)
    code, err = run_main(["render", midi, "--score", "--force"], monkeypatch, capsys)
    assert code == 1 and "lstmidi[score]" in err and not (tmp_path / "satb.wav").exists()


def test_cli_generate_score_writes_the_score_beside_each_piece(tmp_path, monkeypatch, capsys):
    args = ["generate", "-o", tmp_path / "gen.mid", "-n", "2", "--seconds", "3", "--no-wav", "--no-png", "--score"]
    run(args)
    for i in (1, 2):
        parsed = _parse(tmp_path / f"gen-{i}.musicxml")
        assert parsed.parts and (tmp_path / f"gen-{i}.svg").is_file() and (tmp_path / f"gen-{i}.mid").is_file()
        marks = parsed.recurse().getElementsByClass(music21.tempo.MetronomeMark)
        assert marks and all(isinstance(m.number, int) for m in marks)
    (tmp_path / "gen-1.mid").unlink()
    (tmp_path / "gen-2.svg").write_text("mine")
    code, err = run_main(args, monkeypatch, capsys)  # a score of the earlier run stops the new one before it starts
    assert code == 1 and "gen-2.svg: file exists" in err and not (tmp_path / "gen-1.mid").exists()
    assert (tmp_path / "gen-2.svg").read_text() == "mine"
