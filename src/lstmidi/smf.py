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
- an end-of-track event before the end of a chunk whose length fits the file does not end the track
  when notes follow it (mido reads them; symusic stops there); when none follow, it ends the track;
- bad tempo, time-signature and key-signature events are ignored; a header length other than 6, an
  unknown format (read as 1), SMPTE time (read as 60 qpm, one quarter per second) and a division of 0
  (read as 480 ticks per quarter) are repaired;
- format 2 (independent sequences): the tracks are laid one after another in time, each starting
  where the one before it ends, so the piece plays them in order as the format intends.

Tracks are split like symusic's: one per (MIDI track, channel, program), named after the MIDI track,
channel 10 is drums; tracks without notes are dropped. Work is bounded by `max_events` (events plus
skipped bytes): past it, `parse` raises TooManyEvents.

Checking (build=False) runs on every file of a corpus, so a track is first checked by `_Reader.quick_track`:
regular expressions walk its events (in C), and `_Reader._settle` then counts the events and note-ons and
sums the delta times of the usual events (2 data bytes, with or without running status) of all the
file's tracks at once, in numpy: 2.9x faster than the event loop on the bundled corpora (66 against
195 ms for their 452 files). It accepts only tracks the event loop would read without a single problem,
with the same length and event count; any other track (any damage, or something unusual such as a
4-byte delta time left open, or a running status that changes every event or two) goes through the
event loop as before, so what is reported and what reaches symusic does not change.
tests/test_lenient.py checks that the two agree.
"""

from __future__ import annotations

import re
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
    ticks: int  # length: the end of the longest track (format 2: of all tracks in a row)
    problems: Counter  # problem text -> times seen; "{n}" in a text becomes the count, "{s}" its plural s
    truncated: bool  # the file ends inside a track, or before all announced tracks
    score: Score | None = None
    cut_at_events: bool = False  # keep_within: reading stopped at max_events
    note_ons: int = 0  # note-on events (velocity > 0) read: symusic drops the notes that never end

    def describe(self) -> str:
        """The problems as one phrase, e.g. '3 data bytes > 127 clipped, track 2: no end-of-track event'."""
        return ", ".join(
            text.format(n=n, s="s" * (n != 1)) if "{n}" in text else text if n == 1 else f"{text} ({n} times)"
            for text, n in self.problems.items()
        )


@dataclass
class _Track:
    """Notes, controls and meta events of one MIDI track, in ticks from the track's start."""

    name: str = ""
    notes: dict = field(default_factory=dict)  # (channel, program) -> [(start, duration, pitch, velocity)]
    controls: dict = field(default_factory=dict)  # (channel, program) -> [(time, number, value)]
    tempos: list = field(default_factory=list)  # (time, microseconds per quarter)
    time_signatures: list = field(default_factory=list)  # (time, numerator, denominator)
    key_signatures: list = field(default_factory=list)  # (time, sharps (< 0: flats), minor 0/1)
    end: int = 0


def parse(
    data: bytes,
    *,
    build: bool = True,
    max_events: int = 1_000_000,
    max_ticks: int | None = None,
    keep_within: bool = False,
) -> Parsed:
    """Read SMF bytes that start with `MThd` and hold the 14-byte header.

    build=False only checks: `problems` lists everything this reader would repair, and `ticks` is
    known. Raises TooManyEvents past `max_events`, unless `keep_within`: then reading stops there (the
    track being read ends, later tracks are left out) and `cut_at_events` says so. `max_ticks`: every
    track ends there (notes still sounding end with it); events after it are not read.
    """
    return _Reader(data, build, max_events, max_ticks, keep_within).read()


class _Reader:
    def __init__(
        self, data: bytes, build: bool, max_events: int, max_ticks: int | None = None, keep_within: bool = False
    ):
        self.data, self.build, self.max_events, self.events = data, build, max_events, 0
        self.max_ticks, self.keep_within = max_ticks, keep_within
        self.problems: Counter = Counter()
        self.smpte = self.truncated = self.cut_at_events = False
        self.note_ons = 0
        # what the quick check leaves for _settle, which counts and sums it for the whole file at once: runs of
        # channel events with 2 data bytes (start, stop, start, stop, ...; with or without status bytes), the
        # tracks it took and where their events start, and how many other events they have (meta, sysex, ...)
        self.runs: list[int] = []
        self.quick_tracks: list[_Track] = []
        self.quick_starts: list[int] = []
        self.quick_events = 0

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
            if self.cut_at_events:
                break  # keep_within: the event budget is spent; later tracks are left out
            track, stop, ending, unended = self.track(pos + 8, limit, past_eot=fits)
            number = len(tracks) + 1
            if ending == "capped":
                pass  # max_ticks or the event budget ended it: the caller reports the truncation
            elif ending == "end-of-track":
                if not fits and stop != end:
                    problems[
                        f"track {number} chunk length wrong ({length} bytes announced, {stop - pos - 8} read)"
                    ] += 1
            elif end > len(data) and nxt < 0:
                self.truncated = True
                problems[f"track {number} truncated ({len(data) - pos - 8} of {length} bytes present)"] += 1
            elif ending == "cut":
                self.truncated = True
                problems[f"track {number}: last event cut short"] += 1
            else:
                problems[f"track {number}: no end-of-track event"] += 1
            if unended and ending != "capped":  # capped: the notes sounding at the cut end there, as they should
                problems["{n} note{s} without note-off ended at the end of the track"] += unended
            tracks.append(track)
            pos = limit
        self._settle()
        self.truncated |= len(tracks) < announced and not self.cut_at_events
        if len(tracks) != announced and not self.cut_at_events:
            problems[f"header announces {announced} track{'s' * (announced != 1)}, {len(tracks)} found"] += 1
        ends = [t.end for t in tracks]
        ticks = (sum(ends) if fmt == 2 else max(ends)) if ends else 0
        score = _build_score(tracks, tpq, sequential=fmt == 2, smpte=self.smpte) if self.build else None
        return Parsed(fmt, tpq, ticks, problems, self.truncated, score, self.cut_at_events, self.note_ons)

    def track(self, pos: int, end: int, past_eot: bool = False) -> tuple[_Track, int, str, int]:
        """Events of the track body data[pos:end] -> (track, position after its last whole event, how it
        ended: 'end-of-track', 'cut' (inside an event), 'end' (no end-of-track event) or 'capped' (at
        max_ticks, or at the event budget with keep_within), number of notes that never got a note-off).

        `past_eot` (the chunk's length fits the file, so its end is known): an end-of-track event before
        the end of the chunk does not end the track when notes follow it (mido reads them too; symusic
        stops); when none follow, the track ends at the end-of-track event as usual."""
        if not self.build and self.max_ticks is None and not self.keep_within:
            marks = len(self.runs), self.quick_events
            quick = self.quick_track(pos, end)
            if quick is not None and (not past_eot or quick[1] >= end):
                self.quick_tracks.append(quick[0])
                self.quick_starts.append(pos)
                return quick  # (bytes after its end-of-track event: the event loop looks at them)
            del self.runs[marks[0] :]
            self.quick_events = marks[1]
        self._settle()  # the tracks before count against this one's event budget, as in the event loop alone
        data, problems, build, max_ticks = self.data, self.problems, self.build, self.max_ticks
        track = _Track()
        time = status = need = clipped = count = ons = 0
        allowed = self.max_events - self.events
        programs = [0] * 16
        sounding: dict[tuple[int, int], deque] = {}  # (channel, pitch) -> deque of (start, velocity, program)
        eot = cut = capped = False
        after_eot = None  # past an early end-of-track: what to go back to if no note follows it
        notes_after = 0
        start = pos
        while pos < end:  # the hot loop (~0.3 us per event): locals only
            count += 1
            if count > allowed:
                if not self.keep_within:
                    raise TooManyEvents
                self.cut_at_events = capped = True
                count -= 1
                break
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
            if max_ticks is not None and time >= max_ticks:
                time, capped = max_ticks, True
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
                if byte & 0xF0 == 0x90 and d2:
                    ons += 1
                    if after_eot is not None:
                        notes_after += 1
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
                    if not past_eot or pos >= end or after_eot is not None:
                        break
                    # read on (do notes follow?), able to go back to here
                    after_eot = (
                        self._save(track, time, pos, clipped, count),
                        {k: deque(q) for k, q in sounding.items()},
                    )
                    continue
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
        if after_eot is not None:
            if notes_after:
                problems["{n} note{s} after an early end-of-track event read"] += notes_after
                eot = not cut
            else:  # nothing musical after it: the track ends at its end-of-track event, as it says
                time, pos, clipped, count = self._restore(track, after_eot[0])
                sounding = after_eot[1]
                eot, cut, capped = True, False, False
        self.events += count
        self.note_ons += ons
        if clipped:
            problems["{n} data byte{s} > 127 clipped"] += clipped
        if cut:
            pos = start  # the cut event is not read
        for (channel, pitch), queue in sounding.items():
            for begin, velocity, program in queue:
                track.notes.setdefault((channel, program), []).append((begin, time - begin, pitch, velocity))
        track.end = time
        ending = "capped" if capped else "end-of-track" if eot else "cut" if cut else "end"
        return track, pos, ending, sum(len(q) for q in sounding.values())

    def _save(self, track: _Track, time: int, pos: int, clipped: int, count: int) -> tuple:
        """The reading state at an early end-of-track event (see `track`), to go back to."""
        lists = {name: len(getattr(track, name)) for name in ("tempos", "time_signatures", "key_signatures")}
        notes = {key: len(v) for key, v in track.notes.items()}
        controls = {key: len(v) for key, v in track.controls.items()}
        return time, pos, clipped, count, Counter(self.problems), lists, notes, controls

    def _restore(self, track: _Track, saved: tuple) -> tuple[int, int, int, int]:
        """Back to the state `_save` kept (what was read after it dropped) -> (time, pos, clipped, count)."""
        time, pos, clipped, count, problems, lists, notes, controls = saved
        self.problems.clear()
        self.problems.update(problems)
        for name, n in lists.items():
            del getattr(track, name)[n:]
        for table, lengths in ((track.notes, notes), (track.controls, controls)):
            for key in list(table):
                if key in lengths:
                    del table[key][lengths[key] :]
                else:
                    del table[key]
        return time, pos, clipped, count

    def quick_track(self, pos: int, end: int) -> tuple[_Track, int, str, int] | None:
        """`track(pos, end)` for a clean track when checking (build=False), without the event loop; None
        when the track is not plainly clean (then the event loop reads it and names its problems).

        Accepted: channel events with data bytes < 128 (explicit or running status), meta and sysex
        events whose body fits, delta times and lengths of at most 4 bytes, ending with end-of-track;
        tempo, time and key signatures valid. Regular expressions find the runs of channel events and
        the events between them. The delta times of the usual events, with 2 data bytes, are summed by
        `_settle` (and added to the returned track's end); the others are summed here.
        """
        data, runs = self.data, self.runs
        state = 0  # data bytes of the running status: 0 (none yet), 1 or 2
        deltas = []  # delta times (VLQ bytes) of the events not left to _settle
        budget = 64 + (end - pos) // 16  # runs allowed: status that changes every event or two is left to the loop
        while True:
            start, window = pos, min(end, pos + _WINDOW)
            if state == 1:  # running status of an event with 1 data byte
                stop = _RUNNING_ONE.match(data, pos, window).end()
                deltas += _RUNNING_ONE_DELTAS.findall(data, pos, stop)
                pos = stop
            stop = _TWO_EVENTS.match(data, pos, window).end()
            if stop > pos:
                if state != 2:  # the first event needs its status byte
                    at = pos
                    while data[at] >= 0x80:
                        at += 1  # past its delta time
                    if data[at + 1] < 0x80:
                        return None  # data bytes without a status byte (or not of the one before): left to the loop
                    state = 2
                runs += (pos, stop)
                pos = stop
            if pos > start:
                budget -= 1
                if budget < 0:
                    return None
                continue
            match = _META.match(data, pos, end)
            if match is None:
                stop = _ONE_EVENTS.match(data, pos, window).end()
                if stop == pos:
                    return None  # damage, a system message, a cut event, or no end-of-track event
                deltas += _ONE_DELTAS.findall(data, pos, stop)
                state, pos = 1, stop
                continue
            delta, kind, length = match.group(1, 2, 3)
            body = match.end()
            pos = body + (length[0] if len(length) == 1 else _vlq(length, 0, len(length))[0])
            if pos > end:
                return None
            deltas.append(delta)
            if kind is not None:
                if kind == b"\x2f":
                    break
                if kind in _CHECKED_META and _meta_problem(kind[0], data[body:pos]):
                    return None
        self.quick_events += len(deltas)
        if len(_DELTA_VALUES) > 1 << 16:
            _DELTA_VALUES.clear()  # few distinct delta times are usual; a hostile file must not grow this without end
        return _Track(end=sum(map(_DELTA_VALUES.__getitem__, deltas))), pos, "end-of-track", 0

    def _settle(self) -> None:
        """Count the events and note-ons `quick_track` left to numpy and add their delta times to the ends
        of its tracks (once per file, or before a track the event loop reads); raise TooManyEvents past
        `max_events`."""
        if not self.quick_tracks:
            return
        count, ons = self.quick_events, 0
        if self.runs:
            # Runs of channel events with 2 data bytes: H{0,3} L S L L, or H{0,3} L L L with running status (H: a
            # byte >= 0x80, L: one below, S: the status byte). Each event has 3 low bytes: the last of its
            # delta time and its data bytes; the high bytes are the others of its delta time and its status.
            array = np.frombuffer(self.data, np.uint8)
            start, stop = np.array(self.runs).reshape(-1, 2).T
            edges = np.zeros(len(array) + 1, np.int8)
            edges[start] = 1
            edges[stop] -= 1  # 0 where a run starts where the one before ends
            inside = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
            high = array >= 0x80
            low = np.flatnonzero(inside & ~high)
            last, data1 = low[0::3], low[1::3]  # each event's delta time's last byte, first data byte
            count += len(last)
            before = array[data1 - 1]  # the status byte, or (running status) the delta time's last byte
            explicit = before >= 0x80
            status = np.where(explicit, np.arange(len(before)), 0)
            np.maximum.accumulate(status, out=status)  # each event's status: the last one given
            ons = int(np.count_nonzero((before[status] >> 4 == 9) & (array[low[2::3]] > 0)))
            first = inside & high
            first[data1[explicit] - 1] = False  # the high bytes that begin delta times
            ticks = _delta_ticks(array, last, first, np.array(self.quick_starts))
            for quick, extra in zip(self.quick_tracks, ticks.tolist()):
                quick.end += int(extra)
        self.runs, self.quick_tracks, self.quick_starts, self.quick_events = [], [], [], 0
        self.events += count
        if self.events > self.max_events:
            raise TooManyEvents
        self.note_ons += ons

    def meta(self, track: _Track, kind: int, body: bytes, time: int) -> None:
        problem = _meta_problem(kind, body)
        if problem:
            self.problems[problem] += 1
        elif not self.build:
            pass
        elif kind == 0x51:
            if not self.smpte:  # SMPTE time is absolute: tempo events do not apply
                track.tempos.append((time, int.from_bytes(body, "big")))
        elif kind == 0x58:
            track.time_signatures.append((time, body[0], 2 ** body[1]))
        elif kind == 0x59:
            track.key_signatures.append((time, (body[0] ^ 0x80) - 0x80, body[1]))
        elif kind == 0x03 and not track.name:
            track.name = body.decode("latin-1")


def _meta_problem(kind: int, body: bytes) -> str:
    """What is wrong with a tempo, time-signature or key-signature meta event ('' if nothing)."""
    if kind == 0x51:
        if len(body) != 3 or int.from_bytes(body, "big") == 0:
            return "bad tempo events ignored"
    elif kind == 0x58:
        if len(body) < 2 or body[0] == 0 or body[1] > 6:
            return "bad time signatures ignored"
    elif kind == 0x59:
        sharps = (body[0] ^ 0x80) - 0x80 if body else 99  # a signed byte
        if len(body) < 2 or not -7 <= sharps <= 7 or body[1] > 1:
            return "bad key signatures ignored"
    return ""


# The quick check's regular expressions. A delta time (or a length) is 0-3 bytes >= 0x80 then one < 0x80,
# so where it ends is never in doubt, and so is every event that follows: each of these matches events
# exactly as the event loop reads them. (findall, not sub: Python < 3.12 expands a sub template in Python.)
_V = rb"[\x80-\xff]{0,3}[\x00-\x7f]"  # a delta time
_D = rb"[\x00-\x7f]"  # a data byte
_TWO, _ONE = rb"[\x80-\xbf\xe0-\xef]", rb"[\xc0-\xdf]"  # status bytes of events with 2 and with 1 data bytes
_TWO_EVENTS = re.compile(rb"(?:" + _V + _TWO + rb"?" + _D + _D + rb")*+")  # events with 2 data bytes (the usual case)
_ONE_EVENTS = re.compile(rb"(?:" + _V + _ONE + _D + rb")*+")  # ... with 1 data byte (program change, channel pressure)
_RUNNING_ONE = re.compile(rb"(?:" + _V + _D + rb")*+")  # ... with running status
_ONE_DELTAS = re.compile(rb"(" + _V + rb")" + _ONE + _D)  # a run of 1-data-byte events -> their delta times
_RUNNING_ONE_DELTAS = re.compile(rb"(" + _V + rb")" + _D)  # ... with running status
_META = re.compile(rb"(" + _V + rb")(?:\xff(.)|[\xf0\xf7])(" + _V + rb")", re.DOTALL)  # delta, meta kind, length
_TAG = re.compile(rb"[\x21-\x7e]{4}")  # a chunk's tag
_WINDOW = 1 << 16  # bytes per match: the regex engine's memory grows with the events of one match


def _delta_ticks(array: np.ndarray, last: np.ndarray, first: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per track (the tracks start at `starts`), the sum of the delta times whose last bytes are at `last`
    and whose other bytes are where `first` is set."""
    where = np.flatnonzero(first)
    more = first[where + 1]
    shift = 1 + more + (more & first[where + 2])  # 7 bits per byte after it in its delta time
    value = (array[where] & 0x7F).astype(np.int64) << (7 * shift)
    total = np.zeros(len(starts), np.int64)
    np.add.at(total, np.searchsorted(starts, last, "right") - 1, array[last].astype(np.int64))
    np.add.at(total, np.searchsorted(starts, where, "right") - 1, value)
    return total


class _DeltaValues(dict):
    """Delta time bytes -> value, remembered (a dict lookup is cheaper than decoding each time)."""

    def __missing__(self, key: bytes) -> int:
        value = self[key] = _vlq(key, 0, len(key))[0]
        return value


_DELTA_VALUES = _DeltaValues()
_CHECKED_META = {b"\x51", b"\x58", b"\x59"}  # tempo, time and key signature: _meta_problem checks them


def _is_tag(tag: bytes) -> bool:
    """Chunk tags are four printable ASCII characters (MThd, MTrk, or an unknown kind to skip)."""
    return _TAG.fullmatch(tag) is not None


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


def _channel_event(
    track: _Track, status: int, d1: int, d2: int, time: int, programs: list[int], sounding: dict
) -> None:
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
