"""Generation constraints and beam search: exact values on hand-built logits, seeded draws, a hand-built
Markov "model" whose best sequence is known, and brute-force enumeration as the reference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lstmidi.processors import (
    KEY_FORMS,
    beam_search,
    cap_pitch_repeats,
    mask_pitches,
    mask_tokens,
    pitch_range_mask,
    repetition_penalty,
    sample,
    scale_mask,
    steer_length,
)

# A tiny event vocabulary: 0 Bar, 1 Position, 2..5 Pitch 60 62 64 65, 6 Velocity.
PITCH_OF_TOKEN = torch.tensor([-1, -1, 60, 62, 64, 65, -1])


def masked(logits: torch.Tensor) -> list[list[int]]:
    return [torch.isneginf(row).nonzero().flatten().tolist() for row in logits]


# ---- repetition penalty ---------------------------------------------------------------------------


def test_repetition_penalty_hand_values():
    x = torch.tensor([[2.0, -1.0, 0.5, 0.0, 3.0], [2.0, -1.0, 0.5, 0.0, 3.0]])
    history = torch.tensor([[0, 1, 1, 3, -1], [4, -1, -1, -1, -1]])  # -1 = padding; repeats count once
    out = repetition_penalty(x, history, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 0.0, 3.0], [2.0, -1.0, 0.5, 0.0, 1.5]]
    assert x[0, 0] == 2.0  # pure
    assert torch.equal(repetition_penalty(x, history, 1.0), x)
    assert torch.equal(repetition_penalty(x, torch.zeros(2, 0, dtype=torch.long), 3.0), x)


def test_repetition_penalty_errors():
    with pytest.raises(ValueError, match="must be >= 1"):
        repetition_penalty(torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), 0.9)
    with pytest.raises(ValueError, match="history must be"):
        repetition_penalty(torch.zeros(2, 3), torch.zeros(1, 1, dtype=torch.long), 1.2)


# ---- pitch-repeat cap -----------------------------------------------------------------------------


def test_cap_pitch_repeats_ignores_non_pitch_tokens():
    tokens = torch.tensor(
        [
            [2, 0, 2, 1, 6, 2],  # 60 60 60 with other tokens between: capped at 3
            [0, 3, 2, 2, 1, 6],  # 62 60 60: only two in a row
            [2, 2, 3, 3, 3, 6],  # 60 60 62 62 62: 62 capped
            [0, 1, 6, 0, 1, 6],  # no pitch at all
            [2, 2, 2, 2, 2, 2],  # 60 six times
        ]
    )
    history = PITCH_OF_TOKEN[tokens]  # (batch, t) pitches, -1 for non-pitch tokens
    out = cap_pitch_repeats(torch.zeros(5, 7), history, PITCH_OF_TOKEN, 3)
    assert masked(out) == [[2], [], [3], [], [2]]
    as_lists = [[60, 60, 60], [62, 60, 60], [60, 60, 62, 62, 62], [], [60] * 6]
    assert torch.equal(cap_pitch_repeats(torch.zeros(5, 7), as_lists, PITCH_OF_TOKEN, 3), out)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_cap_pitch_repeats_at_n_not_before(n):
    x = torch.zeros(3, 7)
    history = [[64] * n, [64] * (n - 1), [62] + [64] * (n - 1)]
    assert masked(cap_pitch_repeats(x, history, PITCH_OF_TOKEN, n)) == [[4], [], [3] if n == 1 else []]
    assert masked(cap_pitch_repeats(x, history, PITCH_OF_TOKEN, n + 1)) == [[], [], []]


def test_cap_pitch_repeats_errors():
    with pytest.raises(ValueError, match="max_repeats"):
        cap_pitch_repeats(torch.zeros(1, 7), [[60]], PITCH_OF_TOKEN, 0)
    with pytest.raises(ValueError, match="pitch_of_token must have shape"):
        cap_pitch_repeats(torch.zeros(1, 5), [[60]], PITCH_OF_TOKEN, 2)
    with pytest.raises(ValueError, match="rows"):
        cap_pitch_repeats(torch.zeros(2, 7), [[60]], PITCH_OF_TOKEN, 2)


# ---- scales and pitch masks -----------------------------------------------------------------------


def classes(mask: torch.Tensor) -> set[int]:
    return {p % 12 for p in mask.nonzero().flatten().tolist()}


def test_scale_mask_exact_pitch_classes():
    d_minor = scale_mask("D minor")
    assert d_minor.shape == (128,) and d_minor.dtype == torch.bool
    assert classes(d_minor) == {2, 4, 5, 7, 9, 10, 0}  # D E F G A Bb C
    assert all(bool(d_minor[p]) == (p % 12 in {2, 4, 5, 7, 9, 10, 0}) for p in range(128))
    white = {0, 2, 4, 5, 7, 9, 11}
    assert all(bool(scale_mask("C major")[p]) == (p % 12 in white) for p in range(128))
    assert torch.equal(scale_mask("c MAJOR"), scale_mask("  C   major "))
    assert torch.equal(scale_mask("A minor"), scale_mask("C major"))  # relative keys
    assert torch.equal(scale_mask("A natural minor"), scale_mask("a minor"))
    assert classes(scale_mask("A harmonic minor")) == {9, 11, 0, 2, 4, 5, 8}  # G#, not G
    assert classes(scale_mask("A melodic minor")) == {9, 11, 0, 2, 4, 6, 8}


@pytest.mark.parametrize(
    "a, b",
    [
        ("F# major", "Gb major"),
        ("Bb minor", "A# minor"),
        ("bb minor", "A♯ minor"),
        ("Db major", "C# major"),
        ("Cb major", "B major"),
        ("E# minor", "F minor"),
    ],
)
def test_scale_mask_enharmonic_spellings(a, b):
    assert torch.equal(scale_mask(a), scale_mask(b))


def test_scale_mask_sharps_and_flats():
    assert classes(scale_mask("F# major")) == {6, 8, 10, 11, 1, 3, 5}
    assert classes(scale_mask("Bb minor")) == {10, 0, 1, 3, 5, 6, 8}


@pytest.mark.parametrize("bad", ["H major", "C dorian", "", "C", "Cbb major", "C# #major", "major C", "Cmaj"])
def test_scale_mask_bad_names(bad):
    with pytest.raises(ValueError) as err:
        scale_mask(bad)
    assert repr(bad) in str(err.value) and KEY_FORMS in str(err.value)
    assert "major, minor, natural minor, harmonic minor, melodic minor" in str(err.value)


def test_pitch_range_mask():
    piano = pitch_range_mask(21, 108)
    assert piano.sum() == 88 and piano[21] and piano[108] and not piano[20] and not piano[109]
    assert pitch_range_mask(60, 60).nonzero().flatten().tolist() == [60]
    for low, high in [(-1, 10), (10, 128), (70, 60)]:
        with pytest.raises(ValueError, match="0 <= low <= high <= 127"):
            pitch_range_mask(low, high)


def test_mask_pitches_only_touches_pitch_tokens():
    x = torch.arange(7.0)[None].expand(2, 7)
    out = mask_pitches(x, PITCH_OF_TOKEN, scale_mask("C major"))  # 60 62 64 65 are all in C major
    assert torch.equal(out, x)
    out = mask_pitches(x, PITCH_OF_TOKEN, scale_mask("D major"))  # D E F# G A B C#: 60 (C) and 65 (F) are out
    assert masked(out) == [[2, 5], [2, 5]] and out[0, [0, 1, 3, 4, 6]].tolist() == [0.0, 1.0, 3.0, 4.0, 6.0]
    with pytest.raises(ValueError, match="128"):
        mask_pitches(x, PITCH_OF_TOKEN, torch.ones(127, dtype=torch.bool))
    with pytest.raises(ValueError, match="0..127 or -1"):
        mask_pitches(x, torch.tensor([-1, -1, 60, 62, 64, 200, -1]), scale_mask("C major"))


def test_masked_pitch_never_sampled():
    # vocab: 0 Bar, 1 TimeShift, 2..129 Pitch 0..127
    table = torch.cat([torch.tensor([-1, -1]), torch.arange(128)])
    allowed = scale_mask("D minor") & pitch_range_mask(60, 72)
    logits = torch.randn(1, 130, generator=torch.Generator().manual_seed(0)).expand(1000, 130)
    draws = sample(mask_pitches(logits, table, allowed), temperature=3.0, generator=torch.Generator().manual_seed(1))
    pitches = table[draws]
    assert all(p == -1 or bool(allowed[p]) for p in pitches.tolist())
    assert (pitches == -1).any() and len(set(pitches.tolist())) > 4  # non-pitch and several pitches drawn


# ---- length steering ------------------------------------------------------------------------------


def test_steer_length_schedule():
    eos, target, window, strength = 4, 10, 3, 2.0
    positions = torch.arange(21)  # one row per position
    out = steer_length(torch.zeros(21, 5), eos, positions, target, window, strength)
    p_eos = out.softmax(-1)[:, eos]  # (21,)
    assert (p_eos[:7] == 0).all() and torch.equal(out[:7, :eos], torch.zeros(7, 4))  # before 10 - 3
    ramp = p_eos[7:13]
    assert (ramp > 0).all() and (ramp < 1).all() and (ramp.diff() > 0).all()  # increasing
    assert out[7:13, eos].tolist() == pytest.approx([strength * k / window for k in range(6)])  # bonus formula
    assert (p_eos[13:] == 1).all() and torch.isneginf(out[13:, :eos]).all()  # certain from 10 + 3
    g = torch.Generator().manual_seed(0)
    assert (sample(out[13:].repeat(50, 1), generator=g) == eos).all()


def test_steer_length_int_position_equals_per_row_positions():
    x = torch.randn(2, 7, generator=torch.Generator().manual_seed(0))
    for position in range(0, 25):
        fast = steer_length(x, 3, position, target=12, window=4)
        per_row = steer_length(x, 3, torch.full((2,), position), target=12, window=4)
        assert torch.equal(fast, per_row), position


def test_steer_length_int_position_window_zero_and_errors():
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    assert torch.isneginf(steer_length(x, 5, 4, target=5, window=0)[:, 5]).all()
    assert (steer_length(x, 5, 5, target=5, window=0).softmax(-1)[:, 5] == 1).all()
    assert x[0, 5] != float("-inf")  # pure
    with pytest.raises(ValueError, match="eos_id"):
        steer_length(x, 6, 0, 5, 1)
    with pytest.raises(ValueError, match="window and strength"):
        steer_length(x, 5, 0, 5, -1)


# ---- beam search ----------------------------------------------------------------------------------

A, B, C, EOS = 0, 1, 2, 3


def markov(first: list[float], table: list[list[float]]):
    """A stateless 'model': the next-token distribution depends on the last token only. The state is a
    dummy LSTM-shaped (h, c) that must keep its beam dim in step with the beams."""
    logp = torch.tensor(table).log()  # (vocab, vocab)
    calls = []

    def step_fn(tokens, state):
        assert state[0].shape == (1, len(tokens), 1) and state[1].shape == (2, len(tokens), 3)
        calls.append(tokens.tolist())
        return logp[tokens], state

    return step_fn, (torch.zeros(1, 1, 1), torch.zeros(2, 1, 3)), torch.tensor([first]).log(), calls


# greedy takes A (0.6) then A (0.4): 0.24; the best two-token sequence is B C: 0.4 * 0.9 = 0.36
GREEDY_TRAP = (
    [0.6, 0.4, 0.0, 0.0],
    [[0.4, 0.3, 0.3, 0.0], [0.05, 0.05, 0.9, 0.0], [0.3, 0.3, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]],
)


def test_beam_finds_best_sequence_greedy_misses():
    step_fn, state, first, calls = markov(*GREEDY_TRAP)
    seq, logp = beam_search(step_fn, state, first, steps=2, beam=2)
    assert seq.tolist() == [B, C] and seq.dtype == torch.long and logp == pytest.approx(math.log(0.36))
    assert calls == [[A, B]]  # one model step, never a step after the last token
    seq, logp = beam_search(*markov(*GREEDY_TRAP)[:3], steps=2, beam=1)
    assert seq.tolist() == [A, A] and logp == pytest.approx(math.log(0.24))


def test_beam_eos_and_length_penalty():
    # EOS at once: 0.45; A A A A (unfinished after 4 steps): 0.55 * 0.8 ** 3 = 0.2816
    model = ([0.55, 0.0, 0.0, 0.45], [[0.8, 0.0, 0.0, 0.2]] + [[0.25] * 4] * 3)
    short, long = math.log(0.45), math.log(0.55 * 0.8**3)
    for alpha, best in [(0.0, [EOS]), (1.0, [EOS]), (2.0, [A, A, A, A])]:
        # GNMT scores logp / ((5 + length) / 6) ** alpha: alpha=1: -0.80 vs -1.27 / 1.5 = -0.84 (a plain
        # per-token average would pick A A A A); alpha=2: -0.80 vs -1.27 / 2.25 = -0.56
        seq, logp = beam_search(*markov(*model)[:3], steps=4, beam=2, eos_id=EOS, length_penalty=alpha)
        assert seq.tolist() == best and logp == pytest.approx(short if best == [EOS] else long)
    # a finished beam leaves the beam: after [EOS] and [A, EOS] (beam=2) the search stops
    step_fn, state, first, calls = markov([0.5, 0.0, 0.0, 0.5], [[0.4, 0.0, 0.0, 0.6]] + [[0.25] * 4] * 3)
    seq, logp = beam_search(step_fn, state, first, steps=10, beam=2, eos_id=EOS)
    assert seq.tolist() == [EOS] and logp == pytest.approx(math.log(0.5)) and calls == [[A]]
    # every beam finished at once: no model step at all
    step_fn, state, first, calls = markov([0.0, 0.0, 0.0, 1.0], model[1])
    seq, logp = beam_search(step_fn, state, first, steps=10, beam=3, eos_id=EOS)
    assert seq.tolist() == [EOS] and logp == 0.0 and calls == []
    # without eos_id, EOS is an ordinary token and the search runs all `steps`
    seq, _ = beam_search(*markov(*model)[:3], steps=3, beam=2)
    assert len(seq) == 3


def test_beam_applies_logit_processor():
    seen = []

    def no_c(logits, sequences):
        seen.append(tuple(sequences.shape))
        return mask_tokens(logits, torch.tensor([True, True, False, True]))

    seq, logp = beam_search(*markov(*GREEDY_TRAP)[:3], steps=2, beam=2, logit_processor=no_c)
    # B C is no longer possible; scores are log-probs of the processed (renormalised) logits
    assert seq.tolist() == [A, A] and logp == pytest.approx(math.log(0.6 * 0.4 / 0.7))
    assert seen == [(1, 0), (2, 1)]
    with pytest.raises(ValueError, match="every continuation is masked"):
        beam_search(
            *markov(*GREEDY_TRAP)[:3],
            steps=2,
            beam=2,
            logit_processor=lambda x, s: mask_tokens(x, torch.zeros(4, dtype=torch.bool)),
        )


def history_model(vocab: int, seed: int):
    """A model whose logits depend on the whole history, carried in the state h = a code of the tokens
    fed so far: reordering the state wrongly gives wrong log-probabilities."""

    def logits_after(code: float) -> torch.Tensor:  # (vocab,)
        return 3 * torch.randn(vocab, generator=torch.Generator().manual_seed(seed * 100003 + int(code)))

    def step_fn(tokens, state):
        code = state[0][0, :, 0] * (vocab + 1) + tokens + 1  # (beams,)
        logits = torch.stack([logits_after(float(c)) for c in code])  # (beams, vocab)
        return logits, (code[None, :, None], state[1])

    def logp_of(seq: list[int]) -> float:
        total, code = 0.0, 0.0
        for tok in seq:
            total += float(logits_after(code).log_softmax(-1)[tok])
            code = code * (vocab + 1) + tok + 1
        return total

    state = (torch.zeros(1, 1, 1, dtype=torch.float64), torch.zeros(3, 1, 2))
    return step_fn, state, logits_after(0.0)[None], logp_of


@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_equals_brute_force(seed):
    vocab, eos, steps, alpha = 4, 3, 4, 0.7
    step_fn, state, first, logp_of = history_model(vocab, seed)
    candidates = [list(p) + [eos] for n in range(steps) for p in itertools.product(range(eos), repeat=n)]
    candidates += [list(p) for p in itertools.product(range(eos), repeat=steps)]  # unfinished after `steps`
    best = max(candidates, key=lambda s: logp_of(s) / ((5 + len(s)) / 6) ** alpha)
    seq, logp = beam_search(step_fn, state, first, steps, beam=256, eos_id=eos, length_penalty=alpha)
    assert seq.tolist() == best and logp == pytest.approx(logp_of(best), abs=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_beam_one_is_greedy_and_logp_is_exact(seed):
    vocab, eos, steps = 5, 4, 8
    step_fn, state, first, logp_of = history_model(vocab, seed)
    greedy, logits, st = [], first, state
    while len(greedy) < steps and eos not in greedy:
        greedy.append(int(logits.argmax()))
        logits, st = step_fn(torch.tensor([greedy[-1]]), st)
    seq, logp = beam_search(step_fn, state, first, steps, beam=1, eos_id=eos)
    assert seq.tolist() == greedy and logp == pytest.approx(logp_of(greedy), abs=1e-5)
    seq, logp = beam_search(step_fn, state, first, steps, beam=4, eos_id=eos)  # states follow their beams
    assert logp == pytest.approx(logp_of(seq.tolist()), abs=1e-5)


def test_beam_with_constraints_never_emits_masked_tokens():
    vocab, eos = 6, 5
    allowed = torch.tensor([True, False, True, True, False, True])
    for seed in range(5):
        step_fn, state, first, _ = history_model(vocab, seed)
        exact_length = lambda x, s: steer_length(mask_tokens(x, allowed), eos, s.shape[1], target=5, window=0)
        seq, _ = beam_search(step_fn, state, first, steps=20, beam=3, eos_id=eos, logit_processor=exact_length)
        assert len(seq) == 6 and seq[-1] == eos and not set(seq.tolist()) & {1, 4}


def test_beam_search_errors():
    step_fn, state, first, _ = markov(*GREEDY_TRAP)
    with pytest.raises(ValueError, match="beam and steps"):
        beam_search(step_fn, state, first, steps=2, beam=0)
    with pytest.raises(ValueError, match=r"\(1, vocab\)"):
        beam_search(step_fn, state, first.expand(2, 4), steps=2, beam=2)
    with pytest.raises(ValueError, match="tuple of tensors"):
        beam_search(step_fn, state[0], first, steps=2, beam=2)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(step_fn, state, first, steps=2, beam=2, length_penalty=-1.0)


def test_best_ending_takes_the_most_likely_place_or_a_home_ending_within_the_margin_and_the_length():
    import numpy as np

    from lstmidi.samplers import BestEnding, end_rows

    eos = 0
    ending = BestEnding(start=2, end=6, margin=1.5)

    def logits(*p_eos):  # 3 tokens per row; EOS probability as given (0: masked), the rest shared
        rows = [[p, (1 - p) / 2, (1 - p) / 2] for p in p_eos]
        return torch.tensor(rows).log()

    steps = [(0.9, 0.9, 0.9), (0.9, 0.9, 0.9), (0.1, 0.2, 0.0), (0.4, 0.1, 0.0), (0.2, 0.3, 0.0), (0.05, 0.02, 0.0)]
    for position, p in enumerate([*steps, (0.99, 0.99, 0.99)]):
        ending.see(logits(*p), position, eos)  # positions 0, 1 and 6 lie outside [2, 6): not recorded
    assert ending.positions == [2, 3, 4, 5]
    # row 2: EOS never allowed inside the window -> no choice
    assert ending.choose(3) == [(3, False), (4, False), None]
    home = {(0, 2), (0, 5), (1, 5)}  # where each row would end on its home chord

    # row 0: 2 is home and log(0.1) lies within 1.5 nats of log(0.4); 5 (log 0.05) would be too far
    # row 1: the only home place (log 0.02) is more than 1.5 nats below the best (log 0.3)
    class Places:  # ends on the home chord at `home`; 2 s of music per token
        def home(self, row, at):
            return (row, at) in home

        def seconds(self, row, at):
            return 2.0 * at

    assert ending.choose(3, Places()) == [(2, True), (4, False), None]
    # 10 s asked: only position 5 (10 s) lies within 10%; 8 s: only 4; 100 s: none, so any place
    assert ending.choose(3, Places(), seconds=10.0) == [(5, True), (5, True), None]
    assert ending.choose(3, Places(), seconds=8.0) == [(4, False), (4, False), None]
    assert ending.choose(3, Places(), seconds=100.0) == ending.choose(3, Places())
    tokens = np.array([[5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 9, 10], [5, 6, 0, 0, 0, 0]])
    cut = end_rows(tokens, eos, [(2, True), (4, False), (4, False)])  # row 2 ended by itself at 2: kept
    assert cut.tolist() == [[5, 6, 0, 0, 0, 0], [5, 6, 7, 8, 0, 0], [5, 6, 0, 0, 0, 0]]
    assert tokens[0].tolist() == [5, 6, 7, 8, 9, 10]  # not changed in place
    assert end_rows(tokens, eos, [None, None, None]).tolist() == tokens.tolist()


def test_a_piano_roll_ends_on_its_home_chord_nearest_the_asked_length():
    import numpy as np

    from lstmidi.samplers import home_chord_ends

    low = 48  # key 0 = C3
    chords = [(12, 16, 19), (5, 9, 12), (7, 11, 14)]  # C, F, G major triads, each held two frames
    roll = np.zeros((1, 1 + 24, 24), np.uint8)  # one silent primer frame, then C C F F G G C C ...
    for f in range(24):
        roll[0, 1 + f, list(chords[(f // 2) % 3])] = 1
    # lengths within 10% (at least 1 frame) of the target; the last struck chord must be C major
    assert home_chord_ends(roll, 1, 8, low) == [8]  # 7 or 8 new frames end on the C struck at frame 6: 8 is nearer
    assert home_chord_ends(roll, 1, 10, low) == [10]  # 9-11 end on F or G: no home ending, the target itself
    assert home_chord_ends(roll, 1, 12, low) == [13]  # 11 and 12 end on G; 13 strikes C
    roll[0, 1 + 12, 16] = 0  # a bare fifth C-G still counts: it holds the tonic and lies in the triad
    assert home_chord_ends(roll, 1, 12, low) == [13]
    roll[0, 1 + 12, 17] = 1  # an F added: no longer the tonic triad
    assert home_chord_ends(roll, 1, 12, low) == [12]
