"""Lenient reading of damaged MIDI files: each kind of damage built in code, read alone, and as a
corpus through `lstmidi prepare` and `lstmidi inspect`."""

import faulthandler
import json
import os
import signal

import pytest
from symusic import Score

from conftest import note_tuples, run, write_corpus
from lstmidi import smf as smf_reader
from lstmidi.config import DataConfig
from lstmidi.corpus import bundled_corpus, load_corpus
from lstmidi.encodings import build_encoding
from lstmidi.errors import MidiError
from lstmidi.inspection import FIELDS
from lstmidi.midi import Limits, load_score, read_score_bytes, read_score_lenient, score_seconds
from midibytes import BASS, EOT, MELODY, chunk, notes, piece, program, smf, tempo, vlq

GOOD = piece()
GOOD_NOTES = len(MELODY) + len(BASS)


def riff_rmid(data: bytes) -> bytes:
    """The RIFF RMID wrapper of Microsoft's .rmi files, with a trailing INFO list after the MIDI data."""
    body = b"RMID" + b"data" + len(data).to_bytes(4, "little") + data + b"LIST" + (4).to_bytes(4, "little") + b"INFO"
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def wrong_length(data: bytes) -> bytes:
    """The melody track's chunk length announces 5 bytes fewer than it holds."""
    at = data.index(b"MTrk", data.index(b"MTrk") + 1) + 4
    length = int.from_bytes(data[at : at + 4], "big") - 5
    return data[:at] + length.to_bytes(4, "big") + data[at + 4 :]


def high_pitch_byte() -> bytes:
    """The first melody note's pitch byte (on and off) has its top bit set: 0xBC instead of 0x3C."""
    melody = program(0) + b"\x00\x90\xbc\x50" + vlq(240) + b"\x80\xbc\x00" + notes(MELODY[1:])
    return smf([chunk(tempo(120)), chunk(melody)])


# name -> (file name, bytes, status, words of the reason)
CASES = {
    "junk prefix": ("junk.mid", b"garbage!" * 3 + GOOD, "recovered", "cut 24 junk bytes before MThd"),
    "RIFF RMID wrapper": ("wrapped.rmi", riff_rmid(GOOD), "recovered", "RIFF RMID wrapper removed"),
    ".kar name": ("karaoke.kar", GOOD, "loaded", ""),
    "data byte > 127": ("highbit.mid", high_pitch_byte(), "recovered", "2 data bytes > 127 clipped"),
    "truncated track": (
        "truncated.mid",
        GOOD[:-7],
        "recovered",
        "track 3 truncated (72 of 79 bytes present), 1 note without note-off ended at the end of the track",
    ),
    "wrong chunk length": (
        "length.mid",
        wrong_length(GOOD),
        "recovered",
        "track 2 chunk length wrong (146 bytes announced, 151 read)",
    ),
    "missing end-of-track": (
        "no-eot.mid",
        smf([chunk(tempo(120)), chunk(notes(MELODY), eot=False)]),
        "recovered",
        "track 2: no end-of-track event",
    ),
    "bad running status": (
        "stray.mid",
        smf([chunk(b"\x00\x3c" + notes(MELODY))]),
        "recovered",
        "1 data byte without a status byte skipped",
    ),
    "format 2": ("format2.mid", piece(fmt=2), "loaded", ""),
    "zero notes": ("silent.mid", smf([chunk(tempo(120)), chunk(program(0))]), "skipped", "no notes"),
    "drums only": (
        "drums.mid",
        smf([chunk(notes([36, 38] * 4, channel=9))]),
        "skipped",
        "only drum notes (drums are off)",
    ),
    "too long": (
        "endless.mid",
        smf([chunk(notes([60]) + vlq(0x0FFFFFFF) + b"\x90\x3e\x50" + vlq(240) + b"\x80\x3e\x00")]),
        "recovered",
        "truncated to the first 50,000 quarter notes (the file has 559,242 quarter notes)",
    ),
    "too long, no note inside the limit": (
        "late.mid",
        smf([chunk(vlq(0x0FFFFFFF) + b"\x90\x3e\x50" + vlq(240) + b"\x80\x3e\x00")]),
        "skipped",
        "too long (559,241 quarter notes; no notes in the first 50,000 quarter notes, the limit)",
    ),
    "notes after an early end-of-track": (
        "early-eot.mid",
        smf([chunk(notes(MELODY[:4]) + EOT + notes(MELODY[4:]))]),
        "recovered",
        "12 notes after an early end-of-track event read",
    ),
    "no MThd header": (
        "headless.mid",
        GOOD[14:],
        "recovered",
        "no MThd header: its 3 track chunks read as format 1 at 480 ticks per quarter (a guess)",
    ),
    "oversize": ("huge.mid", None, "skipped", "too large (16.0 MB; the limit is 16 MB)"),
    "text file": ("readme.mid", b"These are my favourite songs.\n", "skipped", "not a MIDI file (no MThd header)"),
    "empty file": ("empty.mid", b"", "skipped", "empty file (0 bytes)"),
}


def write_case(folder, name):
    file, data, _, _ = CASES[name]
    path = folder / file
    if data is None:  # just over the 16 MB limit; its content is never read
        with path.open("wb") as f:
            f.write(GOOD)
            f.truncate(16 * 2**20 + 1)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", CASES)
def test_each_kind_of_damage_reads_or_skips_with_its_reason(tmp_path, name):
    path = write_case(tmp_path, name)
    _, _, status, words = CASES[name]
    if status == "skipped":
        with pytest.raises(MidiError) as err:
            load_score(path)
        assert str(err.value) == f"{path}: {words}"
        return
    score, note, fmt = read_score_lenient(path)
    assert (note == "") == (status == "loaded") and words in note
    assert fmt == (2 if name == "format 2" else 1)
    assert load_score(path).note_num() == score.note_num()


def test_recovery_keeps_every_note_it_can_read():
    good = note_tuples(read_score_bytes(GOOD).score)
    assert len(good) == GOOD_NOTES
    for name in ("junk prefix", "RIFF RMID wrapper", "wrong chunk length"):
        assert note_tuples(read_score_bytes(CASES[name][1]).score) == good, name
    # cut inside the last bass note's note-off, after its delta time: that note ends where the track ends
    assert note_tuples(read_score_bytes(CASES["truncated track"][1]).score) == good
    clipped = note_tuples(read_score_bytes(CASES["data byte > 127"][1]).score)
    assert clipped[0] == (0, 240, 127, 80) and clipped[1:] == [n for n in good if n[2] in MELODY][1:]
    assert len(read_score_bytes(CASES["missing end-of-track"][1]).score.tracks[0].notes) == len(MELODY)
    assert read_score_bytes(CASES["bad running status"][1]).score.note_num() == len(MELODY)


def test_format_2_lays_tracks_one_after_another():
    one, two = read_score_bytes(piece(fmt=1)).score, read_score_bytes(piece(fmt=2)).score
    melody_end = len(MELODY) * 240
    assert [n[0] for n in note_tuples(two) if n[2] in BASS] == [melody_end + i * 480 for i in range(len(BASS))]
    assert [n[0] for n in note_tuples(one) if n[2] in BASS] == [i * 480 for i in range(len(BASS))]
    assert two.end() == melody_end + len(BASS) * 480


def test_a_file_that_grows_while_it_is_read_is_read_to_the_limit(tmp_path, monkeypatch):
    """The reader asks for the size it saw (plus a byte); a file longer by then is still read whole, or
    refused when it is now over the size limit."""
    from pathlib import Path

    path = tmp_path / "growing.mid"
    path.write_bytes(GOOD)
    real = Path.stat

    def seen_earlier(self, *args, **kwargs):  # the size when the file was 20 bytes long
        info = real(self, *args, **kwargs)
        return os.stat_result((*info[:6], 20, *info[7:10])) if self.name == "growing.mid" else info

    monkeypatch.setattr(Path, "stat", seen_earlier)
    assert len(GOOD) > 100 and read_score_lenient(path).score.note_num() == GOOD_NOTES
    with pytest.raises(MidiError, match=r"growing\.mid: too large \(0\.0 MB; the limit is "):
        read_score_lenient(path, Limits(max_bytes=100))


def test_limits_against_hostile_files(tmp_path):
    with pytest.raises(MidiError, match=r"^x: too large \(0\.0 MB; the limit is "):
        read_score_bytes(GOOD, "x", Limits(max_bytes=100))
    # past a limit, the part inside it is kept and the file counts as recovered
    with pytest.raises(
        MidiError, match=r"^x: too long \(more than 20 events; no notes in the first 20 events, the limit\)$"
    ):
        read_score_bytes(smf([chunk(tempo(120) * 30 + notes(MELODY))]), "x", Limits(max_events=20))
    two = smf([chunk(notes(MELODY)), chunk(notes(BASS, step=480))])  # 33 + 17 events
    score, note, _ = read_score_bytes(two, "x", Limits(max_events=40))
    assert note == "read by the fallback reader: truncated to the first 40 events (the file has more than 40 events)"
    assert [len(t.notes) for t in score.tracks] == [len(MELODY), 4]  # the bass track: 7 events, its 4th note ends there
    slow = smf([chunk(b"\x00\xff\x51\x03\xff\xff\xff" + notes(MELODY))])  # 16.8 s per quarter: 134 s
    assert read_score_bytes(slow, "x").score.note_num() == len(MELODY)
    score, note, _ = read_score_bytes(slow, "x", Limits(max_seconds=60))
    assert note == "truncated to the first 60 seconds (the file has 134)"
    assert (
        score.note_num() == 8 and 0 <= 60 - score_seconds(score) < 0.035
    )  # 8.4 s per note; the 8th cut at 60 s (a tick is 35 ms)
    with pytest.raises(MidiError, match="is a folder"):
        read_score_lenient(tmp_path)
    os.mkfifo(tmp_path / "pipe.mid")  # reading a named pipe would wait forever
    with pytest.raises(MidiError, match="pipe.mid: not a regular file"):
        read_score_lenient(tmp_path / "pipe.mid")


def test_smpte_division_and_bad_header_length():
    smpte = b"MThd" + (6).to_bytes(4, "big") + b"\x00\x00\x00\x01" + bytes([256 - 25, 40]) + chunk(notes(MELODY))
    score, note, _ = read_score_bytes(smpte)
    assert "SMPTE time (25 frames/s) read as 60 qpm" in note
    assert score.ticks_per_quarter == 1000 and score.tempos[0].qpm == 60  # 240 ticks = 0.24 s, as in the file
    long_header = b"MThd" + (8).to_bytes(4, "big") + GOOD[8:14] + b"\x00\x00" + GOOD[14:]
    score, note, _ = read_score_bytes(long_header)
    assert score.note_num() == GOOD_NOTES and "header length 8 read as 6, 2 junk bytes between chunks skipped" in note


def test_fallback_reader_agrees_with_symusic_on_clean_files():
    files = sorted(bundled_corpus().glob("*.mid"))[::8]
    for path in files:
        data = path.read_bytes()
        parsed, reference = smf_reader.parse(data), Score.from_midi(data)
        assert smf_reader.parse(data, build=False).problems == {}, path.name
        assert [(t.time, t.mspq) for t in parsed.score.tempos] == [(t.time, t.mspq) for t in reference.tempos]
        assert [(t.time, t.numerator, t.denominator) for t in parsed.score.time_signatures] == [
            (t.time, t.numerator, t.denominator) for t in reference.time_signatures
        ]
        assert [(k.time, k.key, k.tonality) for k in parsed.score.key_signatures] == [
            (k.time, k.key, k.tonality) for k in reference.key_signatures
        ]
        assert [(t.name, t.program, t.is_drum) for t in parsed.score.tracks] == [
            (t.name, t.program, t.is_drum) for t in reference.tracks
        ]
        # symusic drops notes that never end; this reader ends them with their track and says so
        ours, theirs = note_tuples(parsed.score), note_tuples(reference)
        extra = sum(n for text, n in parsed.problems.items() if "without note-off" in text)
        assert set(theirs) <= set(ours) and len(ours) - len(theirs) == extra, path.name


def crash_on(name: str, parent: int):
    """A read_score_lenient that kills its worker process with SIGSEGV (as a crashing C++ parser would) on `name`."""
    from lstmidi.midi import read_score_lenient as real

    def read(path, *args):
        if path.endswith(name) and os.getpid() != parent:
            faulthandler.disable()  # pytest's handler would print the dying worker's stack
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(path, *args)

    return read


def test_a_crashing_parser_skips_only_that_file(tmp_path, monkeypatch):
    import multiprocessing

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the crash is injected by patching the parent, which only forked workers inherit")
    write_corpus(tmp_path / "data", n=40)
    monkeypatch.setattr("lstmidi.corpus.read_score_lenient", crash_on("piece17.mid", os.getpid()))
    corpus = load_corpus(
        [tmp_path / "data"], build_encoding({"name": "pianoroll"}), DataConfig(workers=2), cache_dir=tmp_path / "cache"
    )
    statuses = {r["name"]: (r["status"], r.get("reason", "")) for r in corpus.report}
    assert statuses.pop("piece17.mid") == ("skipped", "parser crashed")
    assert set(statuses.values()) == {("loaded", "")} and len(statuses) == 39
    assert corpus.summary["skipped_by_reason"] == {"parser crashed": 1}


def test_damaged_corpus_through_prepare_and_inspect(tmp_path):
    folder = tmp_path / "data"
    write_corpus(folder, n=4)
    for name in CASES:
        write_case(folder, name)
    out = run(["prepare", folder, "--out", tmp_path / "prep"]).output
    statuses = [status for _, _, status, _ in CASES.values()]
    loaded, recovered, skipped = 4 + statuses.count("loaded"), statuses.count("recovered"), statuses.count("skipped")
    assert f"{4 + len(CASES)} files: {loaded} loaded, {recovered} recovered, {skipped} skipped" in out
    report = {r["name"]: r for r in json.loads((tmp_path / "prep" / "report.json").read_text())["files"]}
    for name, (file, _, status, words) in CASES.items():
        entry = report[file]
        assert entry["status"] == status and words in entry["reason"], (name, entry)
        assert (entry["reason"] == "") == (status == "loaded"), name
        if status != "loaded":
            assert f"  {status} {file}: {entry['reason']}" in out
    assert all(report[f"piece{i:02d}.mid"]["status"] == "loaded" for i in range(4))

    printed = run(["inspect", folder, "--json", tmp_path / "inspect.json"]).output
    result = json.loads((tmp_path / "inspect.json").read_text())
    entries = {e["name"]: e for e in result["files"]}
    assert {n: (e["status"], e["reason"]) for n, e in entries.items()} == {
        n: (r["status"], r["reason"]) for n, r in report.items()
    }
    assert all(set(e) == {"name", "path", "status", "reason", *FIELDS} for e in entries.values())
    assert {k: entries["karaoke.kar"][k] for k in FIELDS} == {
        "format": 1,
        "tracks": 2,
        "instruments": [0, 32],
        "drums": False,
        "notes": GOOD_NOTES,
        "duration": 4.0,
        "tempo_changes": 0,
        "time_signature": "4/4",
    }
    assert entries["format2.mid"]["format"] == 2 and entries["format2.mid"]["duration"] == 8.0  # one after the other
    assert entries["drums.mid"]["drums"] is True and entries["drums.mid"]["instruments"] == []
    assert entries["readme.mid"]["format"] is None and entries["readme.mid"]["notes"] is None
    summary = result["summary"]
    assert summary["skipped_by_reason"] == {
        "no notes": 1,
        "only drum notes": 1,
        "too long": 1,
        "too large": 1,
        "not a MIDI file": 1,
        "empty file": 1,
    }
    counts = (summary["files"], summary["loaded"], summary["recovered"], summary["skipped"])
    assert counts == (4 + len(CASES), loaded, recovered, skipped)
    assert f"{4 + len(CASES)} files: {loaded} loaded, {recovered} recovered, {skipped} skipped" in printed
    assert "format2.mid" in printed and "  1 skipped: too large" in printed


def random_track(rng, events: int) -> bytes:
    """A clean track body of `events` random channel events in blocks sharing a status byte (a third of
    the blocks with running status, sometimes carried across a meta event), delta times of 1 to 4 bytes
    (some with first bytes 0xC0-0xDF, which look like program-change status bytes), and meta and sysex
    events in between."""
    body, status, after_meta = b"", 0, False
    while events > 0:
        block = rng.randint(1, 12)
        carried = after_meta and status and rng.random() < 0.5  # no status byte at all: still the one before the meta
        status = status if carried else rng.choice([0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0]) | rng.randrange(16)
        running = carried or rng.random() < 0.3
        for i in range(block):
            delta = rng.choice(
                [
                    0,
                    0,
                    rng.randrange(128),
                    rng.randrange(128, 2**14),
                    rng.randrange(8192, 12288),
                    rng.randrange(2**14, 2**21),
                    rng.randrange(2**21, 2**23),
                ]
            )
            data = bytes(rng.randrange(128) for _ in range(1 if 0xC0 <= status < 0xE0 else 2))
            body += vlq(delta) + (b"" if running and (i or carried) else bytes([status])) + data
        events -= block
        after_meta = rng.random() < 0.1
        if after_meta:
            body += rng.choice([tempo(rng.uniform(30, 240)), b"\x00\xff\x01\x05hello", b"\x00\xf0\x03\x7e\x7f\xf7"])
    return body


def parse_both(data: bytes, max_events: int = 1_000_000, monkeypatch=None):
    """smf.parse(build=False) as it runs (the quick check first) and with the event loop only."""

    def outcome():
        try:
            p = smf_reader.parse(data, build=False, max_events=max_events)
            return p.format, p.ticks_per_quarter, p.ticks, dict(p.problems), p.truncated, p.note_ons
        except smf_reader.TooManyEvents:
            return "too many events"

    quick = outcome()
    with monkeypatch.context() as m:
        m.setattr(smf_reader._Reader, "quick_track", lambda self, pos, end: None)
        return quick, outcome()


def test_quick_check_agrees_with_the_event_loop(monkeypatch):
    import random

    accepted = []
    real = smf_reader._Reader.quick_track

    def recording(self, pos, end):
        result = real(self, pos, end)
        accepted.append(result is not None)
        return result

    monkeypatch.setattr(smf_reader._Reader, "quick_track", recording)
    rng = random.Random(7)
    files = [smf([chunk(random_track(rng, n)) for n in (3, 40, 900, 2500)], tpq=96) for _ in range(12)]
    files += [path.read_bytes() for path in sorted(bundled_corpus().glob("*.mid"))[::20]]
    files += [path.read_bytes() for path in sorted(bundled_corpus("quartets").glob("*.mid"))[::10]]
    for data in files:
        accepted.clear()
        quick, loop = parse_both(data, monkeypatch=monkeypatch)
        assert quick == loop and not quick[3] and all(accepted)  # clean: every track took the quick check
        reader = smf_reader._Reader(data, False, 10**9)
        reader.read()
        for limit in (reader.events, reader.events - 1, 50):  # the same event count: a limit passes or fails alike
            quick, loop = parse_both(data, limit, monkeypatch)
            assert quick == loop and (quick == "too many events") == (limit < reader.events)
    # bytes after the end-of-track event of a chunk whose length fits: the quick check reads the track, then
    # hands it to the event loop (are notes after it?), which counts the bytes it looks at against the event
    # budget, the tracks before it included, and drops them when no note follows: the same verdict both ways
    body = notes(MELODY) + EOT
    padded = smf([chunk(notes(BASS)), b"MTrk" + (len(body) + 20).to_bytes(4, "big") + body + b"\0" * 20])
    for limit in range(20, 80):
        quick, loop = parse_both(padded, limit, monkeypatch)
        assert quick == loop, limit
    assert quick == loop and not quick[3]
    # damaged: the loop decides, the same way
    for name in (
        "data byte > 127",
        "truncated track",
        "wrong chunk length",
        "missing end-of-track",
        "bad running status",
    ):
        quick, loop = parse_both(CASES[name][1], monkeypatch=monkeypatch)
        assert quick == loop and quick[3], name


def test_recovery_finds_at_least_the_notes_mido_finds():
    """The three kinds of file that used to lose music: over the length limit (51,619 quarter notes
    against 50,000; 480 qpm so that the seconds limit is not reached), notes after an early end-of-track
    event, track chunks without their MThd header. Each is recovered, with at least mido's notes inside the limit."""
    mido = pytest.importorskip("mido")
    import io

    long_piece = smf([chunk(tempo(480) + notes([60, 64, 67] * 17_206 + [60], step=480))])
    early_eot = smf([chunk(notes(MELODY[:4]) + EOT + notes([67] * 3113))])
    headless = GOOD[14:]
    for data, expected, words in (
        (long_piece, 50_000, "truncated to the first 50,000 quarter notes (the file has 51,619"),
        (early_eot, 3117, "3113 notes after an early end-of-track event read"),
        (headless, GOOD_NOTES, "no MThd header"),
    ):
        score, note, _ = read_score_bytes(data)
        assert words in note and score.note_num() == expected, note
        try:
            found = sum(
                m.type == "note_on" and m.velocity > 0 for t in mido.MidiFile(file=io.BytesIO(data)).tracks for m in t
            )
        except (OSError, EOFError, ValueError):
            found = 0  # mido refuses the headless file
        within = min(found, expected) if data is long_piece else found
        assert score.note_num() >= within
    # padding after end-of-track (no notes) changes nothing: read by symusic, as it says
    padded = smf([b"MTrk" + (len(notes(MELODY)) + 4 + 20).to_bytes(4, "big") + notes(MELODY) + EOT + b"\0" * 20])
    score, note, _ = read_score_bytes(padded)
    assert note == "" and score.note_num() == len(MELODY)
