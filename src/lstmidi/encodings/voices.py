"""`voices`: four-part music (soprano, alto, tenor, bass) on a beat grid, one token per voice and frame.

A piece is an int array (frames, 5): columns 0-3 hold the token of each voice (S, A, T, B), column 4 the
frame's position inside its beat (0 .. steps_per_quarter - 1). A voice token is REST (0), HOLD (1: the
voice's note goes on) or a pitch (2 + pitch - low): a note is its pitch token followed by HOLDs. This is
DeepBach's representation (Hadjeres et al., 2017); its fermatas are not here because MIDI files do not
carry them.

The four voices are the tracks named Soprano, Alto, Tenor and Bass (or S, A, T, B; "Soprano 1" counts as
the soprano, a second soprano is left out); otherwise the four pitched tracks from highest to lowest mean
pitch. A voice is one line: where notes of a track overlap, the later onset ends the earlier note.
`fit` learns each voice's range from the training pieces: the vocabulary covers the union, sampling and
transposition keep each voice inside its own.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator
from symusic import Note, Score, Tempo, TimeSignature, Track

from ..errors import LstmidiError, MidiError
from .base import Encoding, EncodingParams

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
SHORT = ("S", "A", "T", "B")
REST, HOLD, FIRST_PITCH = 0, 1, 2
BASS = 3  # the bass's column
DECODE_TPQ = 480
VELOCITY = 80


class VoicesParams(EncodingParams):
    steps_per_quarter: int = Field(4, ge=1, le=24, description="frames per quarter note; 4 = 16th notes")
    low: int = Field(28, ge=0, le=127, description="lowest MIDI pitch in the vocabulary")
    high: int = Field(96, ge=0, le=127, description="highest MIDI pitch in the vocabulary")
    qpm: float = Field(80.0, gt=0, le=1000, description="tempo of music made from scratch (fitted: the median)")
    ranges: list[tuple[int, int]] | None = Field(
        None, description="fitted: the (lowest, highest) pitch of each voice, S A T B, in the training pieces"
    )
    program: int = Field(52, ge=0, le=127, description="General MIDI program of decoded voices (52: choir aahs)")

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.ranges is not None and (
            len(self.ranges) != 4 or any(not self.low <= a <= b <= self.high for a, b in self.ranges)
        ):
            raise ValueError(f"ranges must be 4 (low, high) pairs inside [{self.low}, {self.high}], got {self.ranges}")
        return self


def voice_index(name: str) -> int | None:
    """0-3 for a track named as a voice ("Soprano", "soprano 1", "S", "Bass\\rContinuo"), None otherwise."""
    words = name.replace("\r", " ").replace("\n", " ").strip().lower().split()
    if not words:
        return None
    first = words[0]
    for i, (full, short) in enumerate(zip(VOICES, SHORT, strict=True)):
        if first == full.lower() or first == short.lower():
            return i if len(words) == 1 or words[1] in ("1", "i") or not words[1].isdigit() else None
    return None


def voice_tracks(score: Score) -> list[int]:
    """Indices of the soprano, alto, tenor and bass tracks of a Score (see the module doc); MidiError
    otherwise."""
    pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
    named: dict[int, int] = {}  # a voice's track counts even when it is empty
    for i, track in enumerate(score.tracks):
        v = voice_index(track.name)
        if v is not None and v not in named and not track.is_drum:
            named[v] = i
    if len(named) == 4:
        return [named[v] for v in range(4)]
    if len(pitched) == 4:
        return sorted(pitched, key=lambda i: -float(score.tracks[i].notes.numpy()["pitch"].mean()))
    raise MidiError(
        f"not four voices: needs tracks named Soprano, Alto, Tenor and Bass, or exactly four pitched tracks "
        f"(found {len(pitched)} pitched tracks)"
    )


class Voices(Encoding):
    name = "voices"
    kind = "voices"
    Params = VoicesParams
    augments = True  # transposition, each voice kept inside its range
    from_scratch = True  # composes from nothing (Gibbs sampling), not after an excerpt
    needs_fit = True  # the voice ranges and the tempo

    @property
    def is_fitted(self) -> bool:
        return self.params.ranges is not None

    @property
    def vocab(self) -> int:
        return FIRST_PITCH + self.params.high - self.params.low + 1

    @property
    def sizes(self) -> dict[str, int]:
        return {"voices": 4, "vocab_size": self.vocab, "positions": self.params.steps_per_quarter}

    @property
    def seconds_per_step(self) -> float:
        return 60.0 / self.params.qpm / self.params.steps_per_quarter

    def steps_for_seconds(self, seconds: float) -> int:
        return max(1, int(round(seconds / self.seconds_per_step)))

    def describe(self) -> str:
        p = self.params
        ranges = (
            ", ".join(f"{s} {a}-{b}" for s, (a, b) in zip(SHORT, p.ranges, strict=True)) if p.ranges else "not fitted"
        )
        return (
            f"four voices on a grid of {p.steps_per_quarter} steps per beat, {self.vocab} tokens per voice ({ranges})"
        )

    def positions(self, frames: int, first: int = 0) -> np.ndarray:
        """(frames,) the position in the beat of frames first .. first + frames - 1 (column 4)."""
        return (np.arange(first, first + frames) % self.params.steps_per_quarter).astype(np.int64)

    # ---- ranges ---------------------------------------------------------------------------
    def voice_ranges(self) -> list[tuple[int, int]]:
        """(lowest, highest) MIDI pitch of each voice: the fitted ranges, else the vocabulary's."""
        p = self.params
        return [tuple(r) for r in p.ranges] if p.ranges else [(p.low, p.high)] * 4

    def allowed_tokens(self) -> np.ndarray:
        """(4, vocab) bool: the tokens each voice may take: REST, HOLD and the pitches of its range."""
        out = np.zeros((4, self.vocab), bool)
        out[:, [REST, HOLD]] = True
        for v, (a, b) in enumerate(self.voice_ranges()):
            out[v, FIRST_PITCH + a - self.params.low : FIRST_PITCH + b - self.params.low + 1] = True
        return out

    def end_on_chord(self, allowed: np.ndarray, start: int, voices, chord: set[int], root: int) -> bool:
        """Limit `allowed` (frames, 4, vocab) so that each of `voices` strikes a pitch of `chord` (pitch
        classes; the bass the `root`) at frame `start` and holds it to the end. False, with `allowed`
        unchanged, when a voice's tokens there hold no such pitch."""
        token = np.arange(self.vocab)
        pitch_class = (token - FIRST_PITCH + self.params.low) % 12
        notes = (token >= FIRST_PITCH) & np.isin(pitch_class, sorted(chord))
        strikes = {v: allowed[start, v] & (notes & (pitch_class == root) if v == BASS else notes) for v in voices}
        if not all(strike.any() for strike in strikes.values()):
            return False
        for v, strike in strikes.items():
            allowed[start, v] = strike
            allowed[start + 1 :, v] &= token == HOLD
        return True

    def fit(self, scores: list[Score]) -> Voices:
        lows, highs, tempos = [127] * 4, [0] * 4, []
        for score in scores:
            try:
                tracks = voice_tracks(score)
            except MidiError:
                continue  # not four voices: it will be skipped when encoded
            for i, track in enumerate(tracks):
                pitches = score.tracks[track].notes.numpy()["pitch"]
                if len(pitches):
                    lows[i], highs[i] = min(lows[i], int(pitches.min())), max(highs[i], int(pitches.max()))
            tempos.extend(t.qpm for t in score.tempos[:1])
        p = self.params
        if min(highs) == 0:
            raise LstmidiError("the training pieces do not have notes in all four voices (Soprano, Alto, Tenor, Bass)")
        ranges = [(max(min(a, p.high), p.low), max(min(b, p.high), p.low)) for a, b in zip(lows, highs, strict=True)]
        self.params = p.model_copy(update={"ranges": ranges, "qpm": float(np.median(tempos)) if tempos else p.qpm})
        return self

    # ---- notes -> voice spans (shared by encode and quantize) --------------------------------
    def grid(self, time, duration) -> tuple[np.ndarray, np.ndarray]:
        """Note times and lengths in quarter notes -> (first frame, end frame) on the grid, at least one frame."""
        spq = self.params.steps_per_quarter
        time, duration = np.asarray(time, np.float64), np.asarray(duration, np.float64)
        start = np.rint(time * spq).astype(np.int64)
        return start, np.maximum(np.rint((time + duration) * spq).astype(np.int64), start + 1)

    @staticmethod
    def one_line(notes) -> list[tuple[int, int, int]]:
        """(pitch, first frame, end frame) notes in onset order -> one line: of notes sharing an onset the
        first is kept, and a later onset ends the note before it."""
        line: list[tuple[int, int, int]] = []
        for pitch, a, b in notes:
            if line and a == line[-1][1]:
                continue
            if line and a < line[-1][2]:
                line[-1] = (line[-1][0], line[-1][1], a)
            line.append((int(pitch), int(a), int(b)))
        return line

    def put(self, x: np.ndarray, voice: int, line: list[tuple[int, int, int]]) -> None:
        """Write a line's notes into column `voice` of frames `x`: the pitch token at each onset, HOLD after."""
        for pitch, a, b in line:
            x[a, voice] = FIRST_PITCH + pitch - self.params.low
            x[a + 1 : b, voice] = HOLD

    def _spans(self, score: Score) -> list[list[tuple[int, int, int]]]:
        """Per voice: (pitch, first frame, end frame) of its notes on the grid, one line (no overlaps; of a
        chord in one voice its highest note), pitches outside [low, high] left out."""
        p = self.params
        quarters = score.to("quarter")
        out = []
        for track in voice_tracks(score):
            n = quarters.tracks[track].notes.numpy()
            keep = (n["pitch"] >= p.low) & (n["pitch"] <= p.high)
            start, end = self.grid(n["time"][keep], n["duration"][keep])
            pitch = n["pitch"][keep]
            order = np.lexsort((-pitch, start))  # by onset; at one onset the highest pitch
            out.append(self.one_line(zip(pitch[order].tolist(), start[order].tolist(), end[order].tolist())))
        return out

    # ---- the contract -----------------------------------------------------------------------
    def encode(self, score: Score) -> np.ndarray:
        """Score -> int16 array (frames, 5): S A T B tokens and the position in the beat."""
        spans = self._spans(score)
        frames = max((line[-1][2] for line in spans if line), default=0)
        out = np.zeros((frames, 5), np.int16)
        for v, line in enumerate(spans):
            self.put(out, v, line)
        out[:, 4] = self.positions(frames)
        return out

    def decode(self, array: np.ndarray) -> Score:
        """(frames, 5) -> a Score with four tracks named Soprano, Alto, Tenor and Bass. A HOLD with no
        note to hold (after a REST, or first) is a rest."""
        arr = np.asarray(array)
        if arr.ndim != 2 or arr.shape[1] != 5:
            raise ValueError(f"voices.decode: expected (frames, 5), got {arr.shape}")
        spans = []
        for v in range(4):
            line, current = [], None  # current: [pitch, first frame]
            for t, token in enumerate(arr[:, v].tolist()):
                if token == HOLD and current is not None:
                    continue
                if current is not None:
                    line.append((current[0], current[1], t))
                current = [self.params.low + token - FIRST_PITCH, t] if token >= FIRST_PITCH else None
            if current is not None:
                line.append((current[0], current[1], len(arr)))
            spans.append(line)
        return self._score(spans)

    def quantize(self, score: Score) -> Score:
        return self._score(self._spans(score))

    def _score(self, spans: list[list[tuple[int, int, int]]]) -> Score:
        p = self.params
        ticks = max(1, round(DECODE_TPQ / p.steps_per_quarter))
        score = Score(ticks * p.steps_per_quarter)
        score.tempos.append(Tempo(0, qpm=p.qpm))
        score.time_signatures.append(TimeSignature(0, 4, 4))
        for name, line in zip(VOICES, spans, strict=True):
            track = Track(name=name, program=p.program, is_drum=False)
            for pitch, a, b in line:
                track.notes.append(Note(a * ticks, (b - a) * ticks, int(pitch), VELOCITY))
            score.tracks.append(track)
        return score

    def augment(
        self, steps: np.ndarray, rng: np.random.Generator, semitones: int = 0, stretch: float = 1.0
    ) -> np.ndarray:
        """Every voice moved by `semitones`, or, when a voice would leave its range (`voice_ranges`), by the
        largest shift of the same sign that keeps every voice inside (maybe 0). No tempo: `stretch` is
        ignored. `rng` is unused: the caller draws `semitones`."""
        low = self.params.low
        out = np.array(steps, copy=True)
        for v, (a, b) in enumerate(self.voice_ranges()):
            pitches = out[:, v][out[:, v] >= FIRST_PITCH].astype(np.int64) + low - FIRST_PITCH
            if len(pitches):
                semitones = (
                    min(semitones, b - int(pitches.max())) if semitones > 0 else max(semitones, a - int(pitches.min()))
                )
        semitones = max(semitones, 0) if semitones > 0 else min(semitones, 0)
        notes = out[:, :4] >= FIRST_PITCH
        out[:, :4][notes] += semitones
        return out
