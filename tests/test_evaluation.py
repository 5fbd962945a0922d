import math

import numpy as np
import pytest

from conftest import make_score
from lstmidi.evaluation import markov_baseline_nll, music_cost_baselines, note_features, repeat_nll, unigram_nll


def test_unigram_nll_hand_computed():
    train = [np.array([0, 0, 1])]  # counts + 1 smoothing over 3 classes: [3, 2, 1] / 6
    held = [np.array([2, 0, 1])]  # the first symbol of a piece is not scored
    assert unigram_nll(train, held, 3) == pytest.approx(-(math.log(3 / 6) + math.log(2 / 6)) / 2)


def test_repeat_nll_hand_computed():
    train = [np.array([0, 0, 1, 1])]  # 2 repeats of 3 transitions: r = (2 + 1) / (3 + 2) = 0.6
    held = [np.array([1, 1, 0])]
    p = np.array([3, 3, 1]) / 7  # unigram with smoothing over 3 classes
    other = (1 - 0.6) * p[0] / (1 - p[1])
    assert repeat_nll(train, held, 3) == pytest.approx(-(math.log(0.6) + math.log(other)) / 2)


def test_markov_baseline_hand_computed():
    key_on = np.array([[0], [1], [1], [0]], np.uint8)  # off->on, on->on, on->off
    # P(on | off) = (1 + 1) / (1 + 2); P(on | on) = (1 + 1) / (2 + 2)
    nll = markov_baseline_nll([key_on], [key_on])
    assert nll == pytest.approx(-(math.log(2 / 3) + math.log(1 / 2) + math.log(1 / 2)) / 3)


def test_music_cost_baselines():
    pieces = [np.array([60, 67, 67, 60])]  # previous-pitch guesses: off by a fifth, exact, off by a fifth down
    got = music_cost_baselines(pieces, pieces)
    assert got["pitch repeat previous (music cost)"] < got["pitch mode (music cost)"] + 1  # both finite
    assert 0 < got["pitch repeat previous (music cost)"] < 0.3


def test_note_features_in_seconds():
    f = note_features(make_score([(0, 480, 60), (480, 240, 64), (480, 960, 67)]))
    assert f["pitch"].tolist() == [60, 64, 67]
    assert f["step"].tolist() == [0.0, 0.5, 0.0] and f["duration"].tolist() == [0.5, 0.25, 1.0]
