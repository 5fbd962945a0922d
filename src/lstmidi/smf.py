"""A tolerant Standard MIDI File reader (pure Python): bytes starting at `MThd` -> Score + what was wrong.

symusic's C++ parser is fast but strict, and some damage crashes it (a segfault or a double free, on
about 1 in 1,000 randomly mutated files with symusic 0.5.8). `parse(data, build=False)` walks the file
without building anything and lists its problems; midi.py hands a file to symusic only when that list
is empty, and otherwise builds the Score here with `parse(data)`. This reader never fails on bad event
data and keeps every note it can read:

- data bytes > 127 are clipped to 127 (as mido's `clip=True`); a data byte with no running status
  before it, and system messages (which do not belong in files), are skipped;
- a track chunk whose length does not fit the file is read up to its end-of-track event, or up to the
  next `MTrk`, or to the end of the file; a track cut short ends at its last whole event; junk between
  chunks is skipped;
- notes still sounding at the end of their track end there (symusic drops them);
- bad tempo, time-signature and key-signature events are ignored; a header length other than 6, an
  unknown format (read as 1), SMPTE time (read as 60 qpm, one quarter per second) and a division of 0
  (read as 480 ticks per quarter) are repaired;
- format 2 (independent sequences): the tracks are laid one after another in time, each starting
  where the one before it ends, so the piece plays them in order as the format intends.

Tracks are split like symusic's: one per (MIDI track, channel, program), named after the MIDI track,
channel 10 is drums; tracks without notes are dropped. Work is bounded by `max_events` (events plus
skipped bytes): past it, `parse` raises TooManyEvents.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from symusic import ControlChange, KeySignature, Note, Score, Tempo, TimeSignature, Track

HEADER_BYTES = 14  # "MThd", length 6, format, number of tracks, division
DATA_BYTES = (0,) * 8 + (2, 2, 2, 2, 1, 1, 2, 0)  # by status >> 4: note off/on, aftertouch, control, program, ...
SYSTEM_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1}  # the other system messages (F4-F6, F8-FE) carry no data


class TooManyEvents(Exception):
    """The file holds more than `max_events` events; reading stopped there."""


@dataclass
class Parsed:
    """What `parse` read: format, resolution, length, problems, and the Score (None when build=False)."""

    format: int
    ticks_per_quarter: int
    ticks: int            # length: the end of the longest track (format 2: of all tracks in a row)
    problems: Counter     # problem text -> times seen; "{n}" in a text becomes the count, "{s}" its plural s
    truncated: bool       # the file ends inside a track, or before all announced tracks
    score: Score | None = None

    def describe(self) -> str:
        """The problems as one phrase, e.g. '3 data bytes > 127 clipped, track 2: no end-of-track event'."""
        return ", ".join(text.format(n=n, s="s" * (n != 1)) if "{n}" in text else text if n == 1 else f"{text} ({n} times)"
                         for text, n in self.problems.items())


@dataclass
class _Track:
    """Notes, controls and meta events of one MIDI track, in ticks from the track's start."""

    name: str = ""
    notes: dict = field(default_factory=dict)     # (channel, program) -> [(start, duration, pitch, velocity)]
    controls: dict = field(default_factory=dict)  # (channel, program) -> [(time, number, value)]
    tempos: list = field(default_factory=list)    # (time, microseconds per quarter)
    time_signatures: list = field(default_factory=list)  # (time, numerator, denominator)
    key_signatures: list = field(default_factory=list)   # (time, sharps (< 0: flats), minor 0/1)
    end: int = 0


def parse(data: bytes, *, build: bool = True, max_events: int = 1_000_000) -> Parsed:
    """Read SMF bytes that start with `MThd` and hold the 14-byte header.

    build=False only checks: `problems` lists everything this reader would repair, and `ticks` is
    known. Raises TooManyEvents past `max_events`.
    """
    return _Reader(data, build, max_events).read()


class _Reader:
    def __init__(self, data: bytes, build: bool, max_events: int):
        self.data, self.build, self.max_events, self.events = data, build, max_events, 0
        self.problems: Counter = Counter()
        self.smpte = self.truncated = False

    def read(self) -> Parsed:
        data, problems = self.data, self.problems
        header_len = int.from_bytes(data[4:8], "big")
        fmt, announced, division = (int.from_bytes(data[i : i + 2], "big") for i in (8, 10, 12))
        if header_len != 6:
            problems[f"header length {header_len} read as 6"] += 1
            header_len = 6
        if fmt > 2:
            problems[f"unknown format {fmt} read as format 1"] += 1
        tpq = division
        if division & 0x8000:  # SMPTE: frames per second x ticks per frame; 1 "quarter" = 1 s at 60 qpm
            self.smpte = True
            fps = 256 - (division >> 8)
            tpq = fps * (division & 0xFF)
            problems[f"SMPTE time ({fps} frames/s) read as 60 qpm"] += 1
        if tpq == 0:
            tpq = 480
            problems["division 0 read as 480 ticks per quarter"] += 1
        tracks = []
        pos = 8 + header_len
        while pos + 8 <= len(data):
            tag, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
            end = pos + 8 + length
            fits = end == len(data) or (end + 4 <= len(data) and _is_tag(data[end : end + 4]))
            if tag != b"MTrk" and _is_tag(tag) and fits:
                pos = end  # a chunk of an unknown kind: allowed, skipped
                continue
            nxt = data.find(b"MTrk", pos + (8 if tag == b"MTrk" else 1))
            if tag != b"MTrk":
                if nxt < 0:
                    break  # trailing bytes after the last track (padding): harmless
                problems["{n} junk byte{s} between chunks skipped"] += nxt - pos
                pos = nxt
                continue
            limit = end if fits else nxt if nxt >= 0 else len(data)
            track, stop, ending, unended = self.track(pos + 8, limit)
            number = len(tracks) + 1
            if ending == "end-of-track":
                if not fits and stop != end:
                    problems[f"track {number} chunk length wrong ({length} bytes announced, {stop - pos - 8} read)"] += 1
            elif end > len(data) and nxt < 0:
                self.truncated = True
                problems[f"track {number} truncated ({len(data) - pos - 8} of {length} bytes present)"] += 1
            elif ending == "cut":
                self.truncated = True
                problems[f"track {number}: last event cut short"] += 1
            else:
                problems[f"track {number}: no end-of-track event"] += 1
            if unended:
                problems["{n} note{s} without note-off ended at the end of the track"] += unended
            tracks.append(track)
            pos = limit
        self.truncated |= len(tracks) < announced
        if len(tracks) != announced:
            problems[f"header announces {announced} track{'s' * (announced != 1)}, {len(tracks)} found"] += 1
        ends = [t.end for t in tracks]
        ticks = (sum(ends) if fmt == 2 else max(ends)) if ends else 0
        score = _build_score(tracks, tpq, sequential=fmt == 2, smpte=self.smpte) if self.build else None
        return Parsed(fmt, tpq, ticks, problems, self.truncated, score)

    def track(self, pos: int, end: int) -> tuple[_Track, int, str, int]:
        """Events of the track body data[pos:end] -> (track, position after its last whole event, how it
        ended: 'end-of-track', 'cut' (inside an event) or 'end' (no end-of-track event), number of notes
        that never got a note-off)."""
        data, problems, build = self.data, self.problems, self.build
        track = _Track()
        time = status = need = clipped = count = 0
        allowed = self.max_events - self.events
        programs = [0] * 16
        sounding: dict[tuple[int, int], deque] = {}  # (channel, pitch) -> deque of (start, velocity, program)
        eot = cut = False
        start = pos
        while pos < end:  # the hot loop (~0.3 us per event): locals only
            count += 1
            if count > allowed:
                raise TooManyEvents
            start = pos
            byte = data[pos]
            if byte < 0x80:  # one- and two-byte delta times inline: most events have them
                time += byte
                pos += 1
            elif pos + 1 < end and data[pos + 1] < 0x80:
                time += (byte & 0x7F) << 7 | data[pos + 1]
                pos += 2
            else:
                delta, pos = _vlq(data, pos, end)
                time += delta
            if pos >= end:
                cut = True
                break
            byte = data[pos]
            if byte >= 0x80:
                pos += 1
                if byte < 0xF0:
                    status, need = byte, DATA_BYTES[byte >> 4]
            elif status:
                byte = status  # running status: this byte is the first data byte
            else:
                problems["{n} data byte{s} without a status byte skipped"] += 1
                pos += 1
                continue
            if byte < 0xF0:
                if pos + need > end:
                    cut = True
                    break
                d1 = data[pos]
                d2 = data[pos + 1] if need == 2 else 0
                pos += need
                if d1 > 127 or d2 > 127:
                    clipped += (d1 > 127) + (d2 > 127)
                    d1, d2 = min(d1, 127), min(d2, 127)
                if build:
                    _channel_event(track, byte, d1, d2, time, programs, sounding)
            elif byte == 0xFF:
                length, body = _vlq(data, pos + 1, end)
                if body + length > end:
                    cut = True
                    break
                kind, pos = data[pos], body + length
                if kind == 0x2F:
                    eot = True
                    break
                self.meta(track, kind, data[body:pos], time)
            elif byte == 0xF0 or byte == 0xF7:
                length, pos = _vlq(data, pos, end)
                if pos + length > end:
                    cut = True
                    break
                pos += length
            else:
                problems["{n} system message{s} skipped"] += 1
                pos += SYSTEM_BYTES.get(byte, 0)
        self.events += count
        if clipped:
            problems["{n} data byte{s} > 127 clipped"] += clipped
        if cut:
            pos = start  # the cut event is not read
        for (channel, pitch), queue in sounding.items():
            for begin, velocity, program in queue:
                track.notes.setdefault((channel, program), []).append((begin, time - begin, pitch, velocity))
        track.end = time
        return track, pos, "end-of-track" if eot else "cut" if cut else "end", sum(len(q) for q in sounding.values())

    def meta(self, track: _Track, kind: int, body: bytes, time: int) -> None:
        problems = self.problems
        if kind == 0x51:
            mspq = int.from_bytes(body, "big")
            if len(body) != 3 or mspq == 0:
                problems["bad tempo events ignored"] += 1
            elif self.build and not self.smpte:  # SMPTE time is absolute: tempo events do not apply
                track.tempos.append((time, mspq))
        elif kind == 0x58:
            if len(body) < 2 or body[0] == 0 or body[1] > 6:
                problems["bad time signatures ignored"] += 1
            elif self.build:
                track.time_signatures.append((time, body[0], 2 ** body[1]))
        elif kind == 0x59:
            sharps = (body[0] ^ 0x80) - 0x80 if body else 99  # a signed byte
            if len(body) < 2 or not -7 <= sharps <= 7 or body[1] > 1:
                problems["bad key signatures ignored"] += 1
            elif self.build:
                track.key_signatures.append((time, sharps, body[1]))
        elif kind == 0x03 and self.build and not track.name:
            track.name = body.decode("latin-1")


def _is_tag(tag: bytes) -> bool:
    """Chunk tags are four printable ASCII characters (MThd, MTrk, or an unknown kind to skip)."""
    return len(tag) == 4 and all(0x20 < c < 0x7F for c in tag)


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable-length quantity (at most 4 bytes are read) -> (value, position after it)."""
    value = 0
    for _ in range(4):
        if pos >= end:
            break
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, pos


def _channel_event(track: _Track, status: int, d1: int, d2: int, time: int, programs: list[int],
                   sounding: dict) -> None:
    kind, channel = status & 0xF0, status & 0x0F
    if kind == 0x90 and d2 > 0:
        sounding.setdefault((channel, d1), deque()).append((time, d2, programs[channel]))
    elif kind in (0x80, 0x90):
        queue = sounding.get((channel, d1))
        if queue:  # the earliest sounding note of this pitch ends first, as in symusic
            start, velocity, program = queue.popleft()
            track.notes.setdefault((channel, program), []).append((start, time - start, d1, velocity))
    elif kind == 0xC0:
        programs[channel] = d1
    elif kind == 0xB0:
        track.controls.setdefault((channel, programs[channel]), []).append((time, d1, d2))


def _build_score(tracks: list[_Track], tpq: int, *, sequential: bool, smpte: bool) -> Score:
    """One symusic Track per (MIDI track, channel, program) with notes; format 2: tracks in a row."""
    score = Score(tpq)
    if smpte:
        score.tempos.append(Tempo(0, mspq=1_000_000))
    offset = 0
    for track in tracks:
        for time, mspq in track.tempos:
            score.tempos.append(Tempo(offset + time, mspq=mspq))
        for time, numerator, denominator in track.time_signatures:
            score.time_signatures.append(TimeSignature(offset + time, numerator, denominator))
        for time, sharps, minor in track.key_signatures:
            score.key_signatures.append(KeySignature(offset + time, sharps, minor))
        for (channel, program), notes in sorted(track.notes.items()):
            out = Track(name=track.name, program=program, is_drum=channel == 9)
            array = np.array(sorted(notes), dtype=np.int64)  # (notes, 4): start, duration, pitch, velocity
            out.notes = Note.from_numpy(array[:, 0] + offset, array[:, 1], array[:, 2], array[:, 3])
            for time, number, value in track.controls.get((channel, program), ()):
                out.controls.append(ControlChange(offset + time, number, value))
            score.tracks.append(out)
        if sequential:
            offset += track.end
    for events in (score.tempos, score.time_signatures, score.key_signatures):
        events.sort()
    return score
