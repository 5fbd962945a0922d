"""Logit processors and the sampler: exact filtering on hand-built distributions, seeded draws, errors."""

from __future__ import annotations

import math

import pytest
import torch

from lstmidi.processors import mask_tokens, sample, sample_regression, temperature, top_k, top_p


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in probs]])  # (1, vocab)


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


def test_temperature_scales_and_is_pure():
    x = torch.tensor([[1.0, -2.0, 4.0]])
    assert torch.equal(temperature(x, 0.5), torch.tensor([[2.0, -4.0, 8.0]]))
    assert torch.equal(x, torch.tensor([[1.0, -2.0, 4.0]]))


def test_top_k_keeps_k_largest():
    x = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = top_k(x, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False], [True, True, False, False, False]]
    assert out[0, 1] == 3.0 and out[0, 3] == 2.0  # kept logits unchanged
    assert torch.equal(top_k(x, 5), x) and torch.equal(top_k(x, 99), x)


def test_top_p_keeps_smallest_set_reaching_p():
    x = logits_of([0.1, 0.5, 0.05, 0.3, 0.05])  # sorted: 0.5 (1), 0.3 (3), 0.1 (0), 0.05, 0.05
    assert kept(top_p(x, 0.3)) == [1]  # the most likely token alone reaches 0.3
    assert kept(top_p(x, 0.7)) == [1, 3]  # 0.5 + 0.3 = 0.8 >= 0.7
    assert kept(top_p(x, 0.85)) == [0, 1, 3]  # needs 0.9
    assert kept(top_p(x, 0.97)) == [0, 1, 2, 3, 4]  # needs all five (0.95 < 0.97)
    assert kept(top_p(x, 1.0)) == [0, 1, 2, 3, 4]
    assert kept(top_p(logits_of([0.9, 0.1]), 0.01)) == [0]  # always keeps the most likely token


def test_top_p_ignores_already_masked():
    x = logits_of([0.5, 0.3, 0.2])
    x[0, 0] = float("-inf")  # renormalized: 0.6, 0.4
    assert kept(top_p(x, 0.55)) == [1]
    assert kept(top_p(x, 0.65)) == [1, 2]


def test_mask_tokens_shared_and_per_row():
    x = torch.zeros(2, 4)
    shared = torch.tensor([True, False, True, False])
    assert torch.equal(torch.isfinite(mask_tokens(x, shared)), shared.expand(2, 4))
    per_row = torch.tensor([[True, True, False, False], [False, False, False, True]])
    assert torch.equal(torch.isfinite(mask_tokens(x, per_row)), per_row)
    with pytest.raises(ValueError, match="bool"):
        mask_tokens(x, torch.ones(4))
    with pytest.raises(ValueError, match="shape"):
        mask_tokens(x, torch.ones(5, dtype=torch.bool))


def test_top_k_one_equals_greedy():
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(1))
    greedy = sample(logits, greedy=True)
    assert torch.equal(greedy, logits.argmax(-1)) and greedy.dtype == torch.long and greedy.shape == (16,)
    for seed in range(50):
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(sample(logits, top_k=1, temperature=2.0, generator=g), greedy)


def test_small_temperature_approaches_greedy():
    logits = torch.randn(32, 20, generator=torch.Generator().manual_seed(2))
    greedy = logits.argmax(-1)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert torch.equal(sample(logits, temperature=1e-4, generator=g), greedy)
    hot = torch.stack([sample(logits, temperature=5.0, generator=g) for _ in range(20)])
    assert (hot != greedy).any()  # a high temperature does not collapse to greedy


def test_masked_tokens_never_sampled():
    logits = torch.zeros(1000, 10)
    allowed = torch.tensor([False, True, False, True, True, False, False, False, False, False])
    draws = sample(mask_tokens(logits, allowed), generator=torch.Generator().manual_seed(3))
    assert set(draws.tolist()) == {1, 3, 4}
    draws = sample(mask_tokens(logits, allowed), top_p=0.9, top_k=3, generator=torch.Generator().manual_seed(4))
    assert set(draws.tolist()) <= {1, 3, 4}


def test_top_p_sampling_respects_nucleus():
    x = logits_of([0.1, 0.5, 0.05, 0.3, 0.05]).expand(1000, 5)
    draws = sample(x, top_p=0.7, generator=torch.Generator().manual_seed(5))
    assert set(draws.tolist()) == {1, 3}


def test_uncut_tokens_survive_top_p_with_their_own_probability():
    x = logits_of([0.6, 0.3, 0.05, 0.05]).expand(40000, 4)
    uncut = torch.tensor([False, False, True, False])
    draws = sample(x, top_p=0.5, uncut=uncut, generator=torch.Generator().manual_seed(7))
    assert set(draws.tolist()) == {0, 2}  # the nucleus {0}, plus token 2 that may not be cut
    assert float((draws == 2).float().mean()) == pytest.approx(0.05 / 0.65, abs=0.006)
    greedy = sample(x[:2000], top_k=1, uncut=uncut, generator=torch.Generator().manual_seed(8))
    assert set(greedy.tolist()) == {0}  # top_k is not a nucleus: it cuts every token
    alone = sample(x[:2000], uncut=uncut, generator=torch.Generator().manual_seed(9))  # no cut: uncut changes nothing
    assert torch.equal(alone, sample(x[:2000], generator=torch.Generator().manual_seed(9)))


def test_seeded_generator_reproduces():
    logits = torch.randn(8, 30, generator=torch.Generator().manual_seed(6))
    a = [
        sample(logits, temperature=1.3, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(a[0], a[1])
    b = sample(logits, temperature=1.3, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a[0], b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"temperature": 0.0, "greedy": True}, "temperature must be > 0"),
    ],
)
def test_sample_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(torch.zeros(2, 5), **kwargs)


def test_processor_bad_parameters():
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="temperature"):
        temperature(x, 0)
    with pytest.raises(ValueError, match="top_k"):
        top_k(x, 0)
    with pytest.raises(ValueError, match="top_p"):
        top_p(x, 1.01)


def test_sample_all_masked_row():
    logits = mask_tokens(torch.zeros(3, 4), torch.tensor([[True] * 4, [False] * 4, [True] * 4]))
    with pytest.raises(ValueError, match=r"every token is masked in row\(s\) \[1\]"):
        sample(logits)
    with pytest.raises(ValueError, match="every token is masked"):
        sample(logits, greedy=True)
    with pytest.raises(ValueError, match="batch, vocab"):
        sample(torch.zeros(4))


def test_sample_regression_clamps():
    v = torch.tensor([-0.5, 0.0, 0.25, 130.0])
    assert sample_regression(v, low=1e-3).tolist() == pytest.approx([1e-3, 1e-3, 0.25, 130.0])
    assert sample_regression(v, low=0, high=127).tolist() == [0.0, 0.0, 0.25, 127.0]
    assert torch.equal(sample_regression(v), v)
    with pytest.raises(ValueError, match="low"):
        sample_regression(v, low=2, high=1)


def test_draw_follows_the_distribution_and_never_draws_zero_probability():
    from lstmidi.processors import draw

    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    g = torch.Generator().manual_seed(0)
    draws = draw(probs.expand(40_000, 6), g)
    counts = torch.bincount(draws, minlength=6).float() / 40_000
    assert counts[[0, 2, 5]].sum() == 0
    torch.testing.assert_close(counts, probs, atol=0.01, rtol=0)  # 3 standard deviations at most ~0.0075
    unnormalised = draw(torch.tensor([[0.0, 2.0, 0.0], [5.0, 0.0, 0.0]]).repeat(100, 1), g)
    assert unnormalised.view(100, 2).eq(torch.tensor([1, 0])).all()
