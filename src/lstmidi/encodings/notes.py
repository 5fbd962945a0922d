"""`notes`: one row of real-valued fields per note — the TensorFlow tutorial's (pitch, step, duration)
and DeepLearning4Music's (pitch, velocity, step).

Rows cover the notes of all non-drum tracks in [low, high], sorted by onset then pitch; columns follow
`fields`: pitch = MIDI number, step = seconds since the previous note's onset (0 for the first note and
for the later notes of a chord), duration = seconds, velocity = 1..127. Values are in real units, not
normalised (the model scales them). Times are read in seconds (`score.to("second")`, so tempo changes
count) and rounded to `resolution`; steps are clipped to [0, max_step], durations to
[resolution, max_duration]. The first note starts at 0 (leading silence is not kept).

Decoding writes one track at 480 ticks per quarter and 120 qpm (1 s = 960 ticks). A field missing
from `fields` takes a constant: `velocity`, `duration` (seconds); without `step` each note starts
where the previous one ends. All timing is done in whole resolution steps, so `decode(encode(s))`
and `quantize(s)` agree exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from symusic import Note, Score, Tempo, TimeSignature, Track

from .base import Encoding, EncodingParams

DECODE_TPQ = 480
DECODE_QPM = 120.0
TICKS_PER_SECOND = DECODE_TPQ * DECODE_QPM / 60  # 960

FieldName = Literal["pitch", "step", "duration", "velocity"]


class NotesParams(EncodingParams):
    fields: list[FieldName] = Field(
        default_factory=lambda: ["pitch", "step", "duration"],
        description="columns of each row, in order; must include 'pitch'",
    )
    low: int = Field(21, ge=0, le=127, description="lowest kept MIDI pitch (notes outside [low, high] are dropped)")
    high: int = Field(108, ge=0, le=127, description="highest kept MIDI pitch")
    velocity: int = Field(80, ge=1, le=127, description="velocity of decoded notes when 'velocity' is not a field")
    duration: float = Field(0.25, gt=0, le=60, description="seconds per decoded note when 'duration' is not a field")
    # >= 1e-4 keeps a float32 row exact to well under half a step up to 60 s, so decode rounds back exactly
    resolution: float = Field(0.001, ge=1e-4, le=1, description="seconds: times are rounded to this grid")
    max_step: float = Field(4.0, gt=0, le=60, description="seconds: longer steps (rests) are clipped")
    max_duration: float = Field(4.0, gt=0, le=60, description="seconds: longer notes are clipped")
    notes_per_second: float = Field(
        4.0, gt=0, le=100, description="generation length estimate; generation stops on time anyway"
    )

    @model_validator(mode="after")
    def _check(self):
        if "pitch" not in self.fields:
            raise ValueError(f"fields must include 'pitch' (got {self.fields})")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must not repeat a name (got {self.fields})")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # pitch, step, duration (resolution steps), velocity


class Notes(Encoding):
    name = "notes"
    kind = "notes"
    Params = NotesParams

    @property
    def fields(self) -> list[str]:
        """Column names of the encoded rows, in order."""
        return list(self.params.fields)

    @property
    def field_index(self) -> dict[str, int]:
        """Column of each field."""
        return {f: i for i, f in enumerate(self.params.fields)}

    @property
    def sizes(self) -> dict:
        """Model sizes: row width, pitch classes, and the field names (a note model scales and heads by name)."""
        return {"input_size": len(self.params.fields), "pitch_classes": 128, "fields": list(self.params.fields)}

    def steps_for_seconds(self, seconds: float) -> int:
        """Estimated rows for `seconds` of music (`notes_per_second`), at least 1."""
        return max(1, round(seconds * self.params.notes_per_second))

    # ---- integer resolution steps: the one timing path shared by encode, decode and quantize ---------
    def _units(self, seconds: np.ndarray) -> np.ndarray:
        """Seconds -> whole resolution steps (int64)."""
        return np.rint(np.asarray(seconds, np.float64) / self.params.resolution).astype(np.int64)

    def _limits(self) -> tuple[int, int]:
        """(max step, max duration) in resolution steps; a duration is at least one step."""
        p = self.params
        return int(self._units(p.max_step)), max(1, int(self._units(p.max_duration)))

    def _rows(self, score: Score) -> Rows:
        """Kept notes of `score` in row order, times in resolution steps."""
        p = self.params
        max_step, max_dur = self._limits()
        arrays = [t.notes.numpy() for t in score.to("second").tracks if not t.is_drum and len(t.notes)]
        if not arrays:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty, empty
        n = {k: np.concatenate([a[k] for a in arrays]) for k in ("time", "duration", "pitch", "velocity")}
        keep = (n["pitch"] >= p.low) & (n["pitch"] <= p.high)
        pitch = n["pitch"][keep].astype(np.int64)
        onset = self._units(n["time"][keep])
        dur = np.clip(self._units(n["duration"][keep]), 1, max_dur)
        vel = np.clip(n["velocity"][keep].astype(np.int64), 1, 127)
        order = np.lexsort((vel, dur, pitch, onset))  # onset, then pitch (the rest only for determinism)
        pitch, onset, dur, vel = pitch[order], onset[order], dur[order], vel[order]
        step = np.clip(np.diff(onset, prepend=onset[:1]), 0, max_step)
        return pitch, step, dur, vel

    def _score(self, pitch: np.ndarray, step: np.ndarray, dur: np.ndarray, vel: np.ndarray) -> Score:
        """Rows (times in resolution steps) -> one-track tick Score; missing fields take their constants."""
        p = self.params
        if "velocity" not in p.fields:
            vel = np.full_like(pitch, p.velocity)
        if "duration" not in p.fields:
            dur = np.full_like(pitch, min(max(1, int(self._units(p.duration))), self._limits()[1]))
        if "step" not in p.fields:  # no timing of its own: each note follows the previous one
            step = np.roll(dur, 1)
            step[:1] = 0
        ticks = p.resolution * TICKS_PER_SECOND  # ticks per resolution step
        start = np.rint(np.cumsum(step) * ticks).astype(np.int64)
        length = np.maximum(np.rint(dur * ticks).astype(np.int64), 1)
        score = Score(DECODE_TPQ)
        score.tempos.append(Tempo(0, qpm=DECODE_QPM))
        score.time_signatures.append(TimeSignature(0, 4, 4))
        track = Track(name="notes", program=0, is_drum=False)
        for s, d, k, v in zip(start.tolist(), length.tolist(), pitch.tolist(), vel.tolist()):
            track.notes.append(Note(s, d, k, v))
        score.tracks.append(track)
        return score

    # ---- the contract -----------------------------------------------------------------------------
    def encode(self, score: Score) -> np.ndarray:
        """Score -> float32 array (notes, len(fields)): pitch, step s, duration s, velocity as listed."""
        pitch, step, dur, vel = self._rows(score)
        r = self.params.resolution
        columns = {"pitch": pitch, "step": step * r, "duration": dur * r, "velocity": vel}
        return np.stack([columns[f] for f in self.params.fields], axis=1).astype(np.float32)  # (notes, fields)

    def decode(self, array: np.ndarray) -> Score:
        """Rows -> Score (ticks, 1 s = 960). Accepts raw model output: values are rounded and clipped
        (pitch to [low, high], steps to [0, max_step], durations to [resolution, max_duration],
        velocity to 1..127); NaN counts as 0."""
        p = self.params
        arr = np.nan_to_num(np.asarray(array, np.float64))
        if arr.ndim != 2 or arr.shape[1] != len(p.fields):
            raise ValueError(
                f"notes.decode: expected (notes, {len(p.fields)}) with columns {p.fields}, got {arr.shape}"
            )
        max_step, max_dur = self._limits()
        col = {f: arr[:, i] for i, f in enumerate(p.fields)}
        zeros = np.zeros(len(arr))
        # clip before converting to integers so huge model outputs cannot overflow int64
        pitch = np.rint(np.clip(col["pitch"], p.low, p.high)).astype(np.int64)
        step = np.clip(self._units(np.clip(col.get("step", zeros), 0, p.max_step)), 0, max_step)
        dur = np.clip(self._units(np.clip(col.get("duration", zeros), 0, p.max_duration)), 1, max_dur)
        vel = np.rint(np.clip(col.get("velocity", zeros), 1, 127)).astype(np.int64)
        return self._score(pitch, step, dur, vel)

    def quantize(self, score: Score) -> Score:
        """The notes as rows keep them (rounded, clipped, in range, constants for missing fields)."""
        return self._score(*self._rows(score))
