"""Musical metrics of one piece and the distance between two sets of pieces, after Yang & Lerch (2018),
"On the evaluation of generative models in music" (Neural Computing and Applications).

Time is in beats (quarter notes: ticks / ticks per quarter), so the metrics ignore tempo. Every
pitched note of every track counts (drum tracks are left out). A piece without notes gets finite
values (0, an empty-beat rate of 1, a groove consistency of 1), so that a failed generation is
scored, not crashed on.

Set level: the per-piece values of a scalar metric in two sets (generated vs held-out real) become
two Gaussian kernel-density estimates; their overlapping area (1 = same distribution, 0 = disjoint)
and KL divergence (nats) on a common grid are the distances. This simplifies Yang & Lerch's method,
which compares the distributions of pairwise intra- and inter-set distances.
"""

from __future__ import annotations

import numpy as np
from symusic import Score

# Note-length and inter-onset-interval bins in beats, edges halfway (geometrically) between note values.
DURATION_EDGES = (0.0, 0.1875, 0.375, 0.75, 1.5, 3.0, 6.0, np.inf)
DURATION_LABELS = ("< 3/16", "16th", "8th", "quarter", "half", "whole", "longer")
GROOVE_GRID = 4  # onset slots per beat for groove consistency (16th notes)
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor
SCALES = np.array(
    [[(pc - tonic) % 12 in steps for pc in range(12)] for steps in (MAJOR, MINOR) for tonic in range(12)], np.float64
)  # (24, 12) scale membership

SCALARS = {  # name -> what it is, in which unit
    "pitch_range": "pitch range (highest - lowest, semitones)",
    "distinct_pitches": "distinct pitches used",
    "pitch_classes": "pitch classes used (of 12)",
    "pitch_class_entropy": "pitch-class entropy (nats)",
    "scale_consistency": "scale consistency (share of notes in the best major/minor scale)",
    "polyphony": "polyphony (mean notes sounding at each onset)",
    "mean_duration": "mean note length (beats)",
    "mean_ioi": "mean inter-onset interval (beats)",
    "empty_beat_rate": "empty-beat rate (share of beats with no sounding note)",
    "groove_consistency": "groove consistency (1 - mean Hamming distance of consecutive bars' onsets)",
}


def notes_end(score: Score) -> float:
    """Seconds at which the last note of `score` ends (0 when it has none)."""
    ends = [n["time"] + n["duration"] for n in (t.notes.numpy() for t in score.to("second").tracks) if len(n["time"])]
    return float(max(e.max() for e in ends)) if ends else 0.0


def note_arrays(score: Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(onsets, durations, pitches) of all pitched notes; times in beats; sorted by onset, then pitch."""
    tpq = score.ticks_per_quarter
    rows = [t.notes.numpy() for t in score.to("tick").tracks if not t.is_drum and len(t.notes)]
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
    onset = np.concatenate([r["time"] for r in rows]) / tpq
    duration = np.concatenate([r["duration"] for r in rows]) / tpq
    pitch = np.concatenate([r["pitch"] for r in rows]).astype(np.int64)
    order = np.lexsort((pitch, onset))
    return onset[order], duration[order], pitch[order]


def beats_per_bar(score: Score) -> float:
    """Beats (quarter notes) per bar from the first time signature; 4 when there is none."""
    if len(score.time_signatures) == 0:
        return 4.0
    ts = score.time_signatures[0]
    return ts.numerator * 4.0 / ts.denominator


def pitch_class_histogram(score: Score) -> np.ndarray:
    """(12,) share of notes on each pitch class, C first; all zeros without notes."""
    counts = np.bincount(note_arrays(score)[2] % 12, minlength=12).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def duration_histogram(values: np.ndarray) -> np.ndarray:
    """(7,) share of `values` (beats) in each DURATION_EDGES bin; all zeros when empty."""
    counts = np.histogram(values, bins=DURATION_EDGES)[0].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def inter_onset_intervals(onsets: np.ndarray) -> np.ndarray:
    """Beats between successive distinct onset times (the notes of a chord share one onset)."""
    return np.diff(np.unique(onsets))


def note_length_histogram(score: Score) -> np.ndarray:
    """(7,) share of notes in each note-length bin (DURATION_LABELS)."""
    return duration_histogram(note_arrays(score)[1])


def ioi_histogram(score: Score) -> np.ndarray:
    """(7,) share of inter-onset intervals in each bin (DURATION_LABELS)."""
    return duration_histogram(inter_onset_intervals(note_arrays(score)[0]))


def scale_consistency(pitch_class_counts: np.ndarray) -> float:
    """Largest share of notes inside one of the 24 major / natural-minor scales; 0 without notes."""
    total = pitch_class_counts.sum()
    return float((SCALES @ pitch_class_counts).max() / total) if total else 0.0


def entropy(shares: np.ndarray) -> float:
    """Shannon entropy in nats of a distribution given as shares (zeros ignored)."""
    p = shares[shares > 0]
    return float(-(p * np.log(p)).sum())


def polyphony(onsets: np.ndarray, durations: np.ndarray) -> float:
    """Mean number of notes sounding at each distinct onset time (a note sounds on [onset, onset + duration);
    a zero-length note counts at its own onset). 0 without notes."""
    if not len(onsets):
        return 0.0
    times = np.unique(onsets)
    started = np.searchsorted(np.sort(onsets), times, side="right")
    ended = np.searchsorted(np.sort(np.maximum(onsets + durations, np.nextafter(onsets, np.inf))), times, side="right")
    return float((started - ended).mean())


def empty_beat_rate(onsets: np.ndarray, durations: np.ndarray) -> float:
    """Share of the beats [b, b+1) from 0 to the end of the last note in which no note sounds; 1 without notes."""
    if not len(onsets):
        return 1.0
    ends = np.maximum(onsets + durations, np.nextafter(onsets, np.inf))
    beats = int(np.ceil(ends.max()))
    cover = np.zeros(beats + 1, np.int64)  # difference array over beats
    np.add.at(cover, np.floor(onsets).astype(np.int64), 1)
    np.add.at(cover, np.ceil(ends).astype(np.int64), -1)
    return float((np.cumsum(cover)[:beats] == 0).mean())


def groove_consistency(onsets: np.ndarray, bar_beats: float = 4.0, grid: int = GROOVE_GRID) -> float:
    """1 - mean Hamming distance (share of the bar's `grid`-per-beat slots that differ) between the onset
    patterns of consecutive bars, from bar 0 to the last bar with an onset (Wu & Yang's grooving
    pattern similarity). 1 with fewer than two bars."""
    slots = max(1, round(bar_beats * grid))  # onset slots per bar
    hits = np.unique(np.rint(onsets * grid).astype(np.int64))
    if not len(hits) or hits.max() < slots:
        return 1.0
    patterns = np.zeros((hits.max() // slots + 1, slots), bool)  # (bars, slots)
    patterns[hits // slots, hits % slots] = True
    return float(1.0 - (patterns[1:] != patterns[:-1]).mean())


def piece_metrics(score: Score) -> dict[str, float]:
    """The SCALARS of one piece, in that order."""
    onsets, durations, pitches = note_arrays(score)
    counts = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    iois = inter_onset_intervals(onsets)
    return {
        "pitch_range": float(np.ptp(pitches)) if len(pitches) else 0.0,
        "distinct_pitches": float(len(np.unique(pitches))),
        "pitch_classes": float((counts > 0).sum()),
        "pitch_class_entropy": entropy(counts / max(counts.sum(), 1.0)),
        "scale_consistency": scale_consistency(counts),
        "polyphony": polyphony(onsets, durations),
        "mean_duration": float(durations.mean()) if len(durations) else 0.0,
        "mean_ioi": float(iois.mean()) if len(iois) else 0.0,
        "empty_beat_rate": empty_beat_rate(onsets, durations),
        "groove_consistency": groove_consistency(onsets, beats_per_bar(score)),
    }


# ---- set level ------------------------------------------------------------------------------------


def scott_bandwidth(values: np.ndarray) -> float:
    """Scott's rule, scipy.stats.gaussian_kde's default in 1-D: sd (ddof 1) x n^(-1/5); 0 for a set of equal values."""
    return float(values.std(ddof=1) * len(values) ** -0.2) if len(values) > 1 else 0.0


def densities(a: np.ndarray, b: np.ndarray, points: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid, density of a, density of b): Gaussian KDEs of two non-empty samples on a common grid that
    covers both to 5 bandwidths. A set of equal values takes the other set's bandwidth (a point mass is
    as uncertain as what it is compared with); no bandwidth is below 1% of the pooled range (or of the
    value when every value is equal), so the grid always resolves the density."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pooled = np.concatenate([a, b])
    span = np.ptp(pooled)
    floor = 0.01 * (span if span > 0 else max(abs(pooled[0]), 1.0))
    bw_a, bw_b = scott_bandwidth(a), scott_bandwidth(b)
    bw_a, bw_b = max(bw_a or bw_b, floor), max(bw_b or bw_a, floor)
    pad = 5 * max(bw_a, bw_b)
    grid = np.linspace(pooled.min() - pad, pooled.max() + pad, points)
    return grid, gaussian_kde(grid, a, bw_a), gaussian_kde(grid, b, bw_b)


def gaussian_kde(grid: np.ndarray, values: np.ndarray, bandwidth: float) -> np.ndarray:
    """(points,) mean of the normal densities N(value, bandwidth^2) of `values` at each grid point."""
    z = (grid[:, None] - values[None, :]) / bandwidth
    return np.exp(-0.5 * z * z).mean(1) / (bandwidth * np.sqrt(2 * np.pi))


def overlap_area(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area of the KDEs of two samples: 1 for identical, near 0 for far-apart sets."""
    grid, fa, fb = densities(a, b)
    return float(np.minimum(fa, fb).sum() * (grid[1] - grid[0]))  # the grid is uniform


def kl_divergence(p_values: np.ndarray, q_values: np.ndarray, eps: float = 1e-10) -> float:
    """KL(P || Q) in nats of the two samples' KDEs, as distributions over the common grid (+ `eps` per
    grid point, renormalised, so disjoint sets give a large finite value). >= 0; 0 for identical sets."""
    _, fp, fq = densities(p_values, q_values)
    p, q = fp / fp.sum() + eps, fq / fq.sum() + eps
    p, q = p / p.sum(), q / q.sum()
    return float(max((p * np.log(p / q)).sum(), 0.0))


def describe(values: list[float] | np.ndarray) -> dict[str, float | int]:
    """Mean, sd (ddof 0), min, max and number `n` of the finite values (NaN statistics when n = 0)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": np.nan, "sd": np.nan, "min": np.nan, "max": np.nan, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def compare_sets(generated: list[Score], real: list[Score]) -> dict[str, dict]:
    """Per scalar metric: the per-piece values of both sets, their description, the overlapping area
    and KL(real || generated) of their KDEs. Both lists must be non-empty."""
    gen = [piece_metrics(s) for s in generated]
    ref = [piece_metrics(s) for s in real]
    out = {}
    for name in SCALARS:
        g, r = np.array([m[name] for m in gen]), np.array([m[name] for m in ref])
        out[name] = {
            "generated": describe(g),
            "real": describe(r),
            "overlap_area": overlap_area(g, r),
            "kl_real_generated": kl_divergence(r, g),
            "values": {"generated": g.tolist(), "real": r.tolist()},
        }
    return out


def mean_histograms(scores: list[Score]) -> dict[str, list[float]]:
    """Pitch-class, note-length and IOI histograms averaged over pieces (each piece weighs the same)."""

    def mean(f):
        return np.mean([f(s) for s in scores], axis=0).tolist() if scores else []

    return {
        "pitch_class": mean(pitch_class_histogram),
        "note_length": mean(note_length_histogram),
        "ioi": mean(ioi_histogram),
    }
