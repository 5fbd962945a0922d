"""Decoding REMI and TSD token ids into a Score by miditok's own rules, without its per-token string work.

miditok's `decode` turns every id into its token string, splits each string again, and looks up every
duration in a dictionary: about 1.5 ms for a 30-second piece, and generation decodes a piece at every place
it tries to end it. `FastDecoder` reads the same tables once, per id (type, value, ticks of a TimeShift /
Duration / Rest at each beat resolution), and then walks the ids with integers only. Its rules are those of
miditok's `REMI._tokens_to_score` and `TSD._tokens_to_score` for the settings `Events` uses (no chords,
pedals, pitch bends, controls or pitch intervals; one stream with Program tokens, or one track without),
including what they do with tokens out of grammar; `tests/test_events.py` checks it score for score against
miditok on real pieces and on random ids. (miditok's TSD also moves its last note end to the current tick at
Program, Tempo and TimeSig tokens; TSD time never goes back, so that changes nothing and is left out.)
MIDI-Like and anything else go through miditok."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

# token kinds
OTHER, PITCH, VELOCITY, DURATION, TIMESHIFT, REST, PROGRAM, TEMPO, TIMESIG, BAR, POSITION = range(11)
KINDS = {
    "Pitch": PITCH,
    "PitchDrum": PITCH,
    "Velocity": VELOCITY,
    "Duration": DURATION,
    "TimeShift": TIMESHIFT,
    "Rest": REST,
    "Program": PROGRAM,
    "Tempo": TEMPO,
    "TimeSig": TIMESIG,
    "Bar": BAR,
    "Position": POSITION,
}


class FastDecoder:
    """`decode(ids)` == miditok's `tokenizer.decode` of the same ids (BOS/EOS/PAD already removed)."""

    def __init__(self, tables: dict, remi: bool, velocities: bool) -> None:
        """`tables`: the tokenizer's (eventtables); `velocities`: notes have Velocity tokens. (Without Program
        tokens every note is program 0's: one track, as miditok decodes such a stream.)"""
        self.remi, self.velocities = remi, velocities
        self.division, self.default_tempo = tables["time_division"], tables["default_tempo"]
        self.default_signature = tuple(tables["default_signature"])
        self.default_velocity = tables["default_velocity"]
        self.tpb_per_ts = {int(den): tpb for den, tpb in tables["tpb_per_ts"].items()}
        self.positions_per_beat = tables["positions_per_beat"]
        self.names = {-1: "Drums", **dict(enumerate(tables["instruments"]))}
        vocab = tables["vocab"]
        self.kind, self.value = [], []
        steps = {int(tpb): [0] * len(vocab) for tpb in tables["steps"]}
        rests = {int(tpb): [0] * len(vocab) for tpb in tables["rests"]}
        for i, token in enumerate(vocab):
            name, value = token.split("_", 1)
            kind = KINDS.get(name, OTHER)
            self.kind.append(kind)
            if kind in (PITCH, VELOCITY, PROGRAM, POSITION):
                value = int(value)
            elif kind == TEMPO:
                value = float(value)
            elif kind == TIMESIG:
                value = tuple(map(int, value.split("/")))
            elif kind in (DURATION, TIMESHIFT):
                for tpb, table in tables["steps"].items():
                    steps[int(tpb)][i] = table[value]
            elif kind == REST:
                for tpb, table in tables["rests"].items():
                    rests[int(tpb)][i] = table[value]
            self.value.append(value)
        self.steps, self.rests = steps, rests

    def decode(self, ids: list[int]) -> Score:
        notes, tempos, signatures = self._walk(ids)
        return self._score({program: self._columns(rows) for program, rows in notes.items()}, tempos, signatures)

    def prefixes(self, ids: list[int]) -> Callable[[int], Score]:
        """`lambda k: self.decode(ids[:k])` from one walk over `ids`. Decoding only looks back, but for the
        completeness of a note (its Velocity and Duration tokens) and REMI's opening time signature (the
        first TimeSig before any note token); so the first k ids decode to the notes whose tokens all lie
        before k, and the tempos and time signatures given before k. A prefix without a note token (its
        opening signature may differ) is decoded as it is."""
        notes, tempos, signatures = self._walk(ids)
        columns = {program: self._columns(rows) for program, rows in notes.items()}  # sliced for each prefix
        ends = {program: [row[-1] for row in rows] for program, rows in notes.items()}
        first_note = next((t for t, i in enumerate(ids) if self.kind[i] in (PITCH, VELOCITY, DURATION)), len(ids))

        def decode(k: int) -> Score:
            if k <= first_note:
                return self.decode(ids[:k])
            kept = {p: bisect.bisect_right(ends[p], k - 1) for p in notes}
            return self._score(
                {p: tuple(column[:n] for column in columns[p]) for p, n in kept.items() if n},
                [row for row in tempos if row[-1] < k],
                [row for row in signatures if row[-1] < k],
            )

        return decode

    def _walk(self, ids: list[int]) -> tuple[dict, list, list]:
        """The notes ({program: [(time, duration, pitch, velocity, index of its last token)]}), tempos
        ([(tick, qpm, index)]) and time signatures ([(tick, numerator, denominator, index)], REMI's opening
        one at index -1) that `ids` decode to, each in the order of its tokens."""
        kind, value = self.kind, self.value
        kinds = [kind[i] for i in ids]
        notes: dict[int, list[tuple[int, int, int, int, int]]] = {}
        tempos, signatures = [], []
        signature = None
        if self.remi:  # the first TimeSig before any note sets the opening bar (miditok reads ahead for it)
            for k, i in zip(kinds, ids):
                if k == TIMESIG:
                    signature = value[i]
                    break
                if k in (PITCH, VELOCITY, DURATION):
                    break
            signature = signature or self.default_signature
            signatures.append((0, *signature, -1))
        tick = bar_tick = last_change_tick = 0
        bar, last_change_bar = -1, 0
        tpb = self.tpb_per_ts[signature[1]] if self.remi else self.division
        per_bar = self._ticks_per_bar(signature) if self.remi else 0
        per_pos = tpb // self.positions_per_beat
        program, note_end = 0, 0
        offset = 2 if self.velocities else 1
        last = len(ids) - 1
        for t, k in enumerate(kinds):
            i = ids[t]
            if k == PITCH:
                pitch = value[i]  # always within the pitch range: out-of-range pitches have no token
                if t + offset > last:
                    continue
                if self.velocities:
                    if kinds[t + 1] != VELOCITY:
                        continue
                    velocity = value[ids[t + 1]]
                else:
                    velocity = self.default_velocity
                if kinds[t + offset] != DURATION:
                    continue
                duration = self.steps[tpb][ids[t + offset]]
                notes.setdefault(program, []).append((tick, duration, pitch, velocity, t + offset))
                note_end = max(note_end, tick + duration)
            elif k == TIMESHIFT:
                tick += self.steps[tpb][i]
            elif k == REST:
                tick = max(note_end, tick) + self.rests[tpb][i]
                if self.remi:
                    real_bar = last_change_bar + (tick - last_change_tick) // per_bar
                    if real_bar > bar:
                        bar = max(bar, 0)
                        bar_tick += (real_bar - bar) * per_bar
                        bar = real_bar
            elif k == BAR:
                bar += 1
                if bar > 0:
                    tick = bar_tick + per_bar
                bar_tick = tick
            elif k == POSITION:
                bar = max(bar, 0)
                tick = bar_tick + value[i] * per_pos
            elif k == PROGRAM:
                program = value[i]
            elif k == TEMPO:
                tempos.append((tick, value[i], t))
                note_end = max(note_end, tick)
            elif k == TIMESIG:
                if self.remi:
                    if value[i] != signature:
                        signature = value[i]
                        signatures.append((tick, *signature, t))
                        last_change_tick, last_change_bar = bar_tick, bar
                        per_bar = self._ticks_per_bar(signature)
                        tpb = self.tpb_per_ts[signature[1]]
                        per_pos = tpb // self.positions_per_beat
                else:
                    signatures.append((tick, *value[i], t))
                    tpb = self.tpb_per_ts[value[i][1]]
        return notes, tempos, signatures

    def _ticks_per_bar(self, signature: tuple[int, int]) -> int:
        return int(self.division * 4 / signature[1]) * signature[0]

    @staticmethod
    def _columns(rows: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_walk`'s note rows of one program as arrays: time, duration, pitch, velocity (not the token index)."""
        time, duration, pitch, velocity, _ = zip(*rows, strict=True)
        return (
            np.array(time, np.int32),
            np.array(duration, np.int32),
            np.array(pitch, np.int8),
            np.array(velocity, np.int8),
        )

    def _score(self, notes: dict, tempos: list, signatures: list) -> Score:
        """The Score of {program: `_columns`} with `_walk`'s tempos and time signatures."""
        score = Score(self.division)
        tracks = []
        for program, (time, duration, pitch, velocity) in notes.items():
            track = Track(name=self.names[program], program=max(program, 0), is_drum=program == -1)
            track.notes = Note.from_numpy(time=time, duration=duration, pitch=pitch, velocity=velocity)
            tracks.append(track)
        score.tracks = tracks
        score.tempos = [Tempo(t, q) for t, q, _ in tempos]
        score.time_signatures = [TimeSignature(t, n, d) for t, n, d, _ in signatures]
        if len(score.tempos) == 0 or score.tempos[0].time != 0:
            score.tempos.insert(0, Tempo(0, self.default_tempo))
        if len(score.time_signatures) == 0 or score.time_signatures[0].time != 0:
            score.time_signatures.insert(0, TimeSignature(0, *self.default_signature))
        return score
