"""The musical-quality gate: does generated music sound like its corpus, or like random pitches?

Per piece (`harmony`): the key found by Krumhansl–Schmuckler (duration-weighted pitch-class profile
correlated with the 24 rotated Krumhansl–Kessler profiles) and how well it fits (`key_fit`, the best
correlation); the share of notes in that key's scale (`in_scale`: the major scale, or for a minor key the natural
minor scale with the raised 6th and 7th that minor-key music uses); the share of consonant vertical intervals at onsets
(`consonance`: every pair of notes sounding together where at least one of them starts, interval
class P1/P8, m3, M3, P4, P5, m6 or M6); whether the last chord is the tonic triad of the key
(`tonic_ending`: its pitch classes include the tonic and lie in the tonic triad, with either third);
and the most notes sounding at once (`max_sounding`).

Set level (`gate`): the means of those measures for the generated pieces, the real held-out pieces
(the ceiling) and a random-pitch control (the floor: the real pieces with every pitch replaced by a
random one in the piece's own range, rhythm kept); the share of time with at most N notes sounding,
N the real pieces' usual maximum; and the **tell-apart score**: the cross-validated balanced accuracy
of a logistic regression (scikit-learn) that tells generated pieces from real ones by their per-piece
measures (these and `lstmidi.metrics.SCALARS`). 0.5 = cannot be told apart, 1 = always told apart.

The gate passes a pitch measure when the generated mean is at least `REACH[name]` of the way from the
random control to real music; polyphony when the share of time within N notes is no more than 0.02
below real music's; tell-apart when it is at most `TELL_APART_MAX`.
"""

from __future__ import annotations

import numpy as np
from symusic import Note, Score

from .metrics import SCALARS, note_arrays, piece_metrics

KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor with the raised 6th and 7th of melodic/harmonic minor
CONSONANT = np.zeros(12, bool)
CONSONANT[[0, 3, 4, 5, 7, 8, 9]] = True  # interval classes: P1/P8, m3, M3, P4, P5, m6, M6
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

MEASURES = {  # name -> what it is (per piece)
    "key_fit": "key-profile correlation (Krumhansl–Schmuckler)",
    "in_scale": "share of notes in the key's scale",
    "consonance": "consonant vertical intervals at onsets",
    "tonic_ending": "ends on the tonic triad",
    "max_sounding": "most notes sounding at once",
}
REACH = {"key_fit": 0.75, "in_scale": 0.75, "consonance": 0.75, "tonic_ending": 0.6}
TELL_APART_MAX = 0.75
POLYPHONY_SLACK = 0.02


def _centred_unit_profiles() -> np.ndarray:
    """(24, 12): each key's Krumhansl–Kessler profile rolled to its tonic, centred, of unit length."""
    rows = np.array([np.roll(kk, tonic) for kk in (KK_MAJOR, KK_MINOR) for tonic in range(12)], np.float64)
    rows -= rows.mean(1, keepdims=True)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


_KEY_PROFILES = _centred_unit_profiles()


def find_key(pitches: np.ndarray, durations: np.ndarray) -> tuple[int, str, float]:
    """(tonic pitch class, "major" | "minor", correlation) of the best of the 24 Krumhansl–Kessler
    profiles against the duration-weighted pitch-class profile; (0, "major", 0.0) without notes or
    with a flat profile."""
    profile = np.bincount(np.asarray(pitches, np.int64) % 12, weights=np.maximum(durations, 1e-3), minlength=12)
    if not len(pitches) or np.ptp(profile) == 0:
        return 0, "major", 0.0
    x = profile - profile.mean()
    r = (_KEY_PROFILES @ x) / np.sqrt(x @ x)  # (24,) Pearson correlations: major keys C..B, then minor
    best = int(np.flatnonzero(r >= r.max() - 1e-12)[0])  # of equal fits, the first: major keys from C, then minor
    return best % 12, ("major", "minor")[best // 12], float(r[best])


def key_name(tonic: int, mode: str) -> str:
    return f"{NAMES[tonic]} {mode}"


def sounding_at(onsets: np.ndarray, durations: np.ndarray, t: float) -> np.ndarray:
    """Indices of the notes sounding at time t (onset <= t < end; a zero-length note at its onset)."""
    ends = np.maximum(onsets + durations, np.nextafter(onsets, np.inf))
    return np.flatnonzero((onsets <= t) & (ends > t))


def tonic_triad(tonic: int, mode: str) -> set[int]:
    """The pitch classes of the tonic triad of a major or minor key."""
    return {tonic, (tonic + (4 if mode == "major" else 3)) % 12, (tonic + 7) % 12}


def is_tonic_chord(pitch_classes: set[int], tonic: int) -> bool:
    """Whether a chord's pitch classes hold the tonic and lie in its triad, with either third (a minor
    key's piece may end major)."""
    return tonic in pitch_classes and pitch_classes <= tonic_triad(tonic, "major") | tonic_triad(tonic, "minor")


def ends_on_tonic(onsets: np.ndarray, durations: np.ndarray, pitches: np.ndarray, tonic: int) -> bool:
    """Whether the notes sounding at the last onset are a tonic chord (`is_tonic_chord`)."""
    return is_tonic_chord(set((pitches[sounding_at(onsets, durations, onsets.max())] % 12).tolist()), tonic)


def tonic_ending(score: Score) -> bool:
    """`harmony(score)["tonic_ending"]` without the other measures (the samplers ask it of many endings)."""
    onsets, durations, pitches = note_arrays(score)
    return bool(len(pitches)) and ends_on_tonic(onsets, durations, pitches, find_key(pitches, durations)[0])


def consonance(onsets: np.ndarray, durations: np.ndarray, pitches: np.ndarray) -> tuple[int, int]:
    """(consonant pairs, pairs): pairs of notes sounding together at an onset, at least one starting there."""
    good = total = 0
    for t in np.unique(onsets):
        idx = sounding_at(onsets, durations, t)
        if len(idx) < 2:
            continue
        p, new = pitches[idx], onsets[idx] == t
        i, j = np.triu_indices(len(idx), 1)
        keep = new[i] | new[j]
        classes = np.abs(p[i] - p[j])[keep] % 12
        good += int(CONSONANT[classes].sum())
        total += int(keep.sum())
    return good, total


def sounding_time(onsets: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """(k + 1,) time in beats during which exactly 0..k notes sound, from the first onset to the last end."""
    if not len(onsets):
        return np.zeros(1)
    ends = np.maximum(onsets + durations, onsets)
    times = np.concatenate([onsets, ends])
    change = np.concatenate([np.ones(len(onsets)), -np.ones(len(ends))])
    order = np.lexsort((change, times))  # ends before starts at the same time
    times, count = times[order], np.cumsum(change[order]).astype(np.int64)
    spans = np.diff(times)  # count[i] notes sound during [times[i], times[i+1])
    return np.bincount(count[:-1], weights=spans, minlength=int(count.max()) + 1)


def harmony(score: Score) -> dict[str, float]:
    """The MEASURES of one piece, plus `key` (e.g. "G major") and the time in beats with exactly k
    notes sounding (`sounding_time`, a list). A piece without notes scores 0 everywhere."""
    onsets, durations, pitches = note_arrays(score)
    tonic, mode, fit = find_key(pitches, durations)
    if not len(pitches):
        return {
            "key_fit": 0.0,
            "in_scale": 0.0,
            "consonance": 0.0,
            "tonic_ending": 0.0,
            "max_sounding": 0.0,
            "key": key_name(tonic, mode),
            "sounding_time": [0.0],
        }
    scale = np.zeros(12, bool)
    scale[[(tonic + s) % 12 for s in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)]] = True
    good, pairs = consonance(onsets, durations, pitches)
    profile = sounding_time(onsets, durations)
    return {
        "key_fit": fit,
        "in_scale": float(scale[pitches % 12].mean()),
        "consonance": good / pairs if pairs else 0.0,
        "tonic_ending": float(ends_on_tonic(onsets, durations, pitches, tonic)),
        "max_sounding": float(len(profile) - 1),
        "key": key_name(tonic, mode),
        "sounding_time": profile.tolist(),
    }


def share_within(profile: list[float], n: int) -> float:
    """Share of the sounding time (1+ notes) with at most n notes sounding; 1 when nothing sounds."""
    p = np.asarray(profile, np.float64)
    busy = p[1:].sum()
    return float(p[1 : n + 1].sum() / busy) if busy > 0 else 1.0


def first_seconds(score: Score, seconds: float) -> Score:
    """`score` (ticks) cut to the notes that start within its first `seconds`, following its tempo changes."""
    kept = [
        tick["time"][sec["time"] < seconds]
        for tick, sec in ((t.notes.numpy(), s.notes.numpy()) for t, s in zip(score.tracks, score.to("second").tracks))
    ]
    return score.clip(0, max((int(k.max()) for k in kept if len(k)), default=-1) + 1)


def last_seconds(score: Score, seconds: float) -> Score:
    """`score` (ticks) cut to the notes that start within its last `seconds` (before the end of its last
    note), moved to start at tick 0: an excerpt that ends where the piece ends."""
    end = score.to("second").end()
    starts = [
        tick["time"][sec["time"] >= end - seconds]
        for tick, sec in ((t.notes.numpy(), s.notes.numpy()) for t, s in zip(score.tracks, score.to("second").tracks))
    ]
    start = min((int(k.min()) for k in starts if len(k)), default=0)
    return score.clip(start, score.end() + 1).shift_time(-start)


def random_pitch_control(scores: list[Score], seed: int = 0) -> list[Score]:
    """Copies of `scores` with every pitched note's pitch drawn uniformly from its piece's own range
    (lowest to highest pitch); onsets, durations, velocities and drums kept."""
    rng = np.random.default_rng(seed)
    out = []
    for score in scores:
        copy = score.copy()
        _, _, pitches = note_arrays(score)
        lo, hi = (int(pitches.min()), int(pitches.max())) if len(pitches) else (60, 60)
        for track in copy.tracks:
            if track.is_drum or not len(track.notes):
                continue
            notes = track.notes.numpy()
            notes["pitch"] = rng.integers(lo, hi + 1, len(notes["pitch"])).astype(notes["pitch"].dtype)
            track.notes = Note.from_numpy(**notes, ttype=score.ttype)
        out.append(copy)
    return out


def features(score: Score, measures: dict) -> list[float]:
    """Per-piece feature vector for the tell-apart classifier: the MEASURES (`harmony(score)`) and the
    metrics.SCALARS."""
    scalars = piece_metrics(score)
    return [float(measures[k]) for k in MEASURES] + [float(scalars[k]) for k in SCALARS]


def tell_apart(a: list[list[float]], b: list[list[float]], seed: int = 0) -> float:
    """Cross-validated balanced accuracy of a logistic regression separating feature rows `a` from `b`
    (scikit-learn: standardised features, balanced class weights; stratified k-fold, k = min(5, the
    smaller set), repeated 4 times). 0.5 = indistinguishable. NaN with fewer than 2 rows in a set."""
    if min(len(a), len(b)) < 2:
        return float("nan")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.nan_to_num(np.array(a + b, np.float64))
    y = np.array([1] * len(a) + [0] * len(b))
    folds = RepeatedStratifiedKFold(n_splits=min(5, len(a), len(b)), n_repeats=4, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    return float(cross_val_score(clf, x, y, cv=folds, scoring="balanced_accuracy").mean())


def separation(a: list[list[float]], b: list[list[float]]) -> dict:
    """Each feature of the rows `a` and `b` (`features`' order) alone: {name: {"generated": mean in a, "real":
    mean in b, "auc": ROC AUC of telling a from b by it (0.5 = no help, 1 = apart; scikit-learn)}}."""
    from sklearn.metrics import roc_auc_score

    x, y = np.array(a + b, np.float64), np.array([1] * len(a) + [0] * len(b))
    out = {}
    for i, name in enumerate([*MEASURES, *SCALARS]):
        auc = roc_auc_score(y, x[:, i]) if np.std(x[:, i]) > 0 else 0.5
        out[name] = {
            "generated": float(x[y == 1, i].mean()),
            "real": float(x[y == 0, i].mean()),
            "auc": max(auc, 1 - auc),
        }
    return out


def measure_set(scores: list[Score]) -> dict:
    """Per-piece harmony measures and feature rows of a set of pieces."""
    rows = [harmony(s) for s in scores]
    return {"pieces": rows, "features": [features(s, m) for s, m in zip(scores, rows)]}


def gate(generated: list[Score], real: list[Score], seed: int = 0) -> dict:
    """The quality gate of `generated` against `real` (held-out) pieces and their random-pitch control.

    Returns {"rows": {name: {"what", "generated", "real", "random", "op", "target", "rule", "passed"}},
    "voices": N, "passed": all rows passed, "near_random": the pitch content is closer to the random
    control than to real music, "keys": {set: [key names]}}. Means over pieces; see the module doc."""
    sets = {
        "generated": measure_set(generated),
        "real": measure_set(real),
        "random": measure_set(random_pitch_control(real, seed)),
    }

    def mean(set_name: str, key: str) -> float:
        return float(np.mean([p[key] for p in sets[set_name]["pieces"]])) if sets[set_name]["pieces"] else float("nan")

    rows = {}
    for name, reach in REACH.items():
        g, r, c = mean("generated", name), mean("real", name), mean("random", name)
        target = c + reach * (r - c)
        rows[name] = {
            "what": MEASURES[name],
            "generated": g,
            "real": r,
            "random": c,
            "op": ">=",
            "target": target,
            "rule": f"at least {reach:g} of the way from random to real",
            "passed": bool(g >= target),
        }
    voices = int(np.median([p["max_sounding"] for p in sets["real"]["pieces"]])) if real else 0
    within = {
        k: float(np.mean([share_within(p["sounding_time"], voices) for p in v["pieces"]]))
        if v["pieces"]
        else float("nan")
        for k, v in sets.items()
    }
    rows["max_sounding"] = {
        "what": MEASURES["max_sounding"],
        "generated": mean("generated", "max_sounding"),
        "real": mean("real", "max_sounding"),
        "random": mean("random", "max_sounding"),
        "op": None,
        "target": None,
        "rule": "shown, not gated",
        "passed": True,
    }
    rows["time_within_voices"] = {
        "what": f"share of time with at most {voices} notes sounding",
        **within,
        "op": ">=",
        "target": within["real"] - POLYPHONY_SLACK,
        "rule": f"at least real's share - {POLYPHONY_SLACK:g}",
        "passed": bool(within["generated"] >= within["real"] - POLYPHONY_SLACK),
    }
    ta = {
        "generated": tell_apart(sets["generated"]["features"], sets["real"]["features"], seed),
        "real": 0.5,
        "random": tell_apart(sets["random"]["features"], sets["real"]["features"], seed),
    }
    rows["tell_apart"] = {
        "what": "tell-apart accuracy against real (0.5 = cannot be told apart)",
        **ta,
        "op": "<=",
        "target": TELL_APART_MAX,
        "rule": f"at most {TELL_APART_MAX:g}",
        "passed": bool(ta["generated"] <= TELL_APART_MAX),
    }
    position = [
        (rows[k]["generated"] - rows[k]["random"]) / (rows[k]["real"] - rows[k]["random"])
        for k in ("in_scale", "consonance", "key_fit")
        if rows[k]["real"] - rows[k]["random"] > 1e-9
    ]
    return {
        "rows": rows,
        "voices": voices,
        "passed": all(r["passed"] for r in rows.values()),
        "near_random": bool(position) and float(np.mean(position)) < 0.5,
        "keys": {k: [p["key"] for p in v["pieces"]] for k, v in sets.items()},
    }


def format_value(value) -> str:
    if value is None:
        return "—"
    return "n/a" if not np.isfinite(value) else f"{value:.3f}"


def gate_table(result: dict) -> list[str]:
    """The gate as Markdown table lines."""
    lines = ["| measure | generated | real | random control | target | passed |", "|---|---|---|---|---|---|"]
    for row in result["rows"].values():
        target = "—" if row["op"] is None else f"{'≥' if row['op'] == '>=' else '≤'} {format_value(row['target'])}"
        mark = "—" if row["op"] is None else ("yes" if row["passed"] else "**no**")
        lines.append(
            f"| {row['what']} | {format_value(row['generated'])} | {format_value(row['real'])} | "
            f"{format_value(row['random'])} | {target} | {mark} |"
        )
    return lines


def summary_line(result: dict) -> str:
    """One line: the pitch measures against real music and the random control, and the verdict."""
    r = result["rows"]
    parts = [
        f"{name} {r[name]['generated']:.2f} (real {r[name]['real']:.2f}, random {r[name]['random']:.2f})"
        for name in ("in_scale", "consonance", "key_fit")
    ]
    verdict = "passed" if result["passed"] else "not passed: " + ", ".join(k for k, v in r.items() if not v["passed"])
    return "quality: " + "; ".join(parts) + f"; tell-apart {format_value(r['tell_apart']['generated'])}; gate {verdict}"


def compact(result: dict) -> dict:
    """The gate without its per-piece lists, for model cards and run summaries."""
    return {k: v for k, v in result.items() if k != "keys"}
