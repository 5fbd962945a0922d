"""Originality: how much of a piece is copied from the training music, transposition-invariantly.

A piece becomes its notes in onset order (the notes of a chord from low to high pitch, over all
pitched tracks), and each note after the first becomes one symbol: (pitch interval from the previous
note in semitones, onset delta from the previous note in 1/12 beat, capped at 16 beats). Durations
are left out so that legato vs staccato does not hide a copy. A run of k consecutive equal symbols is a
copy of k + 1 notes; the same music transposed gives the same symbols.

`NgramIndex` holds the symbol sequences of the training pieces and answers, with hashed n-grams:
does this n-gram occur in some training piece (`contains`), what share of a piece's n-grams do
(`share`), and how long is the longest run of a piece's symbols found in one training piece
(`longest_run`, by binary search over n: if an n-gram occurs, so do its (n-1)-grams).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from symusic import Score

from .errors import LstmidiError
from .metrics import describe, note_arrays

RHYTHM_GRID = 12  # onset-delta steps per beat: 16th notes and triplets are exact
MAX_DELTA = 16 * RHYTHM_GRID  # onset deltas are capped at 16 beats
NGRAM_NOTES = 8  # `ngram8_share` looks at 8-note n-grams = 7 symbols
_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 2**64)
_FORMAT = "lstmidi-ngram-index"
_VERSION = 1


def note_symbols(score: Score) -> np.ndarray:
    """(notes - 1,) int64 symbols: (interval + 127) * (MAX_DELTA + 1) + quantised onset delta."""
    onsets, _, pitches = note_arrays(score)
    delta = np.clip(np.rint(np.diff(onsets) * RHYTHM_GRID), 0, MAX_DELTA).astype(np.int64)
    return (np.diff(pitches) + 127) * (MAX_DELTA + 1) + delta


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads small symbol values over all 64 bits (uint64 arithmetic wraps)."""
    x = x.astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _Hashes:
    """Hashes of every n-gram of a symbol sequence in O(length) per n: with prefix sums
    S[i] = sum_{j<i} mix(s_j) * BASE^-j, the n-gram at i hashes to (S[i+n] - S[i]) * BASE^i
    = sum_k mix(s_{i+k}) * BASE^-k (mod 2**64), the same wherever it occurs."""

    def __init__(self, symbols: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            inv_powers = np.cumprod(np.full(len(symbols), _BASE_INV, np.uint64)) * np.uint64(_BASE)  # BASE^-j
            self.prefix = np.concatenate([[np.uint64(0)], np.cumsum(_mix(symbols) * inv_powers, dtype=np.uint64)])
            self.powers = np.concatenate(
                [[np.uint64(1)], np.cumprod(np.full(len(symbols), _BASE, np.uint64))]
            )  # BASE^i

    def at(self, starts: np.ndarray, n: int) -> np.ndarray:
        """uint64 hashes of the n-grams starting at `starts`."""
        with np.errstate(over="ignore"):
            return (self.prefix[starts + n] - self.prefix[starts]) * self.powers[starts]


class NgramIndex:
    """Hashed n-grams of the training pieces' symbol sequences (see the module docstring). Sets per
    n-gram length are built on first use and kept."""

    def __init__(self, sequences: list[np.ndarray]) -> None:
        lengths = np.array([len(s) for s in sequences], np.int64)
        self.symbols = (
            np.concatenate([np.asarray(s, np.int64) for s in sequences]) if sequences else np.zeros(0, np.int64)
        )
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # piece k = symbols[offsets[k]:offsets[k+1]]
        self.piece_end = np.repeat(self.offsets[1:], lengths)  # (symbols,) end of the piece of each position
        self.longest = int(lengths.max()) if len(lengths) else 0
        self._hashes = _Hashes(self.symbols)
        self._sets: dict[int, np.ndarray] = {}

    @classmethod
    def build(cls, scores: list[Score]) -> NgramIndex:
        """Index the symbol sequences of `scores` (the training pieces)."""
        return cls([note_symbols(s) for s in scores])

    @property
    def pieces(self) -> int:
        return len(self.offsets) - 1

    def _set(self, n: int) -> np.ndarray:
        """Sorted unique hashes of all n-grams that lie inside one training piece."""
        if n not in self._sets:
            starts = np.arange(max(len(self.symbols) - n + 1, 0))
            starts = starts[starts + n <= self.piece_end[starts]]
            self._sets[n] = np.unique(self._hashes.at(starts, n))
        return self._sets[n]

    def _found(self, hashes: _Hashes, length: int, n: int) -> np.ndarray:
        """(length - n + 1,) bool: which n-grams of a query sequence occur in the training pieces."""
        if n > min(length, self.longest):
            return np.zeros(max(length - n + 1, 0), bool)
        known = self._set(n)
        h = hashes.at(np.arange(length - n + 1), n)
        pos = np.searchsorted(known, h).clip(max=len(known) - 1)
        return known[pos] == h

    def contains(self, ngram: np.ndarray) -> bool:
        """Whether the symbol sequence `ngram` (length >= 1) occurs in some training piece."""
        ngram = np.asarray(ngram, np.int64)
        return bool(self._found(_Hashes(ngram), len(ngram), len(ngram)).all()) if len(ngram) else True

    def share(self, symbols: np.ndarray, n: int = NGRAM_NOTES - 1) -> float:
        """Share of the n-symbol n-grams of `symbols` that occur in the training pieces; NaN if it has none."""
        found = self._found(_Hashes(np.asarray(symbols, np.int64)), len(symbols), n)
        return float(found.mean()) if len(found) else float("nan")

    def longest_run(self, symbols: np.ndarray) -> int:
        """Length (in symbols = notes - 1) of the longest run of consecutive `symbols` found in one training piece."""
        hashes = _Hashes(np.asarray(symbols, np.int64))
        lo, hi = 0, min(len(symbols), self.longest)
        while lo < hi:  # invariant: a run of lo symbols is found; none longer than hi is
            mid = (lo + hi + 1) // 2
            if self._found(hashes, len(symbols), mid).any():
                lo = mid
            else:
                hi = mid - 1
        return lo

    def first_copy(self, symbols: np.ndarray, max_notes: int) -> int | None:
        """Index of the first note that starts a run of more than `max_notes` notes found in one training
        piece (a run of `max_notes` symbols), or None if there is none."""
        symbols = np.asarray(symbols, np.int64)
        found = self._found(_Hashes(symbols), len(symbols), max(max_notes, 1))
        return int(np.argmax(found)) if found.any() else None

    def save(self, path: str | Path) -> Path:
        """Write the index as a compressed .npz (the symbol sequences; hash sets are rebuilt on use), atomically."""
        from .files import atomic_write

        return atomic_write(
            path,
            lambda f: np.savez_compressed(
                f,
                format=np.array(_FORMAT),
                version=np.array(_VERSION),
                rhythm_grid=np.array(RHYTHM_GRID),
                symbols=self.symbols.astype(np.int32),
                offsets=self.offsets,
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> NgramIndex:
        """Read an index written by `save`; LstmidiError naming the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise LstmidiError(f"{path}: n-gram index not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != _FORMAT or int(z["version"]) != _VERSION or int(z["rhythm_grid"]) != RHYTHM_GRID:
                    raise LstmidiError(f"{path}: not an n-gram index of this lstmidi version")
                symbols, offsets = z["symbols"].astype(np.int64), z["offsets"]
        except (OSError, ValueError, KeyError) as err:
            raise LstmidiError(f"{path}: not an n-gram index ({err})") from None
        return cls([symbols[a:b] for a, b in zip(offsets[:-1], offsets[1:])])


def longest_copy(score: Score, index: NgramIndex) -> int:
    """Notes in the longest stretch of `score` that also occurs in a training piece (0 for an empty
    piece, at least 1 otherwise)."""
    return index.longest_run(note_symbols(score)) + 1 if len(note_arrays(score)[2]) else 0


def piece_originality(score: Score, index: NgramIndex) -> dict[str, float]:
    """`longest_copy` (see the function of that name); `ngram8_share`: share of its 8-note n-grams that
    occur in the training pieces (NaN for a piece of fewer than 8 notes)."""
    return {
        "longest_copy": float(longest_copy(score, index)),
        "ngram8_share": index.share(note_symbols(score), NGRAM_NOTES - 1),
    }


def set_originality(scores: list[Score], index: NgramIndex) -> dict:
    """`piece_originality` of every piece: per measure its description (mean, sd, min, max, n over the
    pieces where it is defined) and, under `values`, the per-piece values."""
    per_piece = [piece_originality(s, index) for s in scores]
    values = {k: [p[k] for p in per_piece] for k in ("longest_copy", "ngram8_share")}
    return {**{k: describe(v) for k, v in values.items()}, "values": values}
