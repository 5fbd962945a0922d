"""The samplers of each encoding kind, one step of work per new step (the state is carried, a window is
never re-run): frames of a piano roll, tokens (with constraints and beam search), and notes with
categorical and regressed fields. `lstmidi.kinds` picks one per kind; `lstmidi.sampling.generate` is the
entry point."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from symusic import Score

from . import processors, quality
from .encodings.base import TokenStream
from .encodings.voices import FIRST_PITCH, HOLD
from .errors import LstmidiError
from .metrics import notes_end

NO_TOKEN_LEFT = (
    "the sampling options together leave no token the model may write next "
    "(loosen --key, --pitch-range, --programs or --max-repeat)"
)


@torch.no_grad()
def sample_multihot(
    model: torch.nn.Module,
    primer: torch.Tensor,
    steps: int,
    *,
    onset_keys: int | None = None,
    mode: Literal["bernoulli", "threshold"] = "bernoulli",
    temperature: float = 1.0,
    threshold: float = 0.5,
    max_notes: int | None = None,
    fill: float = 0.0,
    full: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps, features) by `steps` frames -> (batch, steps, features).

    `onset_keys`: when the features are [held keys | onsets], the number of keys; a sampled onset then
    forces its key to be held. `max_notes`: a frame with more held keys is drawn again, up to NOTE_TRIES
    draws in all (so the frames follow the model's distribution given at most that many keys); one still
    over keeps its lowest key and its highest `max_notes` - 1 (`cap_notes`). `fill` (with `full` keys, the
    frame the training music usually holds): a frame of n < full held keys is also drawn again unless a
    uniform draw falls below exp(-fill x (full - n)), so the frames follow the model's probabilities times
    exp(fill x min(n, full)): for a model that leaves out a voice where it is unsure of its pitch.
    """
    if fill and full is None:
        raise ValueError("fill needs full, the number of keys of a full frame")
    model.eval()
    logits, state = model(primer)  # (batch, primer_steps, features); a joint model gives its time state
    last = logits[:, -1]
    out = []
    keys = onset_keys or primer.shape[-1]

    def draw(at: torch.Tensor) -> torch.Tensor:  # the model's own `sample_frame`: each key alone, or key by key
        frame = model.sample_frame(at, mode=mode, temperature=temperature, threshold=threshold, generator=generator)
        if onset_keys:
            frame[:, :onset_keys] = torch.maximum(frame[:, :onset_keys], frame[:, onset_keys:])
        return frame  # (rows, features)

    def redraw(held: torch.Tensor) -> torch.Tensor:  # (rows,) keys held -> (rows,) the frames to draw again
        over = held > max_notes if max_notes is not None else torch.zeros(held.shape, dtype=torch.bool)
        if fill:
            over |= torch.rand(held.shape, generator=generator) >= torch.exp(fill * (held - full).clamp(max=0))
        return over

    for _ in range(steps):
        frame = draw(last)
        if max_notes is not None or fill:
            again = torch.ones(len(frame), dtype=torch.bool)  # rows whose frame is not kept yet
            for _ in range(NOTE_TRIES - 1):
                again[again.clone()] = redraw(frame[again, :keys].sum(1))
                if not again.any():
                    break
                frame[again] = draw(last[again])
        if max_notes is not None:
            frame[:, :keys] = cap_notes(frame[:, :keys], max_notes)
            if onset_keys:
                frame[:, onset_keys:] *= frame[:, :onset_keys]  # no onset of a key no longer held
        out.append(frame)
        logits, state = model(frame[:, None, :], state)  # (batch, 1, features)
        last = logits[:, -1]
    return torch.stack(out, 1) if out else primer[:, :0]


NOTE_TRIES = 8  # draws of a piano-roll frame that holds more than `max_notes` keys


def cap_notes(frames: torch.Tensor, n: int) -> torch.Tensor:
    """(rows, keys) 0/1 -> a copy where each row with more than `n` keys on keeps its lowest key and its
    highest n - 1 (the bass and the tune)."""
    on = frames > 0
    from_top = on.flip(-1).cumsum(-1).flip(-1)  # (rows, keys) keys on at or above each key
    lowest = on & (on.cumsum(-1) == 1)
    keep = lowest | (on & (from_top <= n - 1))
    return torch.where(on.sum(-1, keepdim=True) > n, keep.to(frames.dtype), frames)


def home_chord_ends(rolls: np.ndarray, given: int, target: int, low: int) -> list[int]:
    """Where to end each piano roll: rolls (num, given + steps, keys) 0/1, the primer's `given` frames
    first, key 0 = MIDI pitch `low`. -> for each row, the number of new frames to keep: the length within
    10% of `target` closest to it whose last struck chord (the frame of the last key to start) is the tonic
    triad of the roll's key (lstmidi.quality.find_key over the first given + target frames; either third,
    the tonic present); `target` when no length in that window ends so."""
    window = max(1, target // 10)
    out = []
    for roll in rolls.astype(bool):
        _, keys = np.nonzero(roll[: given + target])
        tonic, _, _ = quality.find_key(keys + low, np.ones(len(keys)))
        struck = np.zeros(len(roll), bool)
        struck[0] = roll[0].any()
        struck[1:] = (roll[1:] & ~roll[:-1]).any(1)
        home = np.zeros(len(roll), bool)
        for f in np.flatnonzero(struck):
            chord = {int(k + low) % 12 for k in np.flatnonzero(roll[f])}
            home[f] = quality.is_tonic_chord(chord, tonic)
        last_struck = np.maximum.accumulate(np.where(struck, np.arange(len(roll)), -1))
        lengths = range(max(1, target - window), min(len(roll) - given, target + window) + 1)
        ending = [n for n in lengths if last_struck[given + n - 1] >= 0 and home[last_struck[given + n - 1]]]
        out.append(min(ending, key=lambda n: (abs(n - target), n)) if ending else target)
    return out


@torch.no_grad()
def sample_tokens(
    model: torch.nn.Module,
    primer: torch.Tensor,
    steps: int,
    *,
    window: int = 64,
    allowed: torch.Tensor | None = None,
    constrain=None,
    eos: int | None = None,
    generator: torch.Generator | None = None,
    resume: tuple | None = None,
    checkpoint: dict | None = None,
    **options,
) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps) tokens by up to `steps` tokens -> (batch, steps).

    A model with a `context` (seq2seq) encodes the `context` tokens before the last one, decodes up to
    `window` tokens step by step, then re-encodes the newest context and goes on. `allowed`: (vocab,)
    bool mask of tokens that may be generated; `constrain(logits, sequences)` -> logits applies
    constraints knowing each row's tokens so far (primer included). With `eos`, a row that emitted EOS
    is finished (padded with EOS) and sampling stops when every row is. `options`: temperature,
    top_k, top_p, greedy. A model without `context` can also start from `resume` = (last logits, state)
    after the primer instead of reading it, and stores that pair as checkpoint["resume"] before drawing new
    token checkpoint["at"] (counted from 0).
    """
    model.eval()
    context = model.context
    seq, out = primer, []
    done = torch.zeros(primer.shape[0], dtype=torch.bool)  # (batch,) rows that emitted EOS

    def pick(logits: torch.Tensor) -> torch.Tensor:  # (batch, vocab) -> (batch,)
        if allowed is not None:
            logits = processors.mask_tokens(logits, allowed)
        if constrain is not None:
            logits = constrain(logits, seq)
        try:
            token = processors.sample(logits, generator=generator, **options)
        except ValueError as err:  # the constraints together leave no token (e.g. --programs with --key)
            if "every token is masked" not in str(err):
                raise
            raise LstmidiError(NO_TOKEN_LEFT) from None
        if eos is not None:
            token = torch.where(done, torch.full_like(token, eos), token)
            done.logical_or_(token == eos)  # in place: `done` belongs to the enclosing function
        return token

    def finished() -> bool:
        return eos is not None and bool(done.all())

    if not context:
        if resume is None:
            logits, state = model(primer)  # (batch, primer_steps, vocab)
            last = logits[:, -1]
        else:
            last, state = resume
        for i in range(steps):
            if checkpoint is not None and checkpoint.get("at") == i:
                checkpoint["resume"] = (last, state)
            token = pick(last)
            out.append(token)
            seq = torch.cat([seq, token[:, None]], 1)
            if finished():
                break
            logits, state = model(token[:, None], state)
            last = logits[:, -1]
        return torch.stack(out, 1) if out else primer[:, :0]
    while len(out) < steps:
        src = seq[:, :-1][:, -context:]  # (batch, <= context)
        if src.shape[1] < context:  # a short primer: pad on the left with its first token
            src = torch.cat(
                [
                    src[:, :1].expand(-1, context - src.shape[1]) if src.shape[1] else seq[:, :1].expand(-1, context),
                    src,
                ],
                1,
            )
        state = model.encode(src)
        last = seq[:, -1:]
        for _ in range(min(window, steps - len(out))):
            logits, state = model(last, state)  # (batch, 1, vocab)
            token = pick(logits[:, -1])
            out.append(token)
            last = token[:, None]
            seq = torch.cat([seq, last], 1)
    return torch.stack(out, 1)


@torch.no_grad()
def sample_notes(
    model: torch.nn.Module,
    primer: torch.Tensor,
    steps: int,
    *,
    low: int = 21,
    high: int = 108,
    max_step: float = 4.0,
    max_duration: float = 4.0,
    min_duration: float = 0.01,
    temperatures: dict[str, float] | None = None,
    generator: torch.Generator | None = None,
    seconds: float | None = None,
    **options,
) -> torch.Tensor:
    """Continue `primer` (batch, primer_notes, fields) by up to `steps` notes -> (batch, notes, fields).

    With `seconds` (and a step field), sampling stops once every row's new notes span that many seconds;
    each row is then cut at its first note starting after `seconds` (later rows are padded, and the
    caller drops padding: see `generate`).

    The pitch is drawn from the categorical head (restricted to [low, high]; `temperatures['pitch']`,
    top_k, top_p, greedy) or rounded from the regression head; step, duration and velocity are the
    regressed values clamped so that every piece is valid (durations > 0, steps >= 0, velocity 1..127).
    """
    model.eval()
    temperatures = temperatures or {}
    fields = list(model.fields)
    out, state = model(primer)
    rows = []
    for _ in range(steps):
        row = torch.zeros(primer.shape[0], len(fields))  # (batch, fields)
        for i, f in enumerate(fields):
            value = out[f][:, -1]
            if f == "pitch" and value.dim() == 2:  # categorical: (batch, 128) logits
                allowed = torch.zeros(value.shape[-1], dtype=torch.bool)
                allowed[low : high + 1] = True
                logits = processors.mask_tokens(value, allowed)
                row[:, i] = processors.sample(
                    logits,
                    temperature=temperatures.get("pitch", options.get("temperature", 1.0)),
                    **{k: v for k, v in options.items() if k != "temperature"},
                    generator=generator,
                ).float()
            elif f == "pitch":
                row[:, i] = processors.sample_regression(value.round(), low=low, high=high)
            elif f == "velocity":
                row[:, i] = processors.sample_regression(value.round(), low=1, high=127)
            elif f == "duration":
                row[:, i] = processors.sample_regression(value, low=min_duration, high=max_duration)
            else:
                row[:, i] = processors.sample_regression(value, low=0.0, high=max_step)
        rows.append(row)
        if seconds is not None and "step" in fields:
            elapsed = torch.stack(rows, 1)[..., fields.index("step")].sum(1)  # (batch,) seconds of new onsets
            if bool((elapsed >= seconds).all()):
                break
        out, state = model(row[:, None], state)
    return torch.stack(rows, 1) if rows else primer[:, :0]


GIBBS_START_TEMPERATURE = 2.0  # the first sweeps sample this hot, cooling linearly to the asked temperature


def sounding(tokens: torch.Tensor) -> torch.Tensor:
    """(batch, steps, voices) voice tokens -> the pitch sounding in each frame (token - FIRST_PITCH: its
    distance from the lowest pitch), -1 for none: a HOLD carries the last non-HOLD frame's value."""
    steps = tokens.shape[1]
    value = torch.where(tokens >= FIRST_PITCH, tokens - FIRST_PITCH, -1)
    frame = torch.arange(steps).view(1, -1, 1).expand_as(tokens)
    last = torch.where(tokens != HOLD, frame, -1).cummax(1).values  # the last non-HOLD frame so far
    return torch.where(last >= 0, value.gather(1, last.clamp(min=0)), -1)


def _parallel(a, b, a_other, b_other) -> torch.Tensor:
    """Whether a voice moving a -> b and another moving a_other -> b_other make parallel fifths or octaves
    (unisons included): both sound, both move in the same direction, the same perfect interval modulo the
    octave both times (lstmidi.voiceleading.parallels)."""
    heard = (a >= 0) & (b >= 0) & (a_other >= 0) & (b_other >= 0)
    similar = (a != b) & (a_other != b_other) & (torch.sign(b - a) == torch.sign(b_other - a_other))
    before, after = (a - a_other).abs() % 12, (b - b_other).abs() % 12
    return heard & similar & (before == after) & ((after == 0) | (after == 7))


def parallel_counts(x: torch.Tensor, voice: int, at: torch.Tensor, spacing: int, vocab: int) -> torch.Tensor:
    """(batch, cells, vocab): how many parallel fifths and octaves on the beats (frames 0, spacing, ...)
    voice `voice` would make with the other voices if the cell at frame `at[i]` took each token, everything
    else as in x (batch, steps, voices + 1). A token sounds from its frame to the voice's next non-HOLD
    frame; only the first and last beat of that span can start or end a parallel (the voice stays put
    between them)."""
    tokens = x[..., :-1]
    batch, steps, voices = tokens.shape
    sound = sounding(tokens)
    frame = torch.arange(steps).expand(batch, steps)
    after = torch.where(tokens[..., voice] != HOLD, frame, steps).flip(1).cummin(1).values.flip(1)
    ends = torch.cat([after[:, 1:], torch.full((batch, 1), steps)], 1)[:, at]  # (batch, cells): next non-HOLD
    held = torch.where(at > 0, sound[:, (at - 1).clamp(min=0), voice], -1)  # what a HOLD would continue
    candidate = torch.arange(vocab) - FIRST_PITCH
    candidate = candidate.masked_fill(candidate < 0, -1).expand(batch, len(at), vocab).clone()
    candidate[..., HOLD] = held
    first = -(-at // spacing) * spacing  # the first beat frame at or after the cell
    last = (ends - 1) // spacing * spacing  # the last beat frame before the span ends
    reaches = (first < ends) & (first < steps)  # (batch, cells): the span holds a beat
    before, beyond = first - spacing, last + spacing
    has_before = (reaches & (before >= 0))[..., None]
    has_beyond = (reaches & (beyond < steps))[..., None]
    first, before = first.clamp(max=steps - 1).expand(batch, -1), before.clamp(min=0).expand(batch, -1)
    beyond, last = beyond.clamp(max=steps - 1), last.clamp(min=0)

    def at_frames(where, v):
        return sound[..., v].gather(1, where)[..., None]  # (batch, cells, 1)

    count = torch.zeros(batch, len(at), vocab)
    for other in range(voices):
        if other == voice:
            continue
        into = _parallel(at_frames(before, voice), candidate, at_frames(before, other), at_frames(first, other))
        out_of = _parallel(candidate, at_frames(beyond, voice), at_frames(last, other), at_frames(beyond, other))
        count += (into & has_before).float() + (out_of & has_beyond).float()
    return count


@torch.no_grad()
def gibbs_voices(
    model: torch.nn.Module,
    frames: torch.Tensor,
    free: torch.Tensor,
    allowed: torch.Tensor,
    sweeps: int,
    *,
    temperature: float = 1.0,
    spacing: int = 4,
    parallels: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pseudo-Gibbs sampling of four-voice frames with a model that reads ahead (voicenet; DeepBach).

    frames (batch, steps, voices + 1): tokens and positions. free (batch, steps, voices) bool: the cells
    that may change (the others are kept exactly). allowed (voices, vocab), (steps, voices, vocab) or
    (batch, steps, voices, vocab) bool:
    the tokens each voice (at each frame) may take (its range, REST and HOLD). Free cells start as notes
    on each beat at random pitches of the voice's range (held to the next beat). A sweep resamples every
    free cell once in `spacing` passes of the model: in each, every voice with free cells draws its cells
    at frames offset, offset + spacing, ... from their conditionals given everything else, each voice at
    its own offset (so that no two voices of one frame change together). The temperature cools linearly
    from GIBBS_START_TEMPERATURE to `temperature` over the first three quarters of the sweeps. `parallels`
    (nats) is taken off a token's tempered log-probability for each parallel fifth or octave it would make
    on the beats (`parallel_counts`): the voice-leading rule the model alone does not keep.
    -> the frames."""
    x = frames.clone().long()
    batch, steps, voices = free.shape
    allowed = allowed.expand(batch, steps, *allowed.shape[-2:])  # (batch, steps, voices, vocab)
    beat_start = torch.zeros(steps, dtype=torch.bool)
    beat_start[::spacing] = True
    for v in range(voices):
        pitches = torch.nonzero(allowed[:, :, v, 2:].any(1).any(0)).flatten() + 2  # pitch tokens (after REST, HOLD)
        draw = pitches[torch.randint(len(pitches), (batch, steps), generator=generator)]
        start = torch.where(beat_start, draw, torch.ones_like(draw))  # a pitch on each beat, HOLD between
        x[..., v] = torch.where(free[..., v], start, x[..., v])
    moving = [v for v in range(voices) if bool(free[..., v].any())]
    cool = max(1, round(0.75 * sweeps))
    for sweep in range(sweeps):
        heat = max(temperature + (GIBBS_START_TEMPERATURE - temperature) * max(0.0, 1 - sweep / cool), 1e-6)
        shifts = torch.randperm(max(spacing, len(moving)), generator=generator)[: len(moving)] % spacing
        for offset in torch.randperm(spacing, generator=generator).tolist():
            logits, _ = model(x)  # (batch, steps, voices, vocab)
            for v, shift in zip(moving, shifts.tolist(), strict=True):
                first = (offset + shift) % spacing
                # with the penalty, the cells of alternate beats are drawn one half after the other, so that
                # each cell's parallels are counted against its neighbours' new notes
                every, starts = (2 * spacing, (0, spacing)) if parallels else (spacing, (0,))
                for at in (slice(first + start, None, every) for start in starts):
                    cells = logits[:, at, v].float() / heat
                    if parallels:
                        frames_at = torch.arange(steps)[at]
                        cells = cells - parallels * parallel_counts(x, v, frames_at, spacing, cells.shape[-1])
                    cells = cells.masked_fill(~allowed[:, at, v], float("-inf"))
                    drawn = torch.multinomial(torch.softmax(cells.flatten(0, 1), -1), 1, generator=generator)
                    x[:, at, v] = torch.where(free[:, at, v], drawn.view(batch, -1), x[:, at, v])
    return x


class GrammarTracker:
    """Grammar masks for many sequences that grow one token at a time (and, in beam search, are
    reordered): when the sequences are the previous call's rows with one token more (sampling), every row's
    state takes its token in one batched push (`TokenStream.grammars`); when a beam reordered its rows, the
    states of their parents are taken by the sequences' bytes and pushed, so each step still pushes one
    token per row instead of re-reading the whole sequences."""

    def __init__(self, enc) -> None:
        self.enc = enc
        self.last: np.ndarray | None = None  # the previous call's sequences
        self.state = None  # the grammar states after them (a batch: one row per sequence)

    def allowed(self, seqs: torch.Tensor) -> torch.Tensor:
        """(batch, t) token sequences -> (batch, vocab) bool mask of the next token."""
        seqs, last = seqs.numpy(), self.last
        if last is not None and seqs.shape == (last.shape[0], last.shape[1] + 1) and np.array_equal(seqs[:, :-1], last):
            self.state.push(seqs[:, -1])
        else:
            known = {row.tobytes(): i for i, row in enumerate(last)} if last is not None else {}
            parents = [known.get(row[:-1].tobytes()) for row in seqs]
            if parents and None not in parents:
                self.state = self.state.take(parents)  # every row has its own state: the next push may diverge
                self.state.push(seqs[:, -1])
            else:
                self.state = self.enc.grammars(seqs)
        self.last = seqs
        return torch.from_numpy(self.state.allowed())


def token_constraints(enc: TokenStream, generated_from: int, o: dict, choose_ending: bool = True):
    """constrain(logits, sequences) for an event-token encoding: the grammar mask (every sequence
    decodes without token errors), repetition penalty, a cap on repeated pitches, key/scale and pitch
    range masks, allowed instruments, and steering towards EOS near `target` new tokens. `o`: the resolved
    sampling options (`target`, `repetition_penalty`, `max_repeat`, `key`, `pitch_range`, `programs`; None
    when not used). `generated_from`: where the new tokens start in `sequences` (the primer's length)."""
    target, repetition_penalty, max_repeat = o.get("target"), o.get("repetition_penalty"), o.get("max_repeat")
    key, pitch_range, programs = o.get("key"), o.get("pitch_range"), o.get("programs")
    grammar = GrammarTracker(enc)
    pitch_of = torch.from_numpy(enc.pitch_of_token()).long()
    allowed_pitches = None
    if key or pitch_range:
        allowed_pitches = torch.ones(128, dtype=torch.bool)
        if key:
            try:
                allowed_pitches &= processors.scale_mask(key)
            except ValueError as err:
                raise LstmidiError(f"--key: {err}") from None
        if pitch_range:
            allowed_pitches &= processors.pitch_range_mask(*pitch_range)
    program_ok = None
    if programs:
        if not enc.programs:
            raise LstmidiError("--programs needs a model trained with programs (multi-instrument tokens)")
        of = torch.from_numpy(enc.program_of_token()).long()
        wanted = [enc.DRUM_PROGRAM if p == -1 else p for p in programs]  # -1: drums (Program_-1)
        program_ok = (of < 0) | torch.isin(of, torch.tensor(wanted))

    window = max(4, target // 10) if target else 0
    ending = BestEnding(target - window, target + window, HOME_MARGIN) if target and choose_ending else None

    def constrain(logits: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:  # (batch, vocab), (batch, t)
        if grammar is not None:
            logits = processors.mask_tokens(logits, grammar.allowed(seq))
        if program_ok is not None:
            logits = processors.mask_tokens(logits, program_ok)
        if allowed_pitches is not None:
            logits = processors.mask_pitches(logits, pitch_of, allowed_pitches)
        new = seq[:, generated_from:]
        if repetition_penalty and repetition_penalty != 1.0:
            logits = processors.repetition_penalty(logits, new, repetition_penalty)
        if max_repeat:
            logits = processors.cap_pitch_repeats(logits, pitch_of[seq], pitch_of, max_repeat)
        if ending is not None:  # EOS only at the end of the window; `ending` chooses where to cut
            ending.see(logits, new.shape[1], enc.eos)
            logits = processors.steer_length(logits, enc.eos, new.shape[1], target + window, 0)
        elif target:  # beam search: its own scores choose the ending, steered towards the target
            logits = processors.steer_length(logits, enc.eos, new.shape[1], target, window)
        return logits

    constrain.ending = ending  # where sample_pieces ends each row (None: no target, or beam search)
    return constrain


HOME_MARGIN = 3.0  # nats: how much less likely than the best ending a tonic ending may be and still be taken
ENDING_TRIES = 4  # samples of the ending window for a piece whose ending is not on its home chord
LENGTH_TOLERANCE = 0.1  # an ending is taken where the new music lasts the seconds asked for +- 10%, if it can


class BestEnding:
    """Where each row ends. Every position inside the ending window [start, end) of the length steering
    where the constraints allow EOS is a candidate, scored by the model's log P(EOS) there; EOS itself
    is not sampled inside the window (the rows run to `end`). `choose` takes the most likely candidate,
    unless one at most HOME_MARGIN nats less likely ends on the tonic triad of the key the piece has so
    far (lstmidi.quality): a piece ends on its home chord where the model finds that nearly as good an
    ending as its favourite. (The model cannot know which of its phrase endings is the last one: the
    length asked for decides that.)"""

    def __init__(self, start: int, end: int, margin: float) -> None:
        self.start, self.end, self.margin = start, end, margin
        self.positions: list[int] = []  # the window positions seen (index of the new token)
        self.scores: list[torch.Tensor] = []  # (batch,) log P(EOS) at each of them

    def see(self, logits: torch.Tensor, position: int, eos: int) -> None:
        """Record the EOS log-probability of the token at `position` (new tokens counted from 0)."""
        if self.start <= position < self.end:
            self.positions.append(position)
            self.scores.append(torch.log_softmax(logits.float(), -1)[:, eos])

    def choose(self, rows: int, places=None, seconds: float | None = None) -> list[tuple[int, bool] | None]:
        """Per row: (the position of its EOS, whether it ends on its home chord there), None without any
        candidate. `places`: an `EndingPlaces` (or anything with its `home` and `seconds`); None: the most
        likely place is taken. With `seconds`, only the places where the new music lasts within
        LENGTH_TOLERANCE of it are candidates, when the window has any."""
        chosen = []
        table = torch.stack(self.scores).numpy() if self.scores else np.zeros((0, rows))  # (positions, rows)
        for row in range(rows):
            found = [(float(s), p) for p, s in zip(self.positions, table[:, row], strict=True) if np.isfinite(s)]
            if places is not None and seconds is not None and found:
                found = self._in_time(found, row, places, seconds)
            found.sort(key=lambda c: (-c[0], c[1]))
            near = [at for score, at in found if score >= found[0][0] - self.margin]
            home = next((at for at in near if places is not None and places.home(row, at)), None)
            chosen.append(None if not found else (home, True) if home is not None else (found[0][1], False))
        return chosen

    @staticmethod
    def _in_time(found: list[tuple[float, int]], row: int, places, seconds: float) -> list[tuple[float, int]]:
        """The (score, position) candidates of `row` whose new music lasts within LENGTH_TOLERANCE of
        `seconds` (all of them when none does). The length never decreases with the position: the window's
        ends are tried first (most rows are in time all through it), then a bisection finds each bound."""
        at = sorted(p for _, p in found)

        def long_enough(p: int) -> bool:
            return places.seconds(row, p) >= seconds * (1 - LENGTH_TOLERANCE)

        def too_long(p: int) -> bool:
            return places.seconds(row, p) > seconds * (1 + LENGTH_TOLERANCE)

        low = 0 if long_enough(at[0]) else bisect.bisect_left(at, True, key=long_enough)
        high = len(at) if not too_long(at[-1]) else bisect.bisect_left(at, True, key=too_long)
        if low >= high:
            return found
        keep = set(at[low:high])
        return [c for c in found if c[1] in keep]


def end_rows(tokens: np.ndarray, eos: int, chosen: list[tuple[int, bool] | None]) -> np.ndarray:
    """(batch, steps) new tokens -> a copy with each row ended (EOS onwards) at its chosen position; rows
    with no choice or an EOS of their own stay as they are."""
    out = np.array(tokens, copy=True)
    for row, choice in enumerate(chosen):
        if choice is not None and not (out[row] == eos).any():
            out[row, choice[0] :] = eos
    return out


class EndingPlaces:
    """What BestEnding.choose asks of a place to end: each row is primer row + its new tokens before new
    token `at` (decoded from one decoding of the whole row, `TokenStream.prefix_decoder`)."""

    def __init__(self, enc: TokenStream, prime: np.ndarray, new: np.ndarray) -> None:
        self.enc, self.prime, self.new = enc, prime, new
        self._scores: dict[tuple[int, int | None], Score] = {}
        self._primer_ends: dict[int, float] = {}  # row -> seconds at which its primer's music ends
        self._decoders: dict[int, Callable[[int], Score]] = {}

    def _score(self, row: int, at: int | None) -> Score:  # at None: the primer alone
        if (row, at) not in self._scores:
            if row not in self._decoders:
                self._decoders[row] = self.enc.prefix_decoder(np.concatenate([self.prime[row], self.new[row]]))
            self._scores[row, at] = self._decoders[row](self.prime.shape[1] + (at or 0))
        return self._scores[row, at]

    def home(self, row: int, at: int) -> bool:
        """Whether the piece ends on the tonic triad of its key."""
        return quality.tonic_ending(self._score(row, at))

    def seconds(self, row: int, at: int) -> float:
        """Seconds of music after the primer's."""
        if row not in self._primer_ends:
            self._primer_ends[row] = notes_end(self._score(row, None))
        return notes_end(self._score(row, at)) - self._primer_ends[row]


def sample_pieces(
    model: torch.nn.Module, enc: TokenStream, prime: np.ndarray, steps: int, o: dict, **sample_options
) -> np.ndarray:
    """(batch, steps) new event tokens continuing `prime`, ended with EOS near o["target"] (without a
    target: at most `steps` tokens). Each row ends at the place BestEnding chooses; a row that would not
    end on its home chord samples its ending window ENDING_TRIES - 1 more times (all tries in one batch)
    and keeps the first try that does. `sample_options` go to sample_tokens (window, allowed, generator,
    temperature, ...)."""
    first = torch.from_numpy(prime).long()
    constrain = token_constraints(enc, prime.shape[1], o)
    ending = constrain.ending
    saved = {"at": ending.start} if ending is not None else None  # the state where the ending window starts
    new = sample_tokens(model, first, steps, constrain=constrain, eos=enc.eos, checkpoint=saved, **sample_options)
    new = new.numpy()
    if ending is None:
        return new
    seconds = o.get("seconds") if o.get("target") else None
    chosen = ending.choose(len(new), EndingPlaces(enc, prime, new), seconds)
    again = [row for row, choice in enumerate(chosen) if choice is not None and not choice[1]]
    if not again or ENDING_TRIES < 2:
        return end_rows(new, enc.eos, chosen)
    rows = np.repeat(again, ENDING_TRIES - 1)  # each row's tries next to each other
    kept = new[rows, : ending.start]
    retry = token_constraints(enc, prime.shape[1], o)  # positions still counted from the primer's end
    resume = saved.get("resume")
    if resume is not None:  # the tries go on from the window's start without reading the piece again
        last, (h, c) = resume  # an LSTM's state: (layers, batch, hidden) each
        resume = (last[rows], (h[:, rows], c[:, rows]))
    tail = sample_tokens(
        model,
        torch.from_numpy(np.concatenate([prime[rows], kept], 1)).long(),
        steps - ending.start,
        constrain=retry,
        eos=enc.eos,
        resume=resume,
        **sample_options,
    ).numpy()
    tried = np.concatenate([kept, tail], 1)
    for i, choice in enumerate(retry.ending.choose(len(rows), EndingPlaces(enc, prime[rows], tried), seconds)):
        row = rows[i]
        if choice is not None and choice[1] and not chosen[row][1]:
            new[row], chosen[row] = tried[i], choice
    return end_rows(new, enc.eos, chosen)


def beam_tokens(model: torch.nn.Module, primer: torch.Tensor, steps: int, beam: int, eos: int, constrain) -> np.ndarray:
    """Beam search continuation of each primer row separately -> (batch, steps) padded with EOS."""
    rows = []
    for row in primer:
        logits, state = model(row[None])  # (1, primer_steps, vocab)

        def step_fn(tokens, st):  # used within this iteration only (as is `processor`)
            out, st = model(tokens[:, None], st)
            return out[:, -1], st

        def processor(lg, seqs):
            full = torch.cat([row[None].expand(seqs.shape[0], -1), seqs], 1)  # noqa: B023 (called in this iteration)
            return constrain(lg, full) if constrain else lg

        try:
            best, _ = processors.beam_search(
                step_fn, state, logits[:, -1], steps, beam, eos_id=eos, logit_processor=processor
            )
        except ValueError as err:
            if "every continuation is masked" not in str(err):
                raise
            raise LstmidiError(NO_TOKEN_LEFT) from None
        padded = np.full(steps, eos, np.int64)
        padded[: len(best)] = best.numpy()[:steps]
        rows.append(padded)
    return np.stack(rows)
