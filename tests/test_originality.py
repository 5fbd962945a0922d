"""Originality: transposition-invariant note symbols, the n-gram index and its save/load."""

import numpy as np
import pytest

from conftest import make_score
from lstmidi.errors import LstmidiError
from lstmidi.originality import MAX_DELTA, NgramIndex, note_symbols, piece_originality, set_originality

Q = 480


def random_piece(seed: int, notes: int = 60, low: int = 48) -> list[tuple[int, int, int]]:
    """Monophonic notes with random pitches and 8th/quarter/dotted-quarter onset deltas."""
    rng = np.random.default_rng(seed)
    onsets = np.concatenate([[0], np.cumsum(rng.choice([Q // 2, Q, 3 * Q // 2], notes - 1))])
    return [(int(t), Q // 2, int(p)) for t, p in zip(onsets, rng.integers(low, low + 30, notes))]


@pytest.fixture(scope="module")
def index():
    return NgramIndex.build([make_score(random_piece(seed)) for seed in range(20)])


def test_symbols_are_interval_and_onset_delta_with_chords_low_to_high():
    chord_then_note = make_score([(0, Q, 67), (0, Q, 60), (0, Q, 64), (Q, Q, 62)])
    expected = [(4, 0), (3, 0), (-5, 12)]  # C->E, E->G in the chord, then G->D one beat (12 steps) later
    assert note_symbols(chord_then_note).tolist() == [(i + 127) * (MAX_DELTA + 1) + d for i, d in expected]
    notes = random_piece(3)
    assert (
        note_symbols(make_score([(t, d, p + 7) for t, d, p in notes])).tolist()
        == note_symbols(make_score(notes)).tolist()
    )
    assert len(note_symbols(make_score([]))) == 0


def test_a_transposed_training_piece_is_a_full_copy(index):
    notes = random_piece(5)
    up = make_score([(t + 7 * Q, d, p + 5) for t, d, p in notes])  # +5 semitones, starting later
    assert piece_originality(up, index) == {"longest_copy": len(notes), "ngram8_share": 1.0}


def test_a_shared_ten_note_stretch():
    training = random_piece(0, notes=40)
    index = NgramIndex.build([make_score([(t * 2, d, p) for t, d, p in training])])  # deltas of 1, 2 or 3 beats
    own = random_piece(99, notes=30)  # deltas of 1/2, 1 or 3/2 beats
    start = own[-1][0] + Q // 2
    stretch = [
        (t - training[12][0] * 2 + start, d, p - 3) for t, d, p in [(t * 2, d, p) for t, d, p in training[12:22]]
    ]  # notes 12..21 of the training piece, 3 semitones down
    after = [(t + stretch[-1][0] + Q // 2, d, p) for t, d, p in random_piece(7, notes=20)]
    piece = make_score(own + stretch + after)  # entered and left with a 1/2-beat delta that training never has
    result = piece_originality(piece, index)
    assert result["longest_copy"] == 10
    assert 0 < result["ngram8_share"] < 0.1  # 3 of the piece's 8-note n-grams lie inside the stretch


def test_random_notes_share_almost_nothing(index):
    shares = [
        piece_originality(make_score(random_piece(seed, low=50)), index)["ngram8_share"] for seed in range(100, 105)
    ]
    assert max(shares) < 0.02


def test_a_piece_built_to_share_no_ngram_reports_zero(index):
    # onset deltas of 1/3 beat never occur in the training pieces (1/2, 1, 3/2 beats), so no symbol does
    notes = [(i * Q // 3, Q // 3, 60 + (i * 5) % 12) for i in range(30)]
    result = piece_originality(make_score(notes), index)
    assert result["ngram8_share"] == 0.0 and result["longest_copy"] == 1  # one note alone is no copy


def test_longest_run_matches_brute_force():
    rng = np.random.default_rng(2)
    train = [rng.integers(0, 3, n) for n in (30, 5, 50)]
    index = NgramIndex(train)

    def brute(q):
        best = 0
        for t in train:
            for i in range(len(q)):
                for j in range(len(t)):
                    k = 0
                    while i + k < len(q) and j + k < len(t) and q[i + k] == t[j + k]:
                        k += 1
                    best = max(best, k)
        return best

    for _ in range(20):
        q = rng.integers(0, 3, rng.integers(1, 40))
        assert index.longest_run(q) == brute(q)
    assert index.contains(train[2][10:25]) and not index.contains(np.array([5]))
    assert not index.contains(np.concatenate([train[1], train[2][:3]]))  # n-grams never run across pieces


def test_empty_and_short_pieces():
    index = NgramIndex.build([make_score(random_piece(1))])
    assert piece_originality(make_score([]), index)["longest_copy"] == 0
    short = piece_originality(make_score(random_piece(1)[:5]), index)
    assert short["longest_copy"] == 5 and np.isnan(short["ngram8_share"])
    summary = set_originality([make_score(random_piece(1)[:5]), make_score(random_piece(1))], index)
    assert summary["ngram8_share"]["n"] == 1 and summary["ngram8_share"]["mean"] == 1.0
    assert summary["longest_copy"]["max"] == 60 and summary["values"]["longest_copy"] == [5.0, 60.0]


def test_save_and_load_round_trip(index, tmp_path):
    path = index.save(tmp_path / "train.ngrams.npz")
    loaded = NgramIndex.load(path)
    assert loaded.pieces == 20 and np.array_equal(loaded.symbols, index.symbols)
    assert path.stat().st_size < 8 * len(index.symbols)
    for seed in (5, 200):
        piece = make_score(random_piece(seed))
        assert piece_originality(piece, loaded) == pytest.approx(piece_originality(piece, index))
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    with pytest.raises(LstmidiError, match="junk.npz: not an n-gram index"):
        NgramIndex.load(tmp_path / "junk.npz")
    with pytest.raises(LstmidiError, match="missing.npz: n-gram index not found"):
        NgramIndex.load(tmp_path / "missing.npz")
