"""Logit processors for categorical heads: pure, chainable functions on (batch, vocab) logits.

Each returns new logits (the input is never modified); removed tokens get -inf. `sample` chains them
in the usual order (temperature, then top-k, then top-p on the tempered distribution) and draws one
token per row from a `torch.Generator`, so a seeded generator reproduces the samples.

Generation constraints for event tokens (repetition penalty, pitch-repeat cap, scale and range masks,
length steering) and a beam search over a stateful model are pure functions too; encodings
supply the lookup tables (e.g. `pitch_of_token`), this module never imports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

NEG_INF = float("-inf")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide (batch, vocab) logits by `t` > 0: t < 1 sharpens, t > 1 flattens, t -> 0 approaches argmax."""
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t}")
    return logits / t  # (batch, vocab)


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` >= 1 largest logits of each row (ties broken by torch.topk), mask the rest;
    k >= vocab keeps everything."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    if k >= logits.shape[-1]:
        return logits.clone()
    idx = logits.topk(k, dim=-1).indices  # (batch, k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)  # (batch, vocab)
    return logits.masked_fill(~keep, NEG_INF)  # (batch, vocab)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches `p`
    (0 < p <= 1; 1 keeps everything). The most likely token is always kept."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    if p == 1:
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (batch, vocab)
    probs = sorted_logits.float().softmax(-1)  # (batch, vocab)
    before = probs.cumsum(-1) - probs  # (batch, vocab) mass of the more likely tokens
    drop_sorted = before >= p  # the set already reached p without this token; first is never dropped
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)  # (batch, vocab) original order
    return logits.masked_fill(drop, NEG_INF)  # (batch, vocab)


def mask_tokens(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mask every token whose `allowed` entry is False. allowed: bool, (vocab,) for all rows or
    (batch, vocab) per row (e.g. a token grammar or a pitch range)."""
    if allowed.dtype != torch.bool:
        raise ValueError(f"allowed must be a bool tensor, got {allowed.dtype}")
    if allowed.shape not in (logits.shape[-1:], logits.shape):
        raise ValueError(
            f"allowed must have shape {tuple(logits.shape[-1:])} or {tuple(logits.shape)}, got {tuple(allowed.shape)}"
        )
    return logits.masked_fill(~allowed.to(logits.device), NEG_INF)  # (batch, vocab)


_temperature, _top_k, _top_p = temperature, top_k, top_p  # sample's keywords shadow these names


def sample(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    uncut: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row of (batch, vocab) logits -> (batch,) long.

    greedy=True takes the argmax (other options are still validated). Otherwise: temperature
    (default 1.0, > 0), then top_k (None = off, >= 1), then top_p (None = off, in (0, 1]), then
    `draw` on the softmax with `generator`. `uncut`: bool (vocab,), tokens top_p never removes (the
    nucleus is still measured over the whole distribution). Raises ValueError for bad parameters and
    for a row whose tokens are all masked (-inf).
    """
    t, k, p = temperature, top_k, top_p
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {t}")
    if k is not None and k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {k}")
    if p is not None and not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {p}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, vocab), got shape {tuple(logits.shape)}")
    dead = torch.isneginf(logits).all(-1)  # (batch,)
    if dead.any():
        raise ValueError(f"every token is masked in row(s) {dead.nonzero().flatten().tolist()}: nothing to sample")
    if greedy:
        return logits.argmax(-1)  # (batch,)
    x = _temperature(logits, t)  # (batch, vocab)
    if k is not None:
        x = _top_k(x, k)
    if p is not None:
        x = _top_p(x, p) if uncut is None else torch.where(uncut, x, _top_p(x, p))
    return draw(x.float().softmax(-1), generator)  # (batch,)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of (batch, vocab) probabilities (rows need not sum to 1) -> (batch,) long, drawn
    with P(i) = probs[i] / row sum: a uniform draw through the inverse of the row's cumulative sum (in
    float64). A zero-probability index is never drawn. Same distribution as `torch.multinomial(probs, 1)`,
    ~5x faster at batch 32."""
    cdf = probs.double().cumsum(-1)  # (batch, vocab)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True).squeeze(-1)  # the first i with cdf[i] > u
    last = probs.shape[-1] - 1 - (probs.flip(-1) > 0).int().argmax(-1)  # rounding never reaches past it
    return torch.minimum(index, last)


def sample_regression(value: torch.Tensor, *, low: float | None = None, high: float | None = None) -> torch.Tensor:
    """Clamp a regression head's output into its valid range (same shape, same unit as the head).

    low/high: None = unbounded on that side. Examples: durations in seconds with low=1e-3 (a positive
    floor, since a duration of 0 is not a note); MIDI pitches with low=0, high=127 (round afterwards).
    """
    if low is not None and high is not None and low > high:
        raise ValueError(f"sample_regression: low ({low}) must be <= high ({high})")
    if low is None and high is None:
        return value.clone()
    return value.clamp(min=low, max=high)


# ---- generation constraints (event tokens) ---------------------------------------------------------
# Lookup table supplied by the encoding: pitch_of_token (vocab,) long = MIDI pitch of a Pitch token, -1 otherwise.


def _check_pitch_table(logits: torch.Tensor, pitch_of_token: torch.Tensor) -> torch.Tensor:
    if pitch_of_token.shape != logits.shape[-1:]:
        raise ValueError(
            f"pitch_of_token must have shape {tuple(logits.shape[-1:])}, got {tuple(pitch_of_token.shape)}"
        )
    if pitch_of_token.numel() and not (-1 <= int(pitch_of_token.min()) and int(pitch_of_token.max()) <= 127):
        raise ValueError("pitch_of_token entries must be MIDI pitches 0..127 or -1 (not a Pitch token)")
    return pitch_of_token.to(logits.device).long()  # (vocab,)


def repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL repetition penalty: every token occurring in its row's `history` gets its logit divided by
    `penalty` if positive, multiplied by it if negative (so it always becomes less likely); others untouched.

    logits: (batch, vocab). history: (batch, t) long token ids, -1 = padding (ignored); t may be 0.
    penalty >= 1 (1 = off; CTRL used 1.2).
    """
    if not penalty >= 1:
        raise ValueError(f"repetition penalty must be >= 1, got {penalty}")
    if history.dim() != 2 or history.shape[0] != logits.shape[0]:
        raise ValueError(f"history must be (batch={logits.shape[0]}, t), got shape {tuple(history.shape)}")
    hist = history.to(logits.device).long()  # (batch, t)
    counts = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
    seen = counts.scatter_add_(-1, hist.clamp(min=0), (hist >= 0).long()) > 0  # (batch, vocab); padding adds 0
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)  # (batch, vocab)
    return torch.where(seen, penalized, logits)  # (batch, vocab)


def cap_pitch_repeats(
    logits: torch.Tensor,
    history_pitches: torch.Tensor | Sequence[Sequence[int]],
    pitch_of_token: torch.Tensor,
    max_repeats: int,
) -> torch.Tensor:
    """Forbid (-inf) the Pitch tokens of a pitch already played `max_repeats` times in a row.

    "In a row" means consecutive Pitch tokens of the row's history, ignoring every non-pitch token:
    a row is capped when its last `max_repeats` played pitches are all the same pitch p, and then
    exactly the tokens with pitch_of_token == p are masked (other pitches and non-pitch tokens untouched).

    logits: (batch, vocab). history_pitches: per row the played pitches, oldest first, as a (batch, t)
    long tensor with -1 for padding / non-pitch tokens (e.g. `pitch_of_token[token_history]`) or as a
    list of per-row pitch lists. pitch_of_token: (vocab,) long, -1 for non-pitch tokens. max_repeats >= 1.
    """
    if max_repeats < 1:
        raise ValueError(f"max_repeats must be >= 1, got {max_repeats}")
    table = _check_pitch_table(logits, pitch_of_token)  # (vocab,)
    if isinstance(history_pitches, torch.Tensor):
        h = history_pitches.to(logits.device).long()  # (batch, t)
    else:
        rows = [list(r) for r in history_pitches]
        h = torch.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=torch.long, device=logits.device)
        for i, r in enumerate(rows):
            h[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    if h.dim() != 2 or h.shape[0] != logits.shape[0]:
        raise ValueError(
            f"history_pitches must have {logits.shape[0]} rows (one per batch row), got shape {tuple(h.shape)}"
        )
    h = torch.cat([h.new_full((h.shape[0], 1), -1), h], 1)  # (batch, t + 1): never empty
    played = h >= 0  # (batch, t + 1)
    from_end = played.flip(-1).cumsum(-1).flip(-1)  # (batch, t + 1) played pitches at or after each position
    last = torch.where(played & (from_end == 1), h, -1).amax(-1)  # (batch,) last played pitch, -1 none
    tail = played & (from_end <= max_repeats)  # (batch, t + 1) the last `max_repeats` played pitches
    capped = (played.sum(-1) >= max_repeats) & (~tail | (h == last[:, None])).all(-1)  # (batch,)
    forbid = capped[:, None] & (table[None, :] == last[:, None]) & (table[None, :] >= 0)  # (batch, vocab)
    return logits.masked_fill(forbid, NEG_INF)  # (batch, vocab)


_TONICS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
_SCALES = {  # semitones above the tonic
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor
    "natural minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),  # ascending form
}
KEY_FORMS = (
    "'<tonic> <scale>', case-insensitive: tonic one of C D E F G A B with an optional '#' (sharp) or "
    "'b' (flat); scale one of " + ", ".join(_SCALES) + ". Examples: 'C major', 'D minor', 'F# major', "
    "'Bb minor', 'A harmonic minor'"
)


def scale_mask(key: str) -> torch.Tensor:
    """(128,) bool: which MIDI pitches belong to the scale named by `key` (all octaves).

    Accepted: see KEY_FORMS, e.g. "C major" (the white keys), "D minor" (natural minor), "F# major" ==
    "Gb major", "bb MINOR", "A harmonic minor", "A melodic minor" (ascending). Anything else raises
    ValueError listing the accepted forms.
    """
    parts = key.strip().lower().split() if isinstance(key, str) else []
    m = re.fullmatch(r"([a-g])([#♯b♭]?)", parts[0]) if parts else None
    scale = " ".join(parts[1:])
    if m is None or scale not in _SCALES:
        raise ValueError(f"unknown key {key!r}; accepted forms: {KEY_FORMS}")
    tonic = (_TONICS[m[1]] + _ACCIDENTALS[m[2]]) % 12
    classes = torch.tensor([(tonic + i) % 12 for i in _SCALES[scale]])
    return torch.isin(torch.arange(128) % 12, classes)  # (128,)


def pitch_range_mask(low: int, high: int) -> torch.Tensor:
    """(128,) bool: True for MIDI pitches low..high inclusive (0 <= low <= high <= 127; piano: 21, 108)."""
    if not 0 <= low <= high <= 127:
        raise ValueError(f"pitch range must satisfy 0 <= low <= high <= 127, got low={low}, high={high}")
    pitches = torch.arange(128)
    return (pitches >= low) & (pitches <= high)  # (128,)


def mask_pitches(logits: torch.Tensor, pitch_of_token: torch.Tensor, allowed_pitches: torch.Tensor) -> torch.Tensor:
    """Forbid (-inf) every Pitch token whose pitch is not allowed; non-pitch tokens are untouched.

    logits: (batch, vocab). pitch_of_token: (vocab,) long, -1 for non-pitch tokens. allowed_pitches: (128,)
    bool, e.g. `scale_mask("D minor") & pitch_range_mask(48, 84)`.
    """
    if allowed_pitches.dtype != torch.bool or allowed_pitches.shape != (128,):
        raise ValueError(
            f"allowed_pitches must be a (128,) bool tensor, got {allowed_pitches.dtype} {tuple(allowed_pitches.shape)}"
        )
    table = _check_pitch_table(logits, pitch_of_token)  # (vocab,)
    ok = allowed_pitches.to(logits.device)[table.clamp(min=0)] | (table < 0)  # (vocab,)
    return logits.masked_fill(~ok, NEG_INF)  # (batch, vocab)


def steer_length(
    logits: torch.Tensor, eos_id: int, position: int | torch.Tensor, target: int, window: int, strength: float = 2.0
) -> torch.Tensor:
    """Steer each row to end (emit `eos_id`) near `target` tokens.

    position: the index the token being chosen will take (tokens the row already has, counted as the
    caller counts `target`), an int for all rows or a (batch,) tensor since rows end at different times.
    With start = target - window and end = target + window:
      position <  start:          EOS is forbidden (-inf);
      start <= position < end:    EOS logit += strength * (position - start) / window  (nats; 0 at start,
                                  `strength` at target, ~2 * strength just before end);
      position >= end:            EOS is certain (EOS logit 0, every other token -inf).
    window >= 0 tokens (0 = exactly `target` tokens before EOS); strength >= 0 nats per window (default 2.0).
    """
    batch, vocab = logits.shape
    if not 0 <= eos_id < vocab:
        raise ValueError(f"eos_id must be in [0, {vocab}), got {eos_id}")
    if window < 0 or not strength >= 0:
        raise ValueError(f"window and strength must be >= 0, got window={window}, strength={strength}")
    start, end = target - window, target + window
    out = logits.clone()
    if isinstance(position, int):  # one position for every row (the sampler's case): no per-row tensors
        if position >= end:
            out.fill_(NEG_INF)
            out[:, eos_id] = 0.0
        elif position < start:
            out[:, eos_id] = NEG_INF
        else:
            out[:, eos_id] += strength * (position - start) / max(window, 1)
        return out
    pos = torch.as_tensor(position, device=logits.device).float().expand(batch)  # (batch,)
    eos = logits[:, eos_id] + strength * (pos - start) / max(window, 1)  # (batch,)
    eos = torch.where(pos < start, NEG_INF, eos)
    out[:, eos_id] = eos.to(logits.dtype)
    only_eos = torch.full_like(logits, NEG_INF)
    only_eos[:, eos_id] = 0.0
    return torch.where((pos >= end)[:, None], only_eos, out)  # (batch, vocab)


State = tuple[torch.Tensor, ...]
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


@torch.no_grad()
def beam_search(
    step_fn: StepFn,
    init_state: State,
    first_logits: torch.Tensor,
    steps: int,
    beam: int,
    *,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
    logit_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, float]:
    """Beam search over a stateful model -> (best sequence (t,) long, its log-probability in nats).

    step_fn(tokens (beams,) long, state) -> (logits (beams, vocab), state) feeds one token per beam; state
    is a tuple of tensors whose dim 1 is the beam dim (an LSTM's (h, c): (layers, beams, hidden)), e.g.
    `lambda tok, s: (lambda o, s: (o[:, -1], s))(*model(tok[:, None], s))`. init_state (beam dim 1) and
    first_logits (1, vocab) are the model's state and output after the primer. At most `steps` tokens are
    generated (EOS included); step_fn is called once per token after the first, never after the last.

    Each step, logit_processor(logits (beams, vocab), sequences (beams, t) generated so far; t = 0 first)
    may mask or reshape the logits (its -inf tokens are never chosen); scores are sums of log_softmax of
    the processed logits. The `beam` best extensions are kept (states reordered by index_select on dim 1);
    one ending in `eos_id` is finished and leaves the beam, whose width shrinks by one, so beam=1 is exactly
    greedy decoding (stopping at EOS). Finished hypotheses and the unfinished ones left after `steps`
    compete by the GNMT length-normalised score logp / ((5 + length) / 6) ** length_penalty (length in tokens,
    EOS included; length_penalty >= 0, default 1.0; 0 = plain log-probability, which favours short sequences).
    A beam whose every continuation is masked is dropped; ValueError when no hypothesis survives.
    """
    if beam < 1 or steps < 1:
        raise ValueError(f"beam and steps must be >= 1, got beam={beam}, steps={steps}")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    if first_logits.dim() != 2 or first_logits.shape[0] != 1:
        raise ValueError(f"first_logits must be (1, vocab), got shape {tuple(first_logits.shape)}")
    if not isinstance(init_state, (tuple, list)):
        raise ValueError("init_state must be a tuple of tensors (e.g. an LSTM's (h, c)), not a single tensor")
    device, vocab = first_logits.device, first_logits.shape[-1]
    seqs = torch.zeros(1, 0, dtype=torch.long, device=device)  # (beams, t)
    scores = torch.zeros(1, device=device)  # (beams,) summed log-probs, nats
    logits, state, width = first_logits, tuple(init_state), beam
    best: tuple[float, torch.Tensor, float] | None = None  # (normalised score, sequence, log-prob)

    def offer(seq: torch.Tensor, logp: float) -> None:
        nonlocal best
        score = logp / ((5 + len(seq)) / 6) ** length_penalty
        if best is None or score > best[0]:
            best = (score, seq, logp)

    for t in range(steps):
        if logit_processor is not None:
            logits = logit_processor(logits, seqs)
        logp = logits.float().log_softmax(-1)  # (beams, vocab)
        cand = scores[:, None] + logp.masked_fill(logp.isnan(), NEG_INF)  # (beams, vocab); all-masked row -> -inf
        top = cand.flatten().topk(min(width, cand.numel()))
        finite = torch.isfinite(top.values)
        scores, flat = top.values[finite], top.indices[finite]  # (k,)
        rows, tokens = flat // vocab, flat % vocab  # (k,)
        seqs = torch.cat([seqs[rows], tokens[:, None]], 1)  # (k, t + 1)
        done = tokens == eos_id if eos_id is not None else torch.zeros_like(tokens, dtype=torch.bool)  # (k,)
        for i in done.nonzero().flatten().tolist():
            offer(seqs[i], float(scores[i]))
        width -= int(done.sum())
        seqs, scores, rows, tokens = seqs[~done], scores[~done], rows[~done], tokens[~done]
        if len(tokens) == 0 or t == steps - 1:
            break
        state = tuple(s.index_select(1, rows) for s in state)  # (layers, k, hidden) each
        logits, state = step_fn(tokens, state)
    for i in range(len(seqs)):  # unfinished hypotheses after `steps` tokens
        offer(seqs[i], float(scores[i]))
    if best is None:
        raise ValueError("beam_search: every continuation is masked: no sequence to return")
    return best[1], best[2]
