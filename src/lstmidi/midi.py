"""Reading MIDI files: `load_score(path)` returns a symusic Score or raises `MidiError(path: reason)`.

Reading is lenient (`read_score_lenient` says how a file was read). In order:
1. the bytes, at most `Limits.max_bytes`; the file's name does not matter (`.kar`, `.rmi`, none);
2. a RIFF RMID wrapper, or junk before `MThd`, is cut off;
3. lstmidi.smf checks every event (symusic crashes on some damage, e.g. data bytes > 127, so it only
   sees files that pass; smf.py says how the check is kept fast); a clean file is parsed by symusic;
   a damaged one, one that symusic rejects, and format 2 (its tracks laid one after another in time) are read by
   lstmidi.smf, which keeps every note it can read;
4. limits against hostile files: number of events, length in quarter notes and in seconds; a file over
   one is read up to it (the fallback reader stops there, so ticks stay inside symusic's int32) and its
   note says it was truncated;
5. track chunks without an MThd header get one (format 1, GUESSED_DIVISION ticks per quarter).
A file with nothing usable raises MidiError with the reason.

Track handling (after parsing): `tracks="merge"` (default) merges all pitched tracks into one,
`tracks="all"` keeps every track as it is (for encodings that keep instruments apart),
`tracks="melody"` keeps only the pitched track with the most notes (ties: the lowest index; never a
drum track, whatever `drums` says), `tracks=N` keeps only track N; drum tracks are dropped unless
`drums=True`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from symusic import Note, Score, Track

from . import smf
from .errors import MidiError

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")  # what folders are searched for; reading ignores names


@dataclass(frozen=True)
class Limits:
    """Bounds against hostile files; a file past one is truncated to the part inside it (skipped when no
    note is left there)."""

    max_bytes: int = 16 * 2**20  # file size
    max_events: int = 1_000_000  # MIDI events (plus skipped junk bytes)
    max_quarters: int = 50_000  # length in quarter notes (keeps ticks inside symusic's int32)
    max_seconds: float = 3 * 3600.0  # length in seconds


LIMITS = Limits()


class Reading(NamedTuple):
    """A file read leniently: the tick Score, how it was recovered ('' when read as it is), its format."""

    score: Score
    note: str
    format: int


def read_score_lenient(path: str | Path, limits: Limits = LIMITS) -> Reading:
    """Read a MIDI file, repairing what can be repaired; raises MidiError naming the file and the reason."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise MidiError(f"{path}: is a folder, not a MIDI file")
        if not stat.S_ISREG(info.st_mode):
            raise MidiError(f"{path}: not a regular file")
        if info.st_size > limits.max_bytes:
            raise _too_large(path, info.st_size, limits)
        with path.open("rb") as f:  # (asking for max_bytes + 1 at once would allocate that much for every file)
            data = f.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew since: up to the limit, to tell if it is over
                data += f.read(limits.max_bytes + 1 - len(data))
    except FileNotFoundError:
        raise MidiError(f"{path}: file not found") from None
    except OSError as err:
        raise MidiError(f"{path}: cannot read ({err.strerror})") from None
    return read_score_bytes(data, str(path), limits)


def read_score_bytes(data: bytes, source: str = "<bytes>", limits: Limits = LIMITS) -> Reading:
    """`read_score_lenient` for bytes in memory; `source` names them in errors."""
    if not data:
        raise MidiError(f"{source}: empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise _too_large(source, len(data), limits)
    data, cut = _midi_part(data, source)
    if len(data) < smf.HEADER_BYTES:
        raise MidiError(f"{source}: truncated MIDI file (header shorter than {smf.HEADER_BYTES} bytes)")
    over = ""  # which limit the file is over: then only the part inside it is read
    try:
        check = smf.parse(data, build=False, max_events=limits.max_events)
    except smf.TooManyEvents:
        over = f"more than {limits.max_events:,} events"
        check = None
    max_ticks = None
    if check is not None:
        quarters = check.ticks / check.ticks_per_quarter
        if quarters > limits.max_quarters:
            over = f"{quarters:,.0f} quarter notes"
            max_ticks = limits.max_quarters * check.ticks_per_quarter  # ticks stay inside symusic's int32
    rejected = ""
    if not over and not check.problems and check.format != 2:
        try:
            score = Score.from_midi(data)
        except (RuntimeError, ValueError) as err:  # symusic: RuntimeError from MiniMidi, ValueError on bad values
            rejected = str(err).removeprefix("MiniMidi: ").removesuffix(": iostream error")
        else:
            if score.note_num() >= check.note_ons:
                return _checked(Reading(score, cut, check.format), source, limits)
            # else symusic dropped notes that never get a note-off: the fallback reader ends them at the track's end
    parsed = smf.parse(data, max_events=limits.max_events, max_ticks=max_ticks, keep_within=True)
    if max_ticks is not None:
        parsed.score = _truncate(parsed.score, max_ticks)  # format 2's tracks in a row can reach past it
    how = parsed.describe() or (f"symusic: {rejected}" if rejected else "")
    if over:
        kept = (
            f"the first {limits.max_quarters:,} quarter notes"
            if max_ticks is not None
            else f"the first {limits.max_events:,} events"
        )
        if not parsed.score.note_num():
            raise MidiError(f"{source}: too long ({over}; no notes in {kept}, the limit)")
        how = "; ".join(filter(None, [f"truncated to {kept} (the file has {over})", how]))
    elif parsed.problems and not parsed.score.note_num():
        kind = "truncated MIDI file" if parsed.truncated else "damaged MIDI file"
        raise MidiError(f"{source}: {kind} ({how}; no notes could be read)")
    note = "; ".join(filter(None, [cut, how and f"read by the fallback reader: {how}"]))
    return _checked(Reading(parsed.score, note, parsed.format), source, limits)


def _too_large(source, size: int, limits: Limits) -> MidiError:
    return MidiError(f"{source}: too large ({size / 2**20:.1f} MB; the limit is {limits.max_bytes / 2**20:g} MB)")


GUESSED_DIVISION = 480  # ticks per quarter assumed for track chunks found without their header (mido's default)


def _midi_part(data: bytes, source: str) -> tuple[bytes, str]:
    """The bytes from `MThd` on, and what was cut off before them ('' if nothing). Track chunks without
    an MThd header get one (format 1, GUESSED_DIVISION ticks per quarter)."""
    if data.startswith(b"MThd"):
        return data, ""
    start = data.find(b"MThd")
    if start < 0:
        track = data.find(b"MTrk")
        if track < 0 or len(data) - track < 8:
            raise MidiError(f"{source}: not a MIDI file (no MThd header)")
        count = min(data.count(b"MTrk", track), 0xFFFF)
        header = (
            b"MThd"
            + (6).to_bytes(4, "big")
            + (1).to_bytes(2, "big")
            + count.to_bytes(2, "big")
            + GUESSED_DIVISION.to_bytes(2, "big")
        )
        skipped = f", {track} bytes before them cut" if track else ""
        return header + data[track:], (
            f"no MThd header: its {count} track chunk{'s' * (count != 1)} read as format 1 "
            f"at {GUESSED_DIVISION} ticks per quarter (a guess){skipped}"
        )
    if data.startswith(b"RIFF") and data[8:12] == b"RMID":
        size = int.from_bytes(data[16:20], "little")
        end = start + size if data[12:16] == b"data" and start == 20 and start + size <= len(data) else len(data)
        return data[start:end], "RIFF RMID wrapper removed"
    return data[start:], f"cut {start} junk bytes before MThd"


def _checked(reading: Reading, source: str, limits: Limits) -> Reading:
    """`reading` cut to the length limits (quarter notes, then seconds), saying so in its note; MidiError
    when no note is left inside them."""
    score, cuts, over = reading.score, [], ""
    quarters = score.end() / score.ticks_per_quarter
    if quarters > limits.max_quarters:
        score = _truncate(score, limits.max_quarters * score.ticks_per_quarter)
        over = f"{quarters:,.0f} quarter notes; no notes in the first {limits.max_quarters:,}, the limit"
        cuts.append(f"truncated to the first {limits.max_quarters:,} quarter notes (the file has {quarters:,.0f})")
    seconds = score_seconds(score)
    if seconds > limits.max_seconds:
        score = _truncate(score, tick_at_seconds(score, limits.max_seconds))
        over = f"{seconds:,.0f} seconds; no notes in the first {limits.max_seconds:,.0f}, the limit"
        cuts.append(f"truncated to the first {limits.max_seconds:,.0f} seconds (the file has {seconds:,.0f})")
    if not cuts:
        return reading
    if not score.note_num():
        raise MidiError(f"{source}: too long ({over})")
    return Reading(score, "; ".join(filter(None, [reading.note, *cuts])), reading.format)


def _truncate(score: Score, end: int) -> Score:
    """`score` up to tick `end`: later notes and events dropped, notes still sounding there end there."""
    if score.end() <= end:
        return score
    out = score.clip(0, end, clip_end=False)  # notes that start before `end`, and the events before it
    for track in out.tracks:
        if len(track.notes):
            n = track.notes.numpy()
            duration = np.minimum(n["duration"], end - n["time"]).astype(n["duration"].dtype)
            track.notes = Note.from_numpy(n["time"], duration, n["pitch"], n["velocity"])
    return out


def tick_at_seconds(score: Score, seconds: float) -> int:
    """The tick of a tick Score that is `seconds` from its start, through its tempo map (120 qpm before the
    first tempo)."""
    tpq, elapsed, time, mspq = score.ticks_per_quarter, 0.0, 0, 500_000
    for tempo in score.tempos:
        step = (tempo.time - time) * mspq / tpq / 1e6
        if elapsed + step >= seconds:
            break
        elapsed, time, mspq = elapsed + step, tempo.time, tempo.mspq
    return time + int((seconds - elapsed) * 1e6 * tpq / mspq)


def score_seconds(score: Score) -> float:
    """Length of a tick Score in seconds (its last note or event end), through its tempo map (120 qpm before
    the first tempo)."""
    end, tpq = score.end(), score.ticks_per_quarter
    seconds, time, mspq = 0.0, 0, 500_000
    for tempo in score.tempos:
        if tempo.time >= end:
            break
        seconds += (tempo.time - time) * mspq / tpq / 1e6
        time, mspq = tempo.time, tempo.mspq
    return seconds + (end - time) * mspq / tpq / 1e6


def read_score(path: str | Path) -> Score:
    """Parse a file into a tick Score (leniently), or raise MidiError naming the file and the reason."""
    return read_score_lenient(path).score


def select_tracks(score: Score, tracks: str | int = "merge", drums: bool = False, *, source: str = "score") -> Score:
    """Keep the wanted tracks of `score` (see module doc); raises MidiError if no notes remain."""
    all_tracks = list(score.tracks)
    if isinstance(tracks, int):
        if not 0 <= tracks < len(all_tracks):
            listing = ", ".join(f"{i}: {t.name or 'unnamed'} ({len(t.notes)} notes)" for i, t in enumerate(all_tracks))
            raise MidiError(f"{source}: no track {tracks} (tracks: {listing or 'none'})")
        chosen = [all_tracks[tracks]]
    elif tracks == "melody":
        pitched = [t for t in all_tracks if not t.is_drum and len(t.notes)]
        # max() returns the first of equal maxima, so ties go to the lowest track index
        chosen = [max(pitched, key=lambda t: len(t.notes))] if pitched else []
    else:
        chosen = [t for t in all_tracks if drums or not t.is_drum]
    chosen = [t for t in chosen if len(t.notes)]
    if not chosen:
        has_drums = any(t.is_drum and len(t.notes) for t in all_tracks)
        reason = "no notes"
        if has_drums and tracks == "melody":
            reason = "only drum notes (a melody track must be pitched)"
        elif has_drums and not drums:
            reason = "only drum notes (drums are off)"
        raise MidiError(f"{source}: {reason}")
    out = Score(score.ticks_per_quarter)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    if tracks == "merge" and len(chosen) > 1:  # "all" keeps them apart
        pitched = [t for t in chosen if not t.is_drum]
        merged = Track(name="merged", program=pitched[0].program if pitched else 0, is_drum=not pitched)
        for t in pitched or chosen:
            merged.notes.extend(t.notes)
            merged.pedals.extend(t.pedals)
            merged.controls.extend(t.controls)
        merged.sort()
        out.tracks.append(merged)
        out.tracks.extend(t for t in chosen if t.is_drum and pitched)
    else:
        out.tracks.extend(t.copy() for t in chosen)
    return out


def load_score(path: str | Path, tracks: str | int = "merge", drums: bool = False) -> Score:
    """Read `path` leniently and select tracks; raises MidiError('<path>: <reason>') for anything unusable."""
    return select_tracks(read_score(path), tracks, drums, source=str(path))
