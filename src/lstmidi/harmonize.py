"""Fill in voices with a four-voice model (preset chorale): harmonise given lines, or rewrite bars.

`harmonize` takes one or more given voices from a MIDI file (by default the soprano: the highest line of
the top pitched track), puts them on the model's grid, transposes them into the voices' ranges when they
lie outside, and lets Gibbs sampling (lstmidi.samplers.gibbs_voices) write the other voices; the result is
transposed back, so the given lines come out exactly as they went in (after quantization). `rewrite`
resamples the chosen voices inside a span of bars of a four-voice piece and keeps every other note.
Both refuse what they cannot do with an LstmidiError that names the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from symusic import Score, Tempo, TimeSignature

from .encodings.voices import HOLD, SHORT, VOICES, Voices, voice_index
from .errors import LstmidiError, MidiError
from .kinds import kind_of
from .midi import load_score
from .modelfile import LoadedModel
from .quality import find_key, tonic_triad
from .samplers import gibbs_voices

MAX_BEATS = 512  # the longest music harmonised or rewritten in one call (128 bars of 4/4)
POLYPHONY = 0.1  # a given line may have at most this share of its notes starting while another sounds


def parse_voices(text: str | list[str], option: str = "--voices") -> list[int]:
    """ "S" / "A,T" / ["S", "B"] -> sorted voice indices (0 = soprano .. 3 = bass)."""
    names = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    out = set()
    for name in names:
        if name.upper() not in SHORT:
            raise LstmidiError(f"{option} {','.join(names)}: voices are S, A, T and B, e.g. S or A,T")
        out.add(SHORT.index(name.upper()))
    if not out:
        raise LstmidiError(f"{option}: name at least one voice (S, A, T, B)")
    return sorted(out)


def check_model(loaded: LoadedModel, what: str) -> Voices:
    """The model's four-voice encoding, or an LstmidiError saying which preset to use."""
    if not kind_of(loaded.encoding).gibbs:
        raise LstmidiError(
            f"{loaded.path}: {what} needs a four-voice model (preset chorale); this one uses {loaded.encoding.name!r}"
        )
    return loaded.encoding


def _lines(score: Score, voices: list[int], track: int | None, where: str) -> list[np.ndarray]:
    """The given `voices`' single lines from `score` as note arrays (time, duration, pitch in quarters): one
    voice = the highest line of the top pitched track, or of track `track`; several = the tracks named as
    those voices, else the pitched tracks from the highest."""
    count = len(voices)
    quarters = score.to("quarter")
    pitched = [i for i, t in enumerate(quarters.tracks) if not t.is_drum and len(t.notes)]
    if not pitched:
        raise LstmidiError(f"{where}: no pitched notes to harmonise")
    mean = {i: float(quarters.tracks[i].notes.numpy()["pitch"].mean()) for i in pitched}
    if track is not None:
        if track not in pitched:
            raise LstmidiError(
                f"{where}: --track {track}: no pitched track with that number (pitched tracks: "
                f"{', '.join(map(str, pitched))})"
            )
        chosen, strict = [track], True
    elif count == 1:
        chosen, strict = [max(pitched, key=mean.get)], False
    else:
        named = {voice_index(quarters.tracks[i].name): i for i in reversed(pitched)}  # the first of a name
        if all(v in named for v in voices):
            chosen = [named[v] for v in voices]
        elif len(pitched) >= count:
            chosen = sorted(pitched, key=lambda i: -mean[i])[:count]
        else:
            raise LstmidiError(f"{where}: {count} given voices need {count} pitched tracks; it has {len(pitched)}")
        strict = True
    out = []
    for i in chosen:
        n = quarters.tracks[i].notes.numpy()
        order = np.lexsort((-n["pitch"], n["time"]))
        time, duration, pitch = n["time"][order], n["duration"][order], n["pitch"][order].astype(np.int64)
        ends = np.maximum.accumulate(time + duration)
        overlapping = int((time[1:] < ends[:-1] - 1e-6).sum())
        if strict and overlapping > POLYPHONY * len(time):
            raise LstmidiError(
                f"{where}: track {i} is polyphonic ({overlapping} of {len(time)} notes start while another "
                "sounds); a given voice must be a single line (without --track the highest line is taken)"
            )
        first = np.ones(len(time), bool)
        first[1:] = time[1:] > time[:-1]  # at one onset the highest note
        out.append(np.stack([time[first], duration[first], pitch[first]], 1))
    return out


def _grid(enc: Voices, lines: list[np.ndarray], where: str) -> list[list[tuple[int, int, int]]]:
    """Lines of (time, duration, pitch) -> (pitch, first frame, end frame) notes on the grid, one line each."""
    out = []
    for line in lines:
        start, end = enc.grid(line[:, 0], line[:, 1])
        out.append(enc.one_line(zip(line[:, 2].astype(np.int64).tolist(), start.tolist(), end.tolist())))
    frames = max(n[-1][2] for n in out)
    spq = enc.params.steps_per_quarter
    if frames > MAX_BEATS * spq:
        raise LstmidiError(
            f"{where}: {frames / spq:g} beats long; the limit is {MAX_BEATS} beats ({MAX_BEATS // 4} bars of 4/4)"
        )
    return out


def _shift_into(enc: Voices, lines: list[list[tuple[int, int, int]]], voices: list[int], where: str) -> int:
    """The transposition (semitones, as small as possible, whole octaves preferred) that puts every given line
    inside its voice's range; LstmidiError when no shift does."""
    ranges = enc.voice_ranges()
    lows = [min(p for p, _, _ in line) for line in lines]
    highs = [max(p for p, _, _ in line) for line in lines]
    fits = [
        k
        for k in range(-60, 61)
        if all(ranges[v][0] <= lo + k and hi + k <= ranges[v][1] for v, lo, hi in zip(voices, lows, highs, strict=True))
    ]
    if not fits:
        given = ", ".join(f"{SHORT[v]} {lo}-{hi}" for v, lo, hi in zip(voices, lows, highs, strict=True))
        allowed = ", ".join(f"{SHORT[v]} {ranges[v][0]}-{ranges[v][1]}" for v in voices)
        raise LstmidiError(
            f"{where}: the given {' and '.join(VOICES[v].lower() for v in voices)} cannot be moved into the model's "
            f"voice ranges: no transposition puts {given} inside {allowed} (MIDI pitches)"
        )
    return min(fits, key=lambda k: (abs(k) % 12 != 0, abs(k)))


def _frames(enc: Voices, lines: list[list[tuple[int, int, int]]], voices: list[int], shift: int, frames: int):
    """(frames, 5) with the given lines (moved by `shift`) in their voices' columns, and the (frames, 4) free
    mask: every cell of the other voices."""
    x = np.zeros((frames, 5), np.int64)
    x[:, 4] = enc.positions(frames)
    for v, line in zip(voices, lines, strict=True):
        enc.put(x, v, [(pitch + shift, a, b) for pitch, a, b in line])
    free = np.ones((frames, 4), bool)
    free[:, voices] = False
    return x, free


def home_ending(enc: Voices, lines: list[list[tuple[int, int, int]]], free: np.ndarray) -> np.ndarray:
    """(frames, 4, vocab) bool: the tokens each cell may take, ending on the home chord. When the given
    lines' last notes belong to the tonic triad of their key (lstmidi.quality.find_key; a minor key's major
    third too, as in a Picardy ending), every free voice strikes a note of that triad with the last given
    onset (the bass the tonic itself) and holds it to the end. Otherwise just the voices' ranges."""
    allowed = np.repeat(enc.allowed_tokens()[None], len(free), 0)
    notes = np.array([note for line in lines for note in line], np.int64)
    tonic, mode, _ = find_key(notes[:, 0], (notes[:, 2] - notes[:, 1]).astype(np.float64))
    start = max(line[-1][1] for line in lines)
    finals = {p % 12 for p, a, b in notes if a <= start < b}  # the given notes sounding at the last onset
    triad, other = tonic_triad(tonic, mode), tonic_triad(tonic, "minor" if mode == "major" else "major")
    if other - triad <= finals:  # the other third: a Picardy (or modal) ending
        triad = other
    if finals <= triad:
        enc.end_on_chord(allowed, start, np.flatnonzero(free[start]), triad, tonic)
    return allowed


def fill(
    loaded: LoadedModel,
    frames: np.ndarray,
    free: np.ndarray,
    *,
    allowed: np.ndarray | None = None,
    num: int = 1,
    seed: int = 0,
    temperature: float | None = None,
    iterations: int | None = None,
    parallels: float | None = None,
) -> np.ndarray:
    """(num, frames, 5): `num` samples of the `free` cells of `frames` (Gibbs sampling; the other cells
    stay as they are), each cell taking one of its `allowed` (frames, 4, vocab) tokens (default: its
    voice's range, REST and HOLD). A free cell right after a kept one may not be HOLD: a kept note keeps its
    length. Temperature, sweeps and the parallels penalty default to the model's."""
    from .options import check_options

    check_options(
        {"num": num, "seed": seed, "temperature": temperature, "iterations": iterations, "parallels": parallels}
    )
    d = loaded.preset.sample
    if allowed is None:
        allowed = np.repeat(loaded.encoding.allowed_tokens()[None], len(frames), 0)  # (frames, 4, vocab)
    allowed = allowed.copy()
    after_kept = free.copy()
    after_kept[1:] &= ~free[:-1]
    after_kept[0] = False
    allowed[after_kept, HOLD] = False
    generator = torch.Generator().manual_seed(seed)
    out = gibbs_voices(
        loaded.model,
        torch.from_numpy(np.repeat(frames[None], num, 0)),
        torch.from_numpy(np.repeat(free[None], num, 0)),
        torch.from_numpy(allowed),
        iterations or d.iterations,
        temperature=temperature or d.temperature,
        parallels=d.parallels if parallels is None else parallels,
        generator=generator,
    )
    return out.numpy()


def _with_timing(enc: Voices, frames: np.ndarray, source: Score, shift: int = 0) -> Score:
    """Decoded frames (moved back by -shift) with the tempo and time signatures of `source`."""
    out = enc.decode(frames)
    if shift:
        out = out.shift_pitch(-shift)
    tpq = out.ticks_per_quarter
    quarters = source.to("quarter")
    if len(quarters.tempos):
        out.tempos = [Tempo(round(t.time * tpq), qpm=t.qpm) for t in quarters.tempos]
    if len(quarters.time_signatures):
        out.time_signatures = [
            TimeSignature(round(t.time * tpq), t.numerator, t.denominator) for t in quarters.time_signatures
        ]
    return out


def harmonize(
    loaded: LoadedModel,
    melody: str | Path | Score,
    *,
    voices: str | list[str] = "S",
    track: int | None = None,
    num: int = 1,
    seed: int = 0,
    temperature: float | None = None,
    iterations: int | None = None,
    parallels: float | None = None,
) -> list[Score]:
    """`num` four-voice harmonisations (Scores with tracks Soprano, Alto, Tenor, Bass) of the given voices
    of `melody` (a MIDI file or a Score): by default its soprano, the highest line of its top pitched track
    (`track`: that track instead). The given lines are kept note for note (on the model's grid)."""
    enc = check_model(loaded, "harmonising")
    where = str(melody) if not isinstance(melody, Score) else "the melody"
    score = melody if isinstance(melody, Score) else load_score(melody, "all", False)
    given = parse_voices(voices)
    lines = _grid(enc, _lines(score, given, track, where), where)
    shift = _shift_into(enc, lines, given, where)
    frames, free = _frames(enc, lines, given, shift, max(line[-1][2] for line in lines))
    moved = [[(pitch + shift, a, b) for pitch, a, b in line] for line in lines]
    filled = fill(
        loaded,
        frames,
        free,
        allowed=home_ending(enc, moved, free),
        num=num,
        seed=seed,
        temperature=temperature,
        iterations=iterations,
        parallels=parallels,
    )
    return [_with_timing(enc, f, score, shift) for f in filled]


def bar_frames(enc: Voices, score: Score, bars: tuple[int, int], where: str) -> tuple[int, int]:
    """Frames [first, end) of bars first..last (1-based, inclusive) of `score`, by its first time signature."""
    first, last = bars
    if not 1 <= first <= last:
        raise LstmidiError(f"--rewrite {first}-{last}: bars are numbered from 1, FIRST-LAST with FIRST <= LAST")
    sig = score.time_signatures[0] if len(score.time_signatures) else None
    quarters_per_bar = sig.numerator * 4 / sig.denominator if sig else 4.0
    spq = enc.params.steps_per_quarter
    a, b = round((first - 1) * quarters_per_bar * spq), round(last * quarters_per_bar * spq)
    return a, b


def rewrite(
    loaded: LoadedModel,
    piece: str | Path | Score,
    bars: tuple[int, int],
    *,
    voices: str | list[str] = "S,A,T,B",
    num: int = 1,
    seed: int = 0,
    temperature: float | None = None,
    iterations: int | None = None,
    parallels: float | None = None,
) -> list[Score]:
    """`num` versions of a four-voice `piece` whose `voices` are resampled in bars first..last (1-based,
    inclusive), fitting what comes before and after; every note outside that span is kept."""
    enc = check_model(loaded, "--rewrite")
    where = str(piece) if not isinstance(piece, Score) else "the piece"
    score = piece if isinstance(piece, Score) else load_score(piece, "all", False)
    try:
        frames = enc.encode(score).astype(np.int64)
    except MidiError as err:  # not four voices
        raise LstmidiError(f"{where}: --rewrite needs a four-voice piece: {err}") from None
    a, b = bar_frames(enc, score, bars, where)
    if a >= len(frames):
        raise LstmidiError(f"{where}: --rewrite {bars[0]}-{bars[1]}: the piece has only {len(frames)} frames")
    if len(frames) > MAX_BEATS * enc.params.steps_per_quarter:
        raise LstmidiError(f"{where}: longer than {MAX_BEATS} beats, the limit of --rewrite")
    free = np.zeros((len(frames), 4), bool)
    for v in parse_voices(voices, "--rewrite-voices"):
        start, end = a, min(b, len(frames))
        while start < end and frames[start, v] == HOLD:  # a note begun before the span is kept whole
            start += 1
        while end < len(frames) and frames[end, v] == HOLD:  # a note begun inside the span is rewritten whole
            end += 1
        free[start:end, v] = True
    filled = fill(
        loaded, frames, free, num=num, seed=seed, temperature=temperature, iterations=iterations, parallels=parallels
    )
    return [_with_timing(enc, f, score) for f in filled]
