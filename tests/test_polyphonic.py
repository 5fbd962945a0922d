"""The EnDeCell joint model and the polyphonic benchmark: exact likelihoods checked by hand."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.io import savemat
from symusic import Score
from torch.nn import functional as F

from lstmidi.cli import main
from lstmidi.config import load_preset
from lstmidi.errors import LstmidiError
from lstmidi.modelfile import load_model
from lstmidi.models import build_model
from lstmidi.polyphonic import KEYS, dataset_name, ensemble_nll, load_mat, run, score_pieces


def sig(x):
    return 1 / (1 + math.exp(-x))


def bce(p, on):
    return -math.log(p if on else 1 - p)


def hand_endecell(keys=2):
    """An endecell whose time state does not matter (zero weights into the decoder), with NADE weights set
    so that p(key 0) = sig(1) and p(key 1 | key 0 = v) = sig(-2 + 4 * sig(6 v))."""
    model = build_model(
        {"name": "endecell", "embed": 4, "hidden": 4, "decoder_hidden": 1, "dropout": 0.0},
        {"input_size": keys, "output_size": keys},
    ).eval()
    with torch.no_grad():
        for lin in (model.to_bv, model.to_bh):
            lin.weight.zero_()
        model.to_bh.bias.zero_()
        model.to_bv.bias.copy_(torch.tensor([0.0, -2.0]))
        model.V.copy_(torch.tensor([[2.0], [4.0]]))
        model.W.copy_(torch.tensor([[6.0], [0.0]]))
    return model


def hand_endecell_p(frame):
    p0 = sig(0 + 2 * sig(0))
    p1 = sig(-2 + 4 * sig(6 * frame[0]))
    return p0, p1


def test_endecell_nll_by_hand_on_three_frames_two_keys():
    model = hand_endecell()
    piece = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    want = 0.0
    for frame in piece[1:]:  # frame 0 is never scored
        p0, p1 = hand_endecell_p(frame)
        want += bce(p0, frame[0]) + bce(p1, frame[1])
    got = score_pieces(model, [piece])
    assert got["frames"] == 2
    assert got["nll"] == pytest.approx(want / 2, rel=1e-6)


def test_rollnet_nll_by_hand_on_three_frames_two_keys():
    model = build_model(
        {"name": "rollnet", "hidden": 4, "layers": 1, "dropout": 0.0}, {"input_size": 2, "output_size": 2}
    ).eval()
    with torch.no_grad():  # p(key on) fixed at 0.2 and 0.7, whatever the past
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([math.log(0.2 / 0.8), math.log(0.7 / 0.3)]))
    piece = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    want = (bce(0.2, 1) + bce(0.7, 1)) + (bce(0.2, 0) + bce(0.7, 1))
    got = score_pieces(model, [piece])
    assert got["nll"] == pytest.approx(want / 2, rel=1e-6)
    # p >= 0.5 predicts key 1 only: frame 1 has TP 1, FN 1; frame 2 has TP 1 -> 2 / (2 + 1)
    assert got["frame_accuracy"] == pytest.approx(2 / 3)


def fixed_rollnet(p_on):
    """A rollnet whose keys are on with the probabilities `p_on`, whatever the past."""
    model = build_model(
        {"name": "rollnet", "hidden": 4, "layers": 1, "dropout": 0.0}, {"input_size": 2, "output_size": 2}
    ).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in p_on]))
    return model


def test_a_mixture_scores_each_frame_by_the_mean_of_the_models_probabilities():
    a, b = fixed_rollnet([0.2, 0.7]), fixed_rollnet([0.6, 0.1])
    piece = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    frame_11 = (0.2 * 0.7 + 0.6 * 0.1) / 2
    frame_01 = (0.8 * 0.7 + 0.4 * 0.1) / 2
    assert ensemble_nll([a, b], [piece]) == pytest.approx(-(math.log(frame_11) + math.log(frame_01)) / 2, rel=1e-6)
    assert ensemble_nll([a, a], [piece, piece[::-1].copy()]) == pytest.approx(
        score_pieces(a, [piece, piece[::-1].copy()])["nll"]
    )
    endecell = hand_endecell()  # a joint model mixes the same way: its exact frame probabilities
    want = -sum(
        math.log(
            (
                math.exp(-score_pieces(endecell, [piece[t : t + 2]])["nll"])
                + math.exp(-score_pieces(a, [piece[t : t + 2]])["nll"])
            )
            / 2
        )
        for t in (0, 1)
    )
    assert ensemble_nll([endecell, a], [piece]) == pytest.approx(want / 2, rel=1e-5)


def random_endecell(keys: int, **spec) -> tuple[torch.nn.Module, torch.Tensor]:
    """A small endecell over `keys` keys with weights drawn from N(0, 1), and all 2^keys frames."""
    torch.manual_seed(0)
    model = build_model(
        {"name": "endecell", "embed": 8, "hidden": 8, "decoder_hidden": 3, **spec},
        {"input_size": keys, "output_size": keys},
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model, torch.tensor(list(itertools.product([0.0, 1.0], repeat=keys)))


@pytest.mark.parametrize("span, decoders", [(0, 1), (2, 1), (2, 3)])
def test_endecell_joint_probabilities_sum_to_one(span, decoders):
    keys = 5
    model, frames = random_endecell(keys, span=span, decoders=decoders)
    with torch.no_grad():
        s, _ = model(torch.rand(1, 3, keys).round())
        nll = [model.frame_nll(s[:, t].expand(len(frames), -1)[:, None], frames[:, None])[:, 0] for t in range(3)]
    for t in range(3):
        assert float(torch.exp(-nll[t]).sum()) == pytest.approx(1.0, abs=1e-5)


def test_endecell_samples_follow_the_joint_distribution():
    model = hand_endecell()
    s = torch.zeros(20000, 4)
    frames = model.sample_frame(s, generator=torch.Generator().manual_seed(0))
    p0 = sig(1)
    assert float(frames[:, 0].mean()) == pytest.approx(p0, abs=0.01)
    for v in (0, 1):
        rows = frames[frames[:, 0] == v]
        assert float(rows[:, 1].mean()) == pytest.approx(hand_endecell_p([v])[1], abs=0.02)
    greedy = model.sample_frame(s[:1], mode="threshold")
    assert greedy.tolist() == [[1.0, 1.0]]  # sig(1) > 0.5, then sig(-2 + 4 sig(6)) > 0.5


def test_endecell_with_several_decoders_scores_and_samples_their_mixture():
    """Three decoders (up, down, up) mixed by weights from the time state: each decoder is a distribution
    over the frames, the model's probability is their weighted sum, and samples follow it."""
    model, frames = random_endecell(3, span=2, decoders=3)
    with torch.no_grad():
        s, _ = model(torch.tensor([[[1.0, 0.0, 1.0]]]))
        at = s[:, 0].expand(len(frames), -1)
        p = torch.exp(-model.frame_nll(at[:, None], frames[:, None])[:, 0])
        each = []
        for i in range(3):
            logits = model.key_logits(at, frames, i)
            each.append(torch.exp(-F.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(-1)))
            assert float(each[-1].sum()) == pytest.approx(1.0, abs=1e-5)
        assert not torch.allclose(each[0], each[1], atol=1e-3)
        weights = model.mixture_weights(s[:, 0]).exp()[0]  # (3,)
        assert float(weights.sum()) == pytest.approx(1.0) and float(weights.max() - weights.min()) > 0.05
        torch.testing.assert_close(p, sum(w * e for w, e in zip(weights, each)))
        drawn = model.sample_frame(s[:, 0].expand(40000, -1), generator=torch.Generator().manual_seed(0))
        # threshold: each decoder's greedy frame (key by key, p >= 0.5), the one the mixture finds most probable
        greedy = []
        for i in range(3):
            frame = torch.zeros(1, 3)
            for k in range(3) if i % 2 == 0 else range(2, -1, -1):
                frame[0, k] = float(torch.sigmoid(model.key_logits(s[:, 0], frame, i))[0, k] >= 0.5)
            greedy.append(frame)
        best = min(greedy, key=lambda f: float(model.frame_nll(s[:, 0], f)))
        assert torch.equal(model.sample_frame(s[:, 0], mode="threshold"), best)
        assert len({tuple(f[0].tolist()) for f in greedy}) > 1  # the decoders disagree: the choice matters
    counts = (drawn @ torch.tensor([4.0, 2.0, 1.0])).long().bincount(minlength=8) / len(drawn)
    torch.testing.assert_close(counts, p.float(), atol=0.01, rtol=0)


def test_members_are_scored_as_their_mixture_and_trained_each_on_its_own():
    """`model.members`: the frame's probability is the mean of the members' (the same figure as
    `ensemble_nll` of the members as separate models), the probabilities of all 2^keys frames sum to one,
    and in training the loss is the mean of the members' own NLLs."""
    keys = 3
    model, frames = random_endecell(keys, span=2, decoders=2, members=3, dropout=0.0)
    members = list(model.members)
    piece = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], np.float32)
    assert score_pieces(model, [piece])["nll"] == pytest.approx(ensemble_nll(members, [piece]), rel=1e-6)
    assert len({round(score_pieces(m, [piece])["nll"], 4) for m in members}) == 3  # initialised each on its own
    with torch.no_grad():
        out, _ = model(torch.tensor([[[1.0, 0.0, 1.0]]]))
        p = torch.exp(-model.frame_nll(out[:, 0].expand(len(frames), -1)[:, None], frames[:, None]))
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
        x, y = torch.from_numpy(piece[None, :-1]), torch.from_numpy(piece[None, 1:])
        each = torch.stack([m.frame_nll(m(x)[0], y) for m in members])
        model.train()
        torch.testing.assert_close(model.frame_nll(model(x)[0], y), each.mean(0))


def test_members_sample_each_row_from_one_member():
    """Two rollnets, one writing [1, 0] and one [0, 1] or [0, 0]: every row's frame comes from one member,
    half the rows each; `threshold` keeps the member's greedy frame the mixture finds most probable."""
    model = build_model(
        {"name": "rollnet", "hidden": 4, "dropout": 0.0, "members": 2}, {"input_size": 2, "output_size": 2}
    ).eval()
    with torch.no_grad():
        for m, bias in zip(model.members, ([9.0, -9.0], [-9.0, 1.0])):
            m.head.weight.zero_()
            m.head.bias.copy_(torch.tensor(bias))
        out, _ = model(torch.zeros(4000, 1, 2))
        drawn = model.sample_frame(out[:, 0], generator=torch.Generator().manual_seed(0))
        greedy = model.sample_frame(out[:1, 0], mode="threshold")
    kinds = {tuple(f.tolist()): int(n) / len(drawn) for f, n in zip(*drawn.unique(dim=0, return_counts=True))}
    assert set(kinds) == {(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)}  # the second member's key 1 is on with sig(1)
    assert kinds[(1.0, 0.0)] == pytest.approx(0.5, abs=0.03)
    assert kinds[(0.0, 1.0)] == pytest.approx(0.5 * sig(1), abs=0.03)
    assert greedy.tolist() == [[1.0, 0.0]]  # p = (1 + 0) / 2 against (0 + sig(1) sig(9)) / 2


def test_rollnet_components_score_and_sample_their_mixture():
    """`components`: each frame's probability is the weighted sum of C products of independent keys (all
    2^keys frames sum to one, the sum checked by hand), samples follow it, and `threshold` keeps the
    component's thresholded frame the mixture finds most probable."""
    keys = 4
    torch.manual_seed(0)
    model = build_model(
        {"name": "rollnet", "hidden": 8, "span": 1, "components": 3}, {"input_size": keys, "output_size": keys}
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        frames = torch.tensor(list(itertools.product([0.0, 1.0], repeat=keys)))
        out, _ = model(torch.tensor([[[1.0, 0.0, 1.0, 0.0]]]))
        at = out[:, 0].expand(len(frames), -1)
        p = torch.exp(-model.frame_nll(at, frames))
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
        logits, log_w = at[:, :-3].unflatten(-1, (3, keys)), torch.softmax(at[:, -3:], -1)
        by_hand = sum(
            log_w[:, c] * torch.where(frames > 0, torch.sigmoid(logits[:, c]), 1 - torch.sigmoid(logits[:, c])).prod(-1)
            for c in range(3)
        )
        torch.testing.assert_close(p, by_hand)
        drawn = model.sample_frame(out[:, 0].expand(40000, -1), generator=torch.Generator().manual_seed(0))
        greedy = model.sample_frame(out[:, 0], mode="threshold")
        candidates = (torch.sigmoid(logits[0]) > 0.5).float()  # (3, keys): each component's frame
        best = min(candidates, key=lambda f: float(model.frame_nll(out[:, 0], f[None])))
    counts = (drawn @ torch.tensor([8.0, 4.0, 2.0, 1.0])).long().bincount(minlength=16) / len(drawn)
    torch.testing.assert_close(counts, p.float(), atol=0.01, rtol=0)
    assert torch.equal(greedy[0], best)
    with pytest.raises(LstmidiError, match="components > 1 needs output 'linear'"):
        build_model({"name": "rollnet", "output": "lstm", "components": 2}, {"input_size": 2, "output_size": 2})


def test_members_only_for_models_that_score_whole_frames():
    with pytest.raises(LstmidiError, match=r"members must be 1; only the piano-roll models \(rollnet, endecell\)"):
        build_model({"name": "tokennet", "members": 2}, {"vocab_size": 10})


def test_endecell_interval_terms_by_hand():
    """span 1 with only the shared weights set: logit_k = b_k + 2 v_{k-1} + 3 x_{t,k} - 1 x_{t,k+1}."""
    model = build_model(
        {"name": "endecell", "embed": 4, "hidden": 4, "decoder_hidden": 1, "dropout": 0.0, "span": 1},
        {"input_size": 3, "output_size": 3},
    ).eval()
    b = [-1.0, 0.5, -2.0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.to_bv.bias.copy_(torch.tensor(b))
        model.to_below.bias.fill_(2.0)  # u_1
        model.to_prev.bias.copy_(torch.tensor([0.0, 3.0, -1.0]))  # q_-1, q_0, q_1
    piece = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], np.float32)
    want = 0.0
    for prev, frame in zip(piece[:-1], piece[1:]):
        for k in range(3):
            logit = b[k] + 3 * prev[k] + (2 * frame[k - 1] if k else 0) + (-prev[k + 1] if k < 2 else 0)
            want += bce(sig(logit), frame[k])
    assert score_pieces(model, [piece])["nll"] == pytest.approx(want / 2, rel=1e-6)


def test_rollnet_interval_terms_by_hand():
    """span 1 with only the shared weights set: logit_k = b_k + 3 x_{t,k} - 1 x_{t,k+1} + 0.5 x_{t,k-1}."""
    model = build_model(
        {"name": "rollnet", "hidden": 4, "dropout": 0.0, "span": 1}, {"input_size": 3, "output_size": 3}
    ).eval()
    b = [-1.0, 0.5, -2.0]
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(b))
        model.to_prev.bias.copy_(torch.tensor([0.5, 3.0, -1.0]))  # q_-1, q_0, q_1
    piece = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], np.float32)
    want = 0.0
    for prev, frame in zip(piece[:-1], piece[1:]):
        for k in range(3):
            logit = b[k] + 3 * prev[k] + (-prev[k + 1] if k < 2 else 0) + (0.5 * prev[k - 1] if k else 0)
            want += bce(sig(logit), frame[k])
    assert score_pieces(model, [piece])["nll"] == pytest.approx(want / 2, rel=1e-6)


def test_endecell_with_interval_terms_samples_what_it_scores_and_steps_like_the_whole():
    torch.manual_seed(1)
    model = build_model(
        {"name": "endecell", "embed": 8, "hidden": 16, "decoder_hidden": 8, "dropout": 0.0, "span": 5},
        {"input_size": 20, "output_size": 20},
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        x = (torch.rand(3, 7, 20) < 0.3).float()
        whole, _ = model(x)
        state, steps = None, []
        for t in range(7):
            out, state = model(x[:, t : t + 1], state)
            steps.append(out)
        assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)
        frame = model.sample_frame(whole[:, -1], mode="threshold")  # key by key, p >= 0.5 given the keys below
        assert 0 < frame.sum() < frame.numel()
        assert torch.equal((torch.sigmoid(model.key_logits(whole[:, -1], frame)) >= 0.5).float(), frame)


def test_cap_notes_keeps_the_bass_and_the_tune():
    from lstmidi.samplers import cap_notes

    frames = torch.tensor([[1, 0, 1, 1, 0, 1, 1], [0, 1, 0, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    assert cap_notes(frames, 3).tolist() == [
        [1, 0, 0, 0, 0, 1, 1],  # 5 keys: the lowest and the two highest
        [0, 1, 0, 1, 0, 0, 0],  # 2 keys: as it was
        [1, 0, 1, 1, 0, 0, 0],
    ]
    assert cap_notes(frames, 1).tolist()[0] == [1, 0, 0, 0, 0, 0, 0]


def test_frames_hold_at_most_max_notes_keys_and_are_drawn_again_first():
    from lstmidi.samplers import sample_multihot

    torch.manual_seed(0)
    model = build_model({"name": "rollnet", "hidden": 8, "dropout": 0.0}, {"input_size": 12, "output_size": 12})
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(math.log(0.25 / 0.75))  # each key on with p = 0.25: 3 keys on average
    primer = torch.zeros(200, 1, 12)
    free = sample_multihot(model, primer, 2, generator=torch.Generator().manual_seed(1))
    capped = sample_multihot(model, primer, 2, max_notes=3, generator=torch.Generator().manual_seed(1))
    assert free.sum(-1).max() > 3 and capped.sum(-1).max() <= 3
    # redrawn, not cut: frames of 3 keys are as common as the model's own frames of 3 given at most 3
    counts = capped.sum(-1).flatten()
    p = [math.comb(12, k) * 0.25**k * 0.75 ** (12 - k) for k in range(4)]
    assert float((counts == 3).float().mean()) == pytest.approx(p[3] / sum(p), abs=0.06)


@pytest.mark.parametrize("full", [3, 2])
def test_fill_weighs_down_each_frame_by_the_keys_it_lacks(full):
    from lstmidi.samplers import NOTE_TRIES, sample_multihot

    model = build_model({"name": "rollnet", "hidden": 8, "dropout": 0.0}, {"input_size": 3, "output_size": 3})
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()  # each of 3 keys on with p = 0.5
    fill = math.log(2.0)
    frames = sample_multihot(
        model,
        torch.zeros(40_000, 1, 3),
        1,
        max_notes=3,
        fill=fill,
        full=full,
        generator=torch.Generator().manual_seed(0),
    )
    counts = torch.bincount(frames.sum(-1).flatten().long(), minlength=4).double() / 40_000
    base = torch.tensor([math.comb(3, n) / 8 for n in range(4)], dtype=torch.float64)
    kept = base * torch.exp(fill * (torch.arange(4) - full).clamp(max=0))  # drawn and kept, each draw
    tilted = kept / kept.sum()  # the model's frame probabilities times 2 ** min(keys, full)
    miss = 1 - kept.sum()  # every draw drawn again: the last one stays
    expected = (1 - miss**NOTE_TRIES) * tilted + miss ** (NOTE_TRIES - 1) * (base - kept)
    assert torch.allclose(counts, expected, atol=0.01), (counts, expected)
    if full == 3:
        assert expected[3] > 0.29 > base[3]  # fuller: 8/27 of the frames hold all three keys, against 1/8
    else:
        assert expected[3] / expected[2] == pytest.approx(1 / 3, abs=1e-9)  # past `full` keys: as the model has it
    with pytest.raises(ValueError, match="fill needs full"):
        sample_multihot(model, torch.zeros(1, 1, 3), 1, fill=fill)


def write_mat(path, pieces_per_split=6, frames=24, seed=0):
    """A tiny benchmark file: a repeating three-chord progression on the 88-key layout."""
    rng = np.random.default_rng(seed)
    chords = [[39, 43, 46], [44, 48, 51], [46, 50, 53]]  # C, F, G major triads as 0-based key columns
    data = {}
    for key in ("traindata", "validdata", "testdata"):
        pieces = np.empty((1, pieces_per_split), object)
        for i in range(pieces_per_split):
            roll = np.zeros((frames + int(rng.integers(4)), KEYS), np.uint8)
            for t in range(len(roll)):
                roll[t, chords[(t // 2) % 3]] = 1
            pieces[0, i] = roll
        data[key] = pieces
    savemat(path, data)


def benchmark_cli(monkeypatch, mat, folder, *extra) -> dict:
    """`lstmidi benchmark polyphonic` of the musicgenerator preset (8 units, 1 epoch) on `mat` -> its JSON."""
    args = [
        "benchmark",
        "polyphonic",
        "--preset",
        "musicgenerator",
        "--data",
        mat,
        "--out",
        folder / "cli",
        "--epochs",
        "1",
        "--set",
        "model.hidden=8",
        "--json",
        folder / "fig.json",
        *extra,
    ]
    monkeypatch.setattr("sys.argv", ["lstmidi", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    return json.loads((folder / "fig.json").read_text())


def test_benchmark_learns_a_chord_progression_and_writes_json(tmp_path, monkeypatch, capsys):
    mat = tmp_path / "JSB_Chorales.mat"
    write_mat(mat)
    result = run(
        "jsb",
        load_preset(
            "endecell",
            [
                "model.hidden=32",
                "model.embed=16",
                "model.decoder_hidden=16",
                "model.members=1",  # one network learns it; the preset's three are tested above
                "train.epochs=150",
                "train.window=16",
                "train.hop=4",
                "train.lr=0.02",
                "model.dropout=0",
            ],
        ),
        tmp_path / "run",
        data=mat,
        progress=False,
    )
    assert result.test_nll < 0.5 * result.markov_nll  # the progression is learnt far beyond the per-key baseline
    assert result.frame_accuracy > 0.8
    rows = result.quality["rows"]  # the gate of generated pieces against the test pieces' piano rolls
    assert result.quality["pieces"] == 20 and rows["in_scale"]["real"] == 1.0  # the test rolls: C, F, G triads
    assert rows["in_scale"]["generated"] > 0.95 > rows["in_scale"]["random"]
    figures = benchmark_cli(
        monkeypatch, mat, tmp_path, "--dataset", "jsb", "--set", "train.window=16", "--set", "model.members=2"
    )
    assert {"test_nll", "valid_nll", "frame_accuracy", "dataset", "preset", "seconds"} <= set(figures)
    assert figures["dataset"] == "jsb" and figures["preset"] == "musicgenerator"
    settings = figures["settings"]  # what reproduces the run: the settings as run and the command
    assert settings["model"]["hidden"] == 8 and settings["train"]["window"] == 16 and settings["train"]["epochs"] == 1
    loaded = load_model(tmp_path / "cli" / "model.lstmidi")  # two members in one model file, which generates
    assert len(loaded.model.members) == 2 and loaded.model.members[0].spec.hidden == 8
    monkeypatch.setattr(
        "sys.argv",
        [
            "lstmidi",
            "generate",
            str(tmp_path / "cli" / "model.lstmidi"),
            "-o",
            str(tmp_path / "g.mid"),
            "--seconds",
            "2",
            "--fill",
            "0.5",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0 and Score(str(tmp_path / "g.mid")).note_num() > 0
    assert "benchmark polyphonic" in settings["command"] and "model.hidden=8" in settings["command"]
    printed = capsys.readouterr().out
    assert "RNN-NADE (published) | 5.19" in printed and "Quality gate: 20 pieces of 20 s" in printed
    assert figures["quality"]["rows"]["in_scale"]["real"] == 1.0


def test_benchmark_input_errors(tmp_path):
    with pytest.raises(LstmidiError, match="unknown dataset 'bach'.*jsb, nottingham"):
        run("bach", load_preset("endecell"), tmp_path / "r", data=tmp_path)
    with pytest.raises(LstmidiError, match="JSB_Chorales.mat: file not found"):
        run("jsb", load_preset("endecell"), tmp_path / "r", data=tmp_path)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(LstmidiError, match="bad.mat: not a readable .mat file"):
        load_mat(tmp_path / "bad.mat")
    savemat(tmp_path / "other.mat", {"rolls": np.zeros((2, 88))})
    with pytest.raises(LstmidiError, match="other.mat: no 'traindata' array"):
        load_mat(tmp_path / "other.mat")
    savemat(tmp_path / "narrow.mat", {k: np.zeros((5, 12)) for k in ("traindata", "validdata", "testdata")})
    with pytest.raises(LstmidiError, match=r"narrow.mat: traindata\[0\] has shape"):
        load_mat(tmp_path / "narrow.mat")
    mat = tmp_path / "JSB_Chorales.mat"
    write_mat(mat)
    with pytest.raises(LstmidiError, match="needs a piano-roll preset"):
        run("jsb", load_preset("tutorial"), tmp_path / "r", data=mat)


def test_benchmark_ensemble_cli_scores_the_mixture_and_refuses_other_models(tmp_path, monkeypatch, capsys):
    mat = tmp_path / "JSB_Chorales.mat"
    write_mat(mat, pieces_per_split=3, frames=12)
    figures = benchmark_cli(monkeypatch, mat, tmp_path, "--set", "train.window=8")
    model = figures["model"]
    args = ["lstmidi", "benchmark", "ensemble", model, model, "--data", str(mat), "--json", str(tmp_path / "mix.json")]
    monkeypatch.setattr("sys.argv", args)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    mix = json.loads((tmp_path / "mix.json").read_text())
    assert mix["dataset"] == "jsb" and [m["test"] for m in mix["members"]] == [pytest.approx(figures["test_nll"])] * 2
    assert mix["test_nll"] == pytest.approx(figures["test_nll"], rel=1e-5)  # a model mixed with itself is itself
    assert "**mixture of the 2**" in capsys.readouterr().out
    from lstmidi.api import bundled_model

    monkeypatch.setattr(
        "sys.argv", ["lstmidi", "benchmark", "ensemble", model, str(bundled_model()), "--data", str(mat)]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0
    assert "default.lstmidi: not a piano-roll model of the jsb benchmark's grid" in capsys.readouterr().err


def test_another_mat_file_is_named_after_itself_without_published_figures(tmp_path, monkeypatch, capsys):
    mat = tmp_path / "my_quartets.mat"
    write_mat(mat, pieces_per_split=3, frames=12)
    figures = benchmark_cli(monkeypatch, mat, tmp_path, "--set", "train.window=8")
    assert figures["dataset"] == "my_quartets" and figures["test_nll"] > 0
    out = capsys.readouterr().out
    assert "| model (my_quartets) |" in out and "(published)" not in out and "per-key Markov baseline (this run)" in out
    assert dataset_name("nottingham", tmp_path / "Nottingham.mat") == "nottingham"
