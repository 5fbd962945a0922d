"""`pianoroll`: a binary piano roll, one frame per time step, one column per key (multihot).

Two clocks: equal steps in seconds (MIDInet, `step_seconds`) or a beat grid (MusicGenerator,
`steps_per_quarter`; tempo changes are ignored, the grid follows the beats). A note covers frames
[round(start/step), round(end/step)), at least one frame. A held key is one note; with `onsets=True`
a second block of columns marks the frame where each note starts, so a re-struck key decodes as two
notes. With `sustain=True` a note released while the sustain pedal is down lasts until the pedal lifts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from symusic import Note, Score, Tempo, TimeSignature, Track
from symusic.core import ScoreTick

from .base import Encoding, EncodingParams

# Decoded scores use this resolution; in seconds mode a step is SECONDS_TICKS ticks and the tempo is
# chosen so that a step lasts exactly `step_seconds`.
DECODE_TPQ = 480
SECONDS_STEPS_PER_QUARTER = 10


class PianoRollParams(EncodingParams):
    timing: Literal["beats", "seconds"] = Field(
        "beats", description="beat grid (MusicGenerator) or equal steps in seconds (MIDInet)"
    )
    steps_per_quarter: int = Field(4, ge=1, le=96, description="frames per quarter note (timing=beats); 4 = 16th notes")
    step_seconds: float = Field(0.05, gt=0, le=2, description="seconds per frame (timing=seconds)")
    qpm: float = Field(
        120.0, gt=0, le=1000, description="tempo of decoded music, quarter notes per minute (timing=beats)"
    )
    low: int = Field(21, ge=0, le=127, description="MIDI pitch of the first key (21 = A0)")
    keys: int = Field(88, ge=1, le=128, description="number of keys")
    sustain: bool = Field(False, description="extend notes held by the sustain pedal (CC 64)")
    onsets: bool = Field(False, description="add onset columns so re-struck keys stay separate notes")
    velocity: int = Field(80, ge=1, le=127, description="velocity of decoded notes")
    program: int = Field(0, ge=0, le=127, description="General MIDI program of decoded notes")

    @model_validator(mode="after")
    def _range(self):
        if self.low + self.keys > 128:
            raise ValueError(f"low + keys = {self.low + self.keys} exceeds 128 MIDI pitches")
        return self


def _pedal_intervals(track) -> list[tuple[float, float]]:
    """(down, up) times of the sustain pedal from CC 64 (value >= 64 = down); a pedal never lifted
    lasts to the end of the track."""
    cc = track.controls.numpy() if len(track.controls) else None
    if cc is None:
        return []
    sel = cc["number"] == 64
    times, values = cc["time"][sel].astype(np.float64), cc["value"][sel]
    order = np.argsort(times, kind="stable")
    intervals, down = [], None
    for t, v in zip(times[order], values[order]):
        if v >= 64 and down is None:
            down = t
        elif v < 64 and down is not None:
            intervals.append((down, t))
            down = None
    if down is not None:
        intervals.append((down, float(track.end())))
    return intervals


class PianoRoll(Encoding):
    name = "pianoroll"
    kind = "multihot"
    Params = PianoRollParams
    augments = True  # `augment` transposes only (`stretches` stays False)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def sizes(self) -> dict[str, int]:
        width = self.params.keys * (2 if self.params.onsets else 1)
        return {"input_size": width, "output_size": width}

    @property
    def seconds_per_step(self) -> float:
        p = self.params
        return p.step_seconds if p.timing == "seconds" else 60.0 / p.qpm / p.steps_per_quarter

    def steps_for_seconds(self, seconds: float) -> int:
        return max(1, int(round(seconds / self.seconds_per_step)))

    # ---- notes -> frame spans (shared by encode and quantize) -------------------------------
    def _spans(self, score: Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(key index, first frame, end frame) of every in-range pitched note; end is exclusive."""
        p = self.params
        if p.timing == "seconds":
            score, unit = score.to("second"), p.step_seconds
        else:
            score = score if isinstance(score, ScoreTick) else score.to("tick")
            unit = score.ticks_per_quarter / p.steps_per_quarter
        keys, firsts, ends = [], [], []
        for track in score.tracks:
            if track.is_drum or not len(track.notes):
                continue
            n = track.notes.numpy()
            start = n["time"].astype(np.float64)
            end = start + n["duration"].astype(np.float64)
            if p.sustain:
                for down, up in _pedal_intervals(track):
                    held = (end >= down) & (end < up)
                    end[held] = up
            a = np.rint(start / unit).astype(np.int64)
            b = np.maximum(np.rint(end / unit).astype(np.int64), a + 1)
            key = n["pitch"].astype(np.int64) - p.low
            ok = (key >= 0) & (key < p.keys)
            keys.append(key[ok]), firsts.append(a[ok]), ends.append(b[ok])
        if not keys:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        return np.concatenate(keys), np.concatenate(firsts), np.concatenate(ends)

    # ---- the contract -----------------------------------------------------------------------
    def encode(self, score: Score) -> np.ndarray:
        """Score -> uint8 array (frames, keys) or (frames, 2*keys) with onsets in the second half."""
        key, a, b = self._spans(score)
        k = self.params.keys
        frames = int(b.max()) if len(b) else 0
        roll = np.zeros((frames, self.sizes["input_size"]), np.uint8)  # (frames, keys[*2])
        length = b - a  # frames of each note: set all of them at once
        first = np.repeat(a - (np.cumsum(length) - length), length)  # + the running index = the note's frames
        roll[first + np.arange(int(length.sum())), np.repeat(key, length)] = 1
        if self.params.onsets:
            roll[a, k + key] = 1
        return roll

    def augment(
        self, roll: np.ndarray, rng: np.random.Generator, semitones: int = 0, stretch: float = 1.0
    ) -> np.ndarray:
        """Training augmentation (pure; a new array of the same shape): every key column (and its onset
        column) moved by `semitones`, or, when some sounding key would leave the keyboard, by the largest
        shift of the same sign that keeps all on it (maybe 0). A piano roll has no tempo: `stretch` is
        ignored (`stretches` is False). `rng` is unused: the caller draws `semitones`."""
        k = self.params.keys
        used = np.flatnonzero(roll[:, :k].any(0))
        if len(used):
            semitones = min(semitones, k - 1 - int(used.max())) if semitones > 0 else max(semitones, -int(used.min()))
        out = np.zeros_like(roll)
        for half in range(roll.shape[1] // k):  # held keys, then onsets
            cols = slice(half * k, (half + 1) * k)
            out[:, cols] = np.roll(roll[:, cols], semitones, axis=1)  # nothing wraps: the shift keeps keys inside
        return out

    def decode(self, array: np.ndarray) -> Score:
        """Frames -> Score (ticks). Values > 0.5 count as on; a run of on-frames is one note."""
        k = self.params.keys
        arr = np.asarray(array)
        if arr.ndim != 2 or arr.shape[1] != self.sizes["input_size"]:
            raise ValueError(f"pianoroll.decode: expected (frames, {self.sizes['input_size']}), got {arr.shape}")
        held = arr[:, :k] > 0.5  # (frames, keys)
        onset = arr[:, k:] > 0.5 if self.params.onsets else np.zeros_like(held)
        held |= onset
        spans = []
        padded = np.zeros((held.shape[0] + 2, k), np.int8)
        padded[1:-1] = held
        edges = np.diff(padded, axis=0)  # +1 where a run starts, -1 where it ends
        for kk in range(k):
            starts = np.flatnonzero(edges[:, kk] == 1)
            stops = np.flatnonzero(edges[:, kk] == -1)
            for s, e in zip(starts, stops):
                cuts = s + 1 + np.flatnonzero(onset[s + 1 : e, kk])
                bounds = [s, *cuts.tolist(), e]
                spans.extend((kk, x, y) for x, y in zip(bounds[:-1], bounds[1:]))
        return self._score(spans)

    def quantize(self, score: Score) -> Score:
        """Snap notes to the grid and merge overlapping notes of one key, note by note (no arrays)."""
        key, a, b = self._spans(score)
        spans = []
        for kk in np.unique(key):
            sel = key == kk
            order = np.lexsort((b[sel], a[sel]))
            notes = list(zip(a[sel][order].tolist(), b[sel][order].tolist()))
            cur_a, cur_b = notes[0]
            for a2, b2 in notes[1:]:
                if a2 == cur_a or (a2 <= cur_b and not self.params.onsets):
                    cur_b = max(cur_b, b2)
                elif a2 <= cur_b:  # re-struck while held: the onset column splits the note
                    spans.append((int(kk), cur_a, a2))
                    cur_a, cur_b = a2, max(cur_b, b2)
                else:
                    spans.append((int(kk), cur_a, cur_b))
                    cur_a, cur_b = a2, b2
            spans.append((int(kk), cur_a, cur_b))
        return self._score(spans)

    def _score(self, spans: list[tuple[int, int, int]]) -> Score:
        """(key, first frame, end frame) spans -> a one-track tick Score at the decode tempo."""
        p = self.params
        if p.timing == "seconds":
            ticks_per_step = DECODE_TPQ // SECONDS_STEPS_PER_QUARTER
            tpq = DECODE_TPQ
            qpm = 60.0 / (SECONDS_STEPS_PER_QUARTER * p.step_seconds)
        else:
            ticks_per_step = max(1, round(DECODE_TPQ / p.steps_per_quarter))
            tpq = ticks_per_step * p.steps_per_quarter
            qpm = p.qpm
        score = Score(tpq)
        score.tempos.append(Tempo(0, qpm=qpm))
        score.time_signatures.append(TimeSignature(0, 4, 4))
        track = Track(name="piano roll", program=p.program, is_drum=False)
        for kk, x, y in sorted(spans, key=lambda s: (s[1], s[0], s[2])):
            track.notes.append(Note(int(x) * ticks_per_step, int(y - x) * ticks_per_step, int(kk) + p.low, p.velocity))
        score.tracks.append(track)
        return score
