"""`pseudonotes`: the seq2seq blog's encoding — one token per note = (pitch, velocity bin, duration bin).

Tokens cover the notes of all non-drum tracks in [low, high], in onset order (then pitch). `fit`
learns, from the training scores, quantile edges for velocity and duration (seconds, read through
`score.to("second")`), a representative value per bin (the median of the training values in it) and
the vocabulary: the (pitch, velocity bin, duration bin) combinations that occur, sorted; token id =
1 + index, and token 0 = "unknown" (a combination never seen in training).

A token has no time of its own — as in the blog, rhythm is only durations. So decoding lays the
notes out monophonically (each note starts where the previous one ends) at `qpm`, with each bin's
representative velocity and duration; chords and rests are not represented, and unknown tokens are
skipped. `quantize` builds the same layout from the notes, so `decode(encode(s)) == quantize(s)`.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator
from symusic import Note, Score, Tempo, TimeSignature, Track

from ..errors import LstmidiError
from .base import Encoding, EncodingParams

DECODE_TPQ = 480


class PseudoNotesParams(EncodingParams):
    velocity_bins: int = Field(4, ge=1, le=127, description="velocity bins (quantiles of the training velocities)")
    duration_bins: int = Field(4, ge=1, le=64, description="duration bins (quantiles of the training durations)")
    low: int = Field(21, ge=0, le=127, description="lowest kept MIDI pitch (notes outside [low, high] are dropped)")
    high: int = Field(108, ge=0, le=127, description="highest kept MIDI pitch")
    qpm: float = Field(120.0, gt=0, le=1000, description="tempo of decoded music, quarter notes per minute")
    # fitted state (set by fit; saved with the encoding so a model file needs no corpus)
    velocity_edges: list[float] | None = Field(None, description="fitted: inner velocity bin edges, ascending")
    duration_edges: list[float] | None = Field(None, description="fitted: inner duration bin edges, seconds")
    velocity_values: list[float] | None = Field(None, description="fitted: decoded velocity of each bin (median)")
    duration_values: list[float] | None = Field(
        None, description="fitted: decoded duration of each bin, seconds (median)"
    )
    vocab: list[list[int]] | None = Field(
        None, description="fitted: [pitch, velocity bin, duration bin] of token 1, 2, ..."
    )

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        state = (self.velocity_edges, self.duration_edges, self.velocity_values, self.duration_values, self.vocab)
        if any(x is None for x in state) and any(x is not None for x in state):
            raise ValueError(
                "fitted state is partial: give all of velocity_edges, duration_edges, "
                "velocity_values, duration_values and vocab, or none"
            )
        if self.vocab is not None and (
            len(self.velocity_values) != len(self.velocity_edges) + 1
            or len(self.duration_values) != len(self.duration_edges) + 1
        ):
            raise ValueError("each *_values list must have one more entry than its *_edges list")
        return self


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges: training values at the quantiles 1/bins .. (bins-1)/bins. Equal edges are merged
    and an edge at the maximum is dropped, so no bin is empty (a corpus with one velocity has one bin)."""
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins, method="inverted_cdf"))
    return edges[edges < values.max()]


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: bin b holds edges[b-1] < v <= edges[b]."""
    return np.searchsorted(edges, values, side="left")


class PseudoNotes(Encoding):
    name = "pseudonotes"
    kind = "tokens"
    Params = PseudoNotesParams
    needs_fit = True
    unknown_token = 0  # a combination never seen in training; never generated

    @property
    def is_fitted(self) -> bool:
        return self.params.vocab is not None

    def _fitted(self) -> PseudoNotesParams:
        if not self.is_fitted:
            raise LstmidiError(
                "pseudonotes: the encoding is not fitted; call fit(training scores) first "
                "(bins and vocabulary come from the corpus)"
            )
        return self.params

    @property
    def sizes(self) -> dict[str, int]:
        return {"vocab_size": 1 + len(self._fitted().vocab)}

    def steps_for_seconds(self, seconds: float) -> int:
        """Tokens for `seconds`: seconds / mean bin duration, at least 1."""
        return max(1, round(seconds / float(np.mean(self._fitted().duration_values))))

    def describe(self) -> str:
        """One line for the CLI, e.g. '580 pseudo-notes in vocabulary (88 pitches × 4 velocity bins × 4 ...)'."""
        p = self._fitted()
        return (
            f"{len(p.vocab)} pseudo-notes in vocabulary ({p.high - p.low + 1} pitches × "
            f"{len(p.velocity_values)} velocity bins × {len(p.duration_values)} duration bins possible)"
        )

    # ---- notes -> (pitch, velocity, duration seconds), the source of fit, encode and quantize ---------
    def _notes(self, score: Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pitch, velocity, duration in seconds) of kept notes, in onset then pitch order."""
        p = self.params
        arrays = [t.notes.numpy() for t in score.to("second").tracks if not t.is_drum and len(t.notes)]
        if not arrays:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        n = {k: np.concatenate([a[k] for a in arrays]) for k in ("time", "duration", "pitch", "velocity")}
        kept = np.flatnonzero((n["pitch"] >= p.low) & (n["pitch"] <= p.high))
        idx = kept[np.lexsort((n["pitch"][kept], n["time"][kept]))]  # onset, then pitch
        return (
            n["pitch"][idx].astype(np.int64),
            n["velocity"][idx].astype(np.float64),
            n["duration"][idx].astype(np.float64),
        )

    def _triples(self, score: Score) -> list[tuple[int, int, int]]:
        """(pitch, velocity bin, duration bin) of each kept note, in token order."""
        p = self._fitted()
        pitch, vel, dur = self._notes(score)
        vb, db = _bin(vel, np.array(p.velocity_edges)), _bin(dur, np.array(p.duration_edges))
        return list(zip(pitch.tolist(), vb.tolist(), db.tolist()))

    def _score(self, triples: list[tuple[int, int, int]]) -> Score:
        """Monophonic layout at `qpm`: each note starts where the previous one ends."""
        p = self.params
        ticks_per_second = DECODE_TPQ * p.qpm / 60
        score = Score(DECODE_TPQ)
        score.tempos.append(Tempo(0, qpm=p.qpm))
        score.time_signatures.append(TimeSignature(0, 4, 4))
        track = Track(name="pseudo-notes", program=0, is_drum=False)
        t = 0
        for pitch, vb, db in triples:
            length = max(1, round(p.duration_values[db] * ticks_per_second))
            velocity = min(127, max(1, round(p.velocity_values[vb])))
            track.notes.append(Note(t, length, pitch, velocity))
            t += length
        score.tracks.append(track)
        return score

    # ---- the contract -----------------------------------------------------------------------------
    def fit(self, scores: list[Score]) -> PseudoNotes:
        """Learn bin edges, bin values (medians) and the vocabulary from training scores; returns self."""
        p = self.params
        parts = [self._notes(s) for s in scores]
        pitch, vel, dur = (np.concatenate([x[i] for x in parts]) if parts else np.zeros(0) for i in range(3))
        if not len(pitch):
            raise LstmidiError(f"pseudonotes: no notes in [{p.low}, {p.high}] to fit on ({len(scores)} scores)")
        v_edges, d_edges = _edges(vel, p.velocity_bins), _edges(dur, p.duration_bins)
        vb, db = _bin(vel, v_edges), _bin(dur, d_edges)
        vocab = sorted(set(zip(pitch.astype(int).tolist(), vb.tolist(), db.tolist())))
        self.params = self.Params(
            **{
                **p.model_dump(),
                "velocity_edges": v_edges.tolist(),
                "duration_edges": d_edges.tolist(),
                "velocity_values": [float(np.median(vel[vb == b])) for b in range(len(v_edges) + 1)],
                "duration_values": [float(np.median(dur[db == b])) for b in range(len(d_edges) + 1)],
                "vocab": [list(v) for v in vocab],
            }
        )
        return self

    def encode(self, score: Score) -> np.ndarray:
        """Score -> int64 token ids (notes,); 0 for a combination not in the vocabulary."""
        ids = {tuple(v): i + 1 for i, v in enumerate(self._fitted().vocab)}
        return np.array([ids.get(t, 0) for t in self._triples(score)], np.int64)

    def decode(self, array: np.ndarray) -> Score:
        """Token ids -> monophonic Score (ticks, 480 per quarter at `qpm`); token 0 is skipped."""
        vocab = self._fitted().vocab
        tokens = np.asarray(array).reshape(-1).astype(np.int64)
        bad = tokens[(tokens < 0) | (tokens > len(vocab))]
        if len(bad):
            raise ValueError(f"pseudonotes.decode: token {int(bad[0])} outside 0..{len(vocab)}")
        return self._score([tuple(vocab[t - 1]) for t in tokens.tolist() if t])

    def quantize(self, score: Score) -> Score:
        """The notes as tokens keep them: binned, unknown combinations dropped, laid out one after another."""
        known = {tuple(v) for v in self._fitted().vocab}
        return self._score([t for t in self._triples(score) if t in known])
