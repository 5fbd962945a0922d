"""The samplers of each encoding kind, one step of work per new step (the state is carried, a window is
never re-run): frames of a piano roll, tokens (with constraints and beam search), and notes with
categorical and regressed fields. `lstmidi.kinds` picks one per kind; `lstmidi.sampling.generate` is the
entry point."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from . import processors
from .encodings.base import TokenStream
from .errors import LstmidiError

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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps, features) by `steps` frames -> (batch, steps, features).

    `onset_keys`: when the features are [held keys | onsets], the number of keys; a sampled onset then
    forces its key to be held.
    """
    model.eval()
    logits, state = model(primer)  # (batch, primer_steps, features); a joint model gives its time state
    last = logits[:, -1]
    out = []
    for _ in range(steps):
        # independent keys, or drawn jointly key by key (endecell): the model's own `sample_frame`
        frame = model.sample_frame(
            last, mode=mode, temperature=temperature, threshold=threshold, generator=generator
        )  # (batch, features)
        if onset_keys:
            frame[:, :onset_keys] = torch.maximum(frame[:, :onset_keys], frame[:, onset_keys:])
        out.append(frame)
        logits, state = model(frame[:, None, :], state)  # (batch, 1, features)
        last = logits[:, -1]
    return torch.stack(out, 1) if out else primer[:, :0]


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
    **options,
) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps) tokens by up to `steps` tokens -> (batch, steps).

    A model with a `context` (seq2seq) encodes the `context` tokens before the last one, decodes up to
    `window` tokens step by step, then re-encodes the newest context and goes on. `allowed`: (vocab,)
    bool mask of tokens that may be generated; `constrain(logits, sequences)` -> logits applies
    constraints knowing each row's tokens so far (primer included). With `eos`, a row that emitted EOS
    is finished (padded with EOS) and sampling stops when every row is. `options`: temperature,
    top_k, top_p, greedy.
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
        logits, state = model(primer)  # (batch, primer_steps, vocab)
        for _ in range(steps):
            token = pick(logits[:, -1])
            out.append(token)
            seq = torch.cat([seq, token[:, None]], 1)
            if finished():
                break
            logits, state = model(token[:, None], state)
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


class GrammarTracker:
    """Grammar masks for many sequences that grow one token at a time (and, in beam search, are
    reordered): when the sequences are the previous call's rows with one token more (sampling), each
    row's grammar state takes that token in place; otherwise (a beam reordered its rows) the state after
    each sequence is found by the sequence's bytes, so each step still pushes one token instead of
    re-reading the whole sequence."""

    def __init__(self, enc) -> None:
        self.enc = enc
        self.last: np.ndarray | None = None  # the previous call's sequences
        self.rows: list = []  # the grammar state after each of them

    def allowed(self, seqs: torch.Tensor) -> torch.Tensor:
        """(batch, t) token sequences -> (batch, vocab) bool mask of the next token."""
        seqs, last = seqs.numpy(), self.last
        if last is not None and seqs.shape == (last.shape[0], last.shape[1] + 1) and np.array_equal(seqs[:, :-1], last):
            for state, token in zip(self.rows, seqs[:, -1]):
                state.push(int(token))
        else:
            known = {row.tobytes(): state for row, state in zip(last, self.rows)} if last is not None else {}
            rows = []
            for row in seqs:
                prev = known.get(row[:-1].tobytes())
                if prev is None:
                    state = self.enc.grammar(row)
                else:
                    state = prev.copy()
                    state.push(int(row[-1]))
                rows.append(state)  # every row has its own state: the next call may push into it
            self.rows = rows
        self.last = seqs
        return torch.from_numpy(np.stack([state.allowed() for state in self.rows]))


def token_constraints(enc: TokenStream, generated_from: int, o: dict):
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
    ending = BestEnding(target - window, target + window) if target else None

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
        if target:
            ending.see(logits, new.shape[1], enc.eos)
            logits = processors.steer_length(logits, enc.eos, new.shape[1], target, window)
        return logits

    constrain.ending = ending  # kinds.Tokens.sample ends the rows that reached the length limit at their best place
    return constrain


class BestEnding:
    """Where each row would best end: the position, inside the ending window [start, end) of the length
    steering, with the highest log P(EOS) under the constraints (before the steering's own push). A row
    that reaches the length limit without emitting EOS is ended there (`cut`) instead of being cut back
    to its last complete note: the model's most ending-like place (e.g. after a long tonic chord)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.score: torch.Tensor | None = None  # (batch,) best log P(EOS) so far
        self.at: torch.Tensor | None = None  # (batch,) its position (index of the new token), -1 if none

    def see(self, logits: torch.Tensor, position: int, eos: int) -> None:
        """Record the EOS log-probability of the token at `position` (new tokens counted from 0)."""
        if not self.start <= position < self.end:
            return
        score = torch.log_softmax(logits.float(), -1)[:, eos]  # (batch,)
        if self.score is None:
            self.score = torch.full_like(score, float("-inf"))
            self.at = torch.full(score.shape, -1, dtype=torch.long)
        better = score > self.score
        self.score = torch.where(better, score, self.score)
        self.at = torch.where(better, torch.full_like(self.at, position), self.at)

    def cut(self, tokens: np.ndarray, eos: int) -> np.ndarray:
        """(batch, steps) new tokens -> the same with every row that has no EOS ended at its best place."""
        out = np.array(tokens, copy=True)
        if self.at is None:
            return out
        for row in range(len(out)):
            at = int(self.at[row])
            if at >= 0 and np.isfinite(float(self.score[row])) and not (out[row] == eos).any():
                out[row, at:] = eos
        return out


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
