"""Generation: stateful sampling from a loaded model, one step of work per new step.

The primer is run through the model once; after that every new step costs one LSTM step with the
state carried (a window is never re-run; a seq2seq model re-encodes its context once per decoded
window, as it was trained). Randomness comes from one `torch.Generator` seeded by `seed`, so the same
model, primer and seed give the same music.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from symusic import Score

from . import processors
from .errors import LstmidiError
from .midi import load_score
from .modelfile import LoadedModel


@dataclass
class Piece:
    """A generated piece: the Score (primer + continuation), how long the primer part is (seconds),
    and the encoded steps it was decoded from."""

    score: Score
    primer_seconds: float
    frames: np.ndarray


def notes_end(score: Score) -> float:
    """Seconds at which the last note of `score` ends (0 when it has none)."""
    ends = [n["time"] + n["duration"] for n in (t.notes.numpy() for t in score.to("second").tracks) if len(n["time"])]
    return float(max(e.max() for e in ends)) if ends else 0.0


def sample_frames(probs: torch.Tensor, mode: str, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, keys) probabilities -> (batch, keys) 0/1 frame."""
    if mode == "threshold":
        return (probs > threshold).float()
    return torch.bernoulli(probs, generator=generator)


@torch.no_grad()
def sample_multihot(model: torch.nn.Module, primer: torch.Tensor, steps: int, *, onset_keys: int | None = None,
                    mode: Literal["bernoulli", "threshold"] = "bernoulli", temperature: float = 1.0,
                    threshold: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps, features) by `steps` frames -> (batch, steps, features).

    `onset_keys`: when the features are [held keys | onsets], the number of keys; a sampled onset then
    forces its key to be held.
    """
    model.eval()
    logits, state = model(primer)  # (batch, primer_steps, features); a joint model gives its time state
    last = logits[:, -1]
    out = []
    for _ in range(steps):
        if hasattr(model, "sample_frame"):  # keys of a frame drawn jointly, key by key (endecell)
            frame = model.sample_frame(last, mode=mode, temperature=temperature, threshold=threshold, generator=generator)
        else:
            frame = sample_frames(torch.sigmoid(last / temperature), mode, threshold, generator)  # (batch, features)
        if onset_keys:
            frame[:, :onset_keys] = torch.maximum(frame[:, :onset_keys], frame[:, onset_keys:])
        out.append(frame)
        logits, state = model(frame[:, None, :], state)  # (batch, 1, features)
        last = logits[:, -1]
    return torch.stack(out, 1) if out else primer[:, :0]


@torch.no_grad()
def sample_tokens(model: torch.nn.Module, primer: torch.Tensor, steps: int, *, window: int = 64,
                  allowed: torch.Tensor | None = None, constrain=None, eos: int | None = None,
                  generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Continue `primer` (batch, primer_steps) tokens by up to `steps` tokens -> (batch, steps).

    A model with a `context` (seq2seq) encodes the `context` tokens before the last one, decodes up to
    `window` tokens step by step, then re-encodes the newest context and goes on. `allowed`: (vocab,)
    bool mask of tokens that may be generated; `constrain(logits, sequences)` -> logits applies
    constraints knowing each row's tokens so far (primer included). With `eos`, a row that emitted EOS
    is finished (padded with EOS) and sampling stops when every row is. `options`: temperature,
    top_k, top_p, greedy.
    """
    model.eval()
    context = getattr(model, "context", 0)
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
            raise LstmidiError("the sampling options together leave no token the model may write next "
                               "(loosen --key, --pitch-range, --programs or --max-repeat)") from None
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
            src = torch.cat([src[:, :1].expand(-1, context - src.shape[1]) if src.shape[1] else seq[:, :1].expand(-1, context), src], 1)
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
def sample_notes(model: torch.nn.Module, primer: torch.Tensor, steps: int, *, low: int = 21, high: int = 108,
                 max_step: float = 4.0, max_duration: float = 4.0, min_duration: float = 0.01,
                 temperatures: dict[str, float] | None = None, generator: torch.Generator | None = None,
                 seconds: float | None = None, **options) -> torch.Tensor:
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
                row[:, i] = processors.sample(logits, temperature=temperatures.get("pitch", options.get("temperature", 1.0)),
                                              **{k: v for k, v in options.items() if k != "temperature"},
                                              generator=generator).float()
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


def token_constraints(enc, generated_from: int, *, target: int | None = None, repetition_penalty: float | None = None,
                      max_repeat: int | None = None, key: str | None = None, pitch_range: tuple[int, int] | None = None,
                      programs: list[int] | None = None):
    """constrain(logits, sequences) for an event-token encoding: the grammar mask (every sequence
    decodes without token errors), repetition penalty, a cap on repeated pitches, key/scale and pitch
    range masks, allowed instruments, and steering towards EOS near `target` new tokens.
    `generated_from`: where the new tokens start in `sequences` (the primer's length)."""
    grammar = GrammarTracker(enc) if hasattr(enc, "grammar") else None
    pitch_of = torch.from_numpy(enc.pitch_of_token()).long() if hasattr(enc, "pitch_of_token") else None
    allowed_pitches = None
    if key or pitch_range:
        if pitch_of is None:
            raise LstmidiError(f"--key/--pitch-range need an event-token model; this one uses {enc.name!r}")
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
        if not getattr(enc.params, "programs", False):
            raise LstmidiError("--programs needs a model trained with programs (multi-instrument tokens)")
        of = torch.from_numpy(enc.program_of_token()).long()
        wanted = [getattr(enc, "DRUM_PROGRAM", 128) if p == -1 else p for p in programs]  # -1: drums (Program_-1)
        program_ok = (of < 0) | torch.isin(of, torch.tensor(wanted))

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
            logits = processors.steer_length(logits, enc.eos, new.shape[1], target, max(4, target // 10))
        return logits

    return constrain


def beam_tokens(model: torch.nn.Module, primer: torch.Tensor, steps: int, beam: int, eos: int, constrain) -> np.ndarray:
    """Beam search continuation of each primer row separately -> (batch, steps) padded with EOS."""
    rows = []
    for row in primer:
        logits, state = model(row[None])  # (1, primer_steps, vocab)

        def step_fn(tokens, st):
            out, st = model(tokens[:, None], st)
            return out[:, -1], st

        def processor(lg, seqs):
            full = torch.cat([row[None].expand(seqs.shape[0], -1), seqs], 1)
            return constrain(lg, full) if constrain else lg

        try:
            best, _ = processors.beam_search(step_fn, state, logits[:, -1], steps, beam, eos_id=eos, logit_processor=processor)
        except ValueError as err:
            if "every continuation is masked" not in str(err):
                raise
            raise LstmidiError("the sampling options together leave no token the model may write next "
                               "(loosen --key, --pitch-range, --programs or --max-repeat)") from None
        padded = np.full(steps, eos, np.int64)
        padded[: len(best)] = best.numpy()[:steps]
        rows.append(padded)
    return np.stack(rows)


def primer_steps(loaded: LoadedModel, primer: str | Path | Score | None, primer_seconds: float | None,
                 num: int, generator: torch.Generator) -> np.ndarray:
    """(num, primer_steps, ...) encoded primer: from a MIDI file or a Score (its first `primer_seconds`, default all),
    else random excerpts of held-out music stored in the model file; `primer_seconds=0` or no stored
    excerpts: one neutral step (a silent frame, the first token, or a middle-C note)."""
    enc = loaded.encoding
    if primer is not None:
        data = loaded.preset.data
        steps = enc.encode(primer if isinstance(primer, Score) else load_score(primer, data.tracks, data.drums))
        if hasattr(enc, "eos"):
            steps = steps[steps != enc.eos]  # the primer is continued, not ended
        if primer_seconds:
            steps = steps[: enc.steps_for_seconds(primer_seconds)]
        if len(steps) == 0:
            raise LstmidiError(f"{primer}: primer has no notes the model can read")
        return np.repeat(steps[None], num, axis=0)
    if hasattr(enc, "bos"):  # whole pieces: start at the beginning
        return np.full((num, 1), enc.bos, np.int64)
    if loaded.primers is not None and len(loaded.primers) and primer_seconds != 0:
        idx = torch.randint(len(loaded.primers), (num,), generator=generator).numpy()
        bank = loaded.primers[idx]
        return bank[:, : enc.steps_for_seconds(primer_seconds)] if primer_seconds else bank
    if enc.kind == "multihot":
        return np.zeros((num, 1, enc.sizes["input_size"]), np.uint8)
    if enc.kind == "tokens":
        return np.ones((num, 1), np.int64)
    neutral = {"pitch": 60.0, "step": 0.0, "duration": 0.5, "velocity": 80.0}
    return np.tile(np.array([[neutral[f] for f in enc.fields]], np.float32), (num, 1, 1))


def generate(loaded: LoadedModel, *, seconds: float | None = None, steps: int | None = None, num: int = 1,
             seed: int = 0, primer: str | Path | Score | None = None, primer_seconds: float | None = None,
             temperature: float | None = None, mode: str | None = None, threshold: float | None = None,
             top_k: int | None = None, top_p: float | None = None, greedy: bool | None = None,
             beam: int | None = None, repetition_penalty: float | None = None, max_repeat: int | None = None,
             key: str | None = None, pitch_range: tuple[int, int] | None = None, programs: list[int] | None = None,
             include_primer: bool = True) -> list[Piece]:
    """Generate `num` pieces in one batch with a loaded model.

    Length: `steps` encoding steps, or `seconds` of new music (default: the model's sample.seconds);
    an event-token model is steered to end with EOS near that length instead of being cut off.
    Each option left as None takes the model's default (its preset's `sample` section). Event-token
    models also take `beam` (beam search), `repetition_penalty`, `max_repeat` (no pitch more than N
    times in a row), `key` ("D minor"), `pitch_range` (low, high), `programs` (allowed instruments).
    `include_primer=False` leaves the primer out of the returned pieces.
    """
    from .options import resolve_options

    o = resolve_options(loaded, dict(seconds=seconds, steps=steps, num=num, seed=seed, primer_seconds=primer_seconds,
                                     temperature=temperature, mode=mode, threshold=threshold, top_k=top_k,
                                     top_p=top_p, greedy=greedy, beam=beam, repetition_penalty=repetition_penalty,
                                     max_repeat=max_repeat, key=key, pitch_range=pitch_range, programs=programs))
    enc, d = loaded.encoding, loaded.preset.sample
    steps, target, num = o["steps"], o["target"], o["num"]
    generator = torch.Generator().manual_seed(o["seed"])
    prime = primer_steps(loaded, primer, primer_seconds, num, generator)
    options = {k: o[k] for k in ("temperature", "top_k", "top_p", "greedy")}
    if enc.kind == "multihot":
        onset_keys = enc.params.keys if getattr(enc.params, "onsets", False) else None
        new = sample_multihot(loaded.model, torch.from_numpy(prime).float(), steps, onset_keys=onset_keys,
                              mode=o["mode"], temperature=options["temperature"],
                              threshold=o["threshold"], generator=generator).numpy().astype(np.uint8)
    elif enc.kind == "tokens":
        allowed = None
        if getattr(enc, "unknown_token", None) is not None:
            allowed = torch.ones(enc.sizes["vocab_size"], dtype=torch.bool)
            allowed[enc.unknown_token] = False
        constrain = None
        if hasattr(enc, "eos"):
            constrain = token_constraints(enc, prime.shape[1], target=target, repetition_penalty=repetition_penalty,
                                          max_repeat=max_repeat, key=key, pitch_range=pitch_range, programs=programs)
        if beam and beam > 1:
            new = beam_tokens(loaded.model, torch.from_numpy(prime).long(), steps, beam, enc.eos, constrain)
        else:
            new = sample_tokens(loaded.model, torch.from_numpy(prime).long(), steps, window=loaded.preset.train.window,
                                allowed=allowed, constrain=constrain, eos=getattr(enc, "eos", None),
                                generator=generator, **options).numpy()
    else:
        p = enc.params
        timed = not o["steps_given"] and "step" in enc.fields  # --seconds: generate until that much music
        wanted = o["seconds"]
        new = sample_notes(loaded.model, torch.from_numpy(prime).float(), steps * 8 if timed else steps, low=p.low,
                           high=p.high, max_step=p.max_step, max_duration=p.max_duration,
                           min_duration=max(p.resolution, 0.01), temperatures=d.temperatures, generator=generator,
                           seconds=wanted if timed else None, **options).numpy()
        if timed:  # keep each row's notes that start within the requested time
            col = enc.fields.index("step")
            new = [row[: max(1, int((np.cumsum(row[:, col]) <= wanted).sum()))] for row in new]
    pieces = []
    for i in range(num):
        frames = np.concatenate([prime[i], new[i].astype(prime.dtype)]) if include_primer else new[i].astype(prime.dtype)
        if not include_primer and hasattr(enc, "bos"):
            frames = np.concatenate([[enc.bos], frames])
        if hasattr(enc, "finish"):  # cut at the first EOS, or close a piece that reached the length limit
            frames = enc.finish(frames)
        if not include_primer:
            primer_len = 0.0
        elif enc.kind == "multihot":
            primer_len = prime.shape[1] * enc.seconds_per_step
        else:
            primer_len = notes_end(enc.decode(prime[i]))
        pieces.append(Piece(enc.decode(frames), primer_len, frames))
    return pieces
