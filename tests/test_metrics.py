"""Musical metrics on hand-built scores (exact values) and the set-level distances."""

import math

import numpy as np
import pytest
from scipy.stats import gaussian_kde
from symusic import TimeSignature

from conftest import make_score
from lstmidi.metrics import (
    SCALARS,
    compare_sets,
    densities,
    ioi_histogram,
    kl_divergence,
    mean_histograms,
    note_length_histogram,
    overlap_area,
    piece_metrics,
    pitch_class_histogram,
)

Q = 480  # ticks per quarter note (= one beat) in make_score
C_MAJOR = [60, 62, 64, 65, 67, 69, 71]


def scale(pitches, beat=Q):
    return make_score([(i * beat, beat, p) for i, p in enumerate(pitches)])


def test_c_major_scale():
    m = piece_metrics(scale(C_MAJOR))
    hist = pitch_class_histogram(scale(C_MAJOR))
    assert hist == pytest.approx([1 / 7 if pc in (0, 2, 4, 5, 7, 9, 11) else 0 for pc in range(12)])
    assert m["pitch_range"] == 11 and m["distinct_pitches"] == 7 and m["pitch_classes"] == 7
    assert m["pitch_class_entropy"] == pytest.approx(math.log(7))
    assert m["scale_consistency"] == 1.0
    assert m["polyphony"] == 1.0 and m["mean_duration"] == 1.0 and m["mean_ioi"] == 1.0
    assert m["empty_beat_rate"] == 0.0
    octave = piece_metrics(scale(C_MAJOR + [72]))
    assert (octave["pitch_range"], octave["distinct_pitches"], octave["pitch_classes"]) == (12, 8, 7)


def test_scale_consistency_of_a_chromatic_run_and_a_minor_scale():
    assert piece_metrics(scale(range(60, 72)))["scale_consistency"] == pytest.approx(7 / 12)
    a_harmonic_minor = [57, 59, 60, 62, 64, 65, 68]  # G# is outside every major/natural minor scale with the rest
    assert piece_metrics(scale(a_harmonic_minor))["scale_consistency"] == pytest.approx(6 / 7)


def test_silent_bar_gives_empty_beats():
    bar = [(b * Q, Q, 60 + b) for b in range(4)]
    third = [(8 * Q + t, d, p) for t, d, p in bar]
    m = piece_metrics(make_score(bar + third))  # bars 1 and 3 full, bar 2 silent: 4 of 12 beats empty
    assert m["empty_beat_rate"] == pytest.approx(4 / 12)
    held = make_score([(0, 3 * Q, 60), (int(5.5 * Q), Q // 2, 62)])  # sounds in beats 0-2 and 5; 3, 4 empty
    assert piece_metrics(held)["empty_beat_rate"] == pytest.approx(2 / 6)


def test_groove_consistency():
    bar = [(0, Q, 60), (Q, Q // 2, 62), (int(1.5 * Q), Q // 2, 64), (3 * Q, Q, 65)]
    two = make_score(bar + [(t + 4 * Q, d, p + 2) for t, d, p in bar])  # same rhythm, other pitches
    assert piece_metrics(two)["groove_consistency"] == 1.0
    four_then_one = make_score([(b * Q, Q, 60) for b in range(4)] + [(4 * Q, 4 * Q, 60)])
    assert piece_metrics(four_then_one)["groove_consistency"] == pytest.approx(1 - 3 / 16)  # 3 of 16 slots differ
    waltz = make_score([(b * Q, Q, 60) for b in range(6)])
    waltz.time_signatures.append(TimeSignature(0, 3, 4))  # two bars of three beats, identical
    assert piece_metrics(waltz)["groove_consistency"] == 1.0
    assert piece_metrics(make_score([(b * Q, Q, 60) for b in range(6)]))["groove_consistency"] == pytest.approx(
        1 - 2 / 16
    )


def test_polyphony_counts_notes_sounding_at_each_onset():
    triad_and_melody = make_score([(0, 2 * Q, 48), (0, 2 * Q, 52), (0, 2 * Q, 55), (Q, Q, 72)])
    assert piece_metrics(triad_and_melody)["polyphony"] == pytest.approx((3 + 4) / 2)


def test_note_length_and_ioi_histograms():
    notes = [(0, Q // 4, 60), (Q, Q // 2, 62), (2 * Q, Q, 64), (4 * Q, 2 * Q, 65), (4 * Q, 2 * Q, 69)]
    s = make_score(notes)
    # bins: < 3/16, 16th, 8th, quarter, half, whole, longer (beats)
    assert note_length_histogram(s) == pytest.approx([0, 0.2, 0.2, 0.2, 0.4, 0, 0])
    assert ioi_histogram(s) == pytest.approx([0, 0, 0, 2 / 3, 1 / 3, 0, 0])  # distinct onsets 0, 1, 2, 4
    means = mean_histograms([s, scale(C_MAJOR)])
    assert means["note_length"] == pytest.approx([0, 0.1, 0.1, 0.6, 0.2, 0, 0])
    assert len(means["pitch_class"]) == 12 and sum(means["pitch_class"]) == pytest.approx(1)


def test_empty_piece_and_drums_give_finite_values():
    drums_only = make_score([(0, Q, 36)], drum=True)
    for s in (make_score([]), drums_only):
        m = piece_metrics(s)
        assert list(m) == list(SCALARS) and all(math.isfinite(v) for v in m.values())
        assert m["distinct_pitches"] == 0 and m["empty_beat_rate"] == 1.0
    assert pitch_class_histogram(drums_only).sum() == 0


def test_overlap_area_and_kl():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 40)
    assert overlap_area(a, a) == pytest.approx(1, abs=1e-3)
    assert kl_divergence(a, a) == pytest.approx(0, abs=1e-9)
    far = a + 100
    assert overlap_area(a, far) < 1e-3 and kl_divergence(a, far) > 5
    near = rng.normal(0.5, 1, 40)
    assert 0.3 < overlap_area(a, near) < 0.95 and 0 < kl_divergence(a, near) < 1
    assert kl_divergence(near, a) >= 0


def test_kde_is_scipys_gaussian_kde():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 30), rng.normal(2, 0.5, 20)
    grid, fa, fb = densities(a, b)
    assert fa == pytest.approx(gaussian_kde(a)(grid), rel=1e-6, abs=1e-12)
    assert fb == pytest.approx(gaussian_kde(b)(grid), rel=1e-6, abs=1e-12)


def test_zero_variance_sets_do_not_crash():
    ones, twos = np.ones(10), np.full(5, 2.0)
    assert overlap_area(ones, ones) == pytest.approx(1, abs=1e-3) and kl_divergence(ones, ones) == pytest.approx(
        0, abs=1e-9
    )
    assert overlap_area(ones, twos) < 1e-3
    mostly_zero = np.array([0, 0, 0, 0, 0.1, 0, 0, 0.3])
    assert 0.4 < overlap_area(np.zeros(6), mostly_zero) < 1  # a point mass takes the other set's bandwidth
    assert math.isfinite(kl_divergence(np.zeros(6), mostly_zero))
    assert overlap_area([3.0], [3.0]) == pytest.approx(1, abs=1e-3)


def test_compare_sets_reports_every_metric():
    real = [scale(C_MAJOR), scale(C_MAJOR[::-1]), scale(C_MAJOR + [72])]
    same = compare_sets(real, real)
    assert set(same) == set(SCALARS)
    for name, m in same.items():
        assert m["overlap_area"] == pytest.approx(1, abs=1e-3), name
        assert m["kl_real_generated"] == pytest.approx(0, abs=1e-9), name
        assert m["generated"] == m["real"] and m["real"]["n"] == 3
    chromatic = compare_sets([scale(range(40, 80))] * 2, real)
    assert chromatic["pitch_range"]["overlap_area"] < 0.01
    assert chromatic["pitch_range"]["values"] == {"generated": [39.0, 39.0], "real": [11.0, 11.0, 12.0]}
