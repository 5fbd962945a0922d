import pytest
import torch

from lstmidi.errors import LstmidiError
from lstmidi.models import MODELS, build_model

ROLL = {"input_size": 12, "output_size": 12}
NOTES = {"input_size": 3, "pitch_classes": 128, "fields": ["pitch", "step", "duration"]}
TOKENS = {"vocab_size": 20}
VOICES = {"voices": 4, "vocab_size": 9, "positions": 4}
VARIANTS = [
    ({"name": "rollnet", "hidden": 16, "layers": 1, "output": "linear"}, ROLL),
    ({"name": "rollnet", "hidden": 16, "layers": 3, "dropout": 0.3, "output": "linear"}, ROLL),
    ({"name": "rollnet", "hidden": 16, "layers": 2, "output": "lstm"}, ROLL),
    ({"name": "endecell", "embed": 8, "hidden": 16, "layers": 2, "decoder_hidden": 6}, ROLL),
    ({"name": "endecell", "embed": 8, "hidden": 16, "decoder_hidden": 6, "span": 2, "decoders": 2, "members": 3}, ROLL),
    ({"name": "rollnet", "hidden": 16, "layers": 2, "output": "lstm", "members": 2}, ROLL),
    ({"name": "rollnet", "hidden": 16, "layers": 1, "span": 2, "components": 3}, ROLL),
    ({"name": "notenet", "hidden": 16, "layers": 2, "dense": [8]}, NOTES),
    (
        {"name": "notenet", "hidden": 16, "dense": [24], "pitch_head": "regression"},
        {**NOTES, "fields": ["pitch", "velocity", "step"]},
    ),
    ({"name": "seq2seq", "hidden": 16, "layers": 2, "context": 4}, TOKENS),
    ({"name": "seq2seq", "hidden": 16, "layers": 1, "embed": 8, "context": 4}, TOKENS),
    ({"name": "tokennet", "embed": 8, "hidden": 16, "layers": 3}, TOKENS),
    ({"name": "tokennet", "embed": 8, "hidden": 16, "layers": 2, "tie_weights": True}, TOKENS),
    ({"name": "voicenet", "embed": 4, "hidden": 8, "layers": 2, "center": 6}, VOICES),
]
STEPPED = [v for v in VARIANTS if not MODELS[v[0]["name"]].reads_ahead]  # run step by step in generation
assert {v[0]["name"] for v in VARIANTS} == set(MODELS), "every registered model needs variants here"


def make_input(sizes, batch=3, time=10):
    g = torch.Generator().manual_seed(0)
    if "voices" in sizes:
        x = torch.randint(sizes["vocab_size"], (batch, time, sizes["voices"] + 1), generator=g)
        x[..., -1] = torch.arange(time) % sizes["positions"]
        return x
    if "vocab_size" in sizes:
        return torch.randint(sizes["vocab_size"], (batch, time), generator=g)
    if "fields" in sizes:
        x = torch.rand(batch, time, len(sizes["fields"]), generator=g)
        x[..., 0] = torch.randint(40, 90, (batch, time), generator=g).float()
        return x
    return (torch.rand(batch, time, sizes["input_size"], generator=g) > 0.7).float()


def flat(out):
    """Model outputs as one tensor (dict heads concatenated), for comparisons."""
    if isinstance(out, dict):
        return torch.cat([out[k].reshape(*out[k].shape[:2], -1) for k in sorted(out)], -1)
    return out


@pytest.mark.parametrize(
    "spec, sizes",
    STEPPED,
    ids=lambda v: "-".join(str(x) for x in v.values()) if isinstance(v, dict) and "name" in v else "",
)
def test_step_by_step_equals_whole_sequence(spec, sizes):
    torch.manual_seed(0)
    model = build_model(spec, sizes).eval()
    x = make_input(sizes)
    state0 = model.encode(make_input(sizes, time=4)) if model.context else None
    whole, _ = model(x, state0)
    state, steps = state0, []
    for t in range(10):
        out, state = model(x[:, t : t + 1], state)
        steps.append(flat(out))
    torch.testing.assert_close(torch.cat(steps, 1), flat(whole), rtol=1e-5, atol=1e-5)
    a, state = model(x[:, :4], state0)  # and in two chunks
    b, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([flat(a), flat(b)], 1), flat(whole), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec, sizes",
    STEPPED,
    ids=lambda v: "-".join(str(x) for x in v.values()) if isinstance(v, dict) and "name" in v else "",
)
def test_fast_generation_step_equals_whole_sequence(spec, sizes, monkeypatch):
    """Generation (eval, no gradients, one step per call) runs the LSTM's own step path, never nn.LSTM's
    per-call kernel, and gives the full-sequence outputs."""
    torch.manual_seed(0)
    model = build_model(spec, sizes).eval()
    x = make_input(sizes)
    with torch.no_grad():
        state0 = model.encode(make_input(sizes, time=4)) if model.context else None
        whole, _ = model(x, state0)
        steps, state = [], state0
        calls = []
        original = torch.nn.LSTM.forward
        monkeypatch.setattr(torch.nn.LSTM, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
        for t in range(10):
            out, state = model(x[:, t : t + 1], state)
            steps.append(flat(out))
    assert not calls, "a one-step call at inference went through nn.LSTM.forward"
    torch.testing.assert_close(torch.cat(steps, 1), flat(whole), rtol=1e-5, atol=1e-5)


def test_a_model_that_reads_ahead_predicts_each_cell_from_every_other_cell_but_never_from_itself():
    """voicenet: the logits of (frame t, voice v) change when any other cell changes (before t, after t, or
    another voice at t) and never when the cell itself does (no leak of the target)."""
    torch.manual_seed(0)
    model = build_model({"name": "voicenet", "embed": 4, "hidden": 8, "layers": 2, "center": 6}, VOICES).eval()
    x = make_input(VOICES, batch=1, time=10)
    out, state = model(x)
    assert out.shape == (1, 10, 4, VOICES["vocab_size"]) and state is None
    t, v = 5, 1

    def changed(frame, voice):
        y = x.clone()
        y[0, frame, voice] = (y[0, frame, voice] + 1) % VOICES["vocab_size"]
        with torch.no_grad():
            return not torch.allclose(model(y)[0][0, t, v], out[0, t, v].detach())

    assert not changed(t, v)
    assert changed(0, v) and changed(9, v) and changed(t, 0) and changed(t, 3) and changed(t - 1, 2)


def test_fast_step_follows_weight_changes_and_training_uses_the_full_path():
    from lstmidi.models.steplstm import LSTM

    torch.manual_seed(0)
    lstm = LSTM(5, 7, 2, batch_first=True).eval()
    x = torch.randn(2, 1, 5)
    with torch.no_grad():
        before, _ = lstm(x)
        lstm.weight_ih_l1.add_(0.5)  # in place: the stacked weights must be rebuilt
        after, _ = lstm(x)
        reference, _ = torch.nn.LSTM.forward(lstm, x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=1e-5, atol=1e-6)
    model = build_model({"name": "tokennet", "embed": 4, "hidden": 6, "layers": 2}, TOKENS).eval()
    tokens = torch.tensor([[3], [7]])
    with torch.no_grad():
        model(tokens)  # builds the first layer's input-gate table
        model.embed.weight.mul_(2.0)  # ... which must follow the embedding
        step, _ = model(tokens)
        whole, _ = model(torch.cat([tokens, tokens], 1))
    torch.testing.assert_close(step[:, 0], whole[:, 0], rtol=1e-5, atol=1e-6)
    lstm.train()
    out, _ = lstm(x)  # with gradients: nn.LSTM's path, so the weights get gradients
    out.sum().backward()
    assert lstm.weight_ih_l0.grad is not None and lstm.weight_ih_l0.grad.abs().sum() > 0


def test_output_shapes_match_the_originals():
    # DeepLearning4Music: LSTM 48 -> Dense 24 -> Dense 3 (9984 + 1176 + 75 parameters in Keras)
    dl4m = build_model(
        {"name": "notenet", "hidden": 48, "dense": [24], "pitch_head": "regression", "pitch_input": "scalar"},
        {**NOTES, "fields": ["pitch", "velocity", "step"]},
    )
    sizes = [p.numel() for p in dl4m.parameters()]
    assert sum(sizes) == 9984 + 48 * 4 + 1176 + 75  # PyTorch has two LSTM bias vectors, Keras one
    out, _ = dl4m(make_input({**NOTES, "fields": ["pitch", "velocity", "step"]}))
    assert set(out) == {"pitch", "velocity", "step"} and out["pitch"].shape == (3, 10)
    # the tutorial: LSTM 128 + heads pitch (128 logits), step, duration
    tut = build_model({"name": "notenet", "hidden": 128}, NOTES)
    out, _ = tut(make_input(NOTES))
    assert out["pitch"].shape == (3, 10, 128) and out["step"].shape == (3, 10) and out["duration"].shape == (3, 10)


def test_seq2seq_decoder_depends_on_the_encoded_context():
    model = build_model({"name": "seq2seq", "hidden": 16, "layers": 2, "context": 4}, TOKENS).eval()
    x = make_input(TOKENS, time=5)
    a, _ = model(x, model.encode(torch.zeros(3, 4, dtype=torch.long)))
    b, _ = model(x, model.encode(torch.full((3, 4), 7, dtype=torch.long)))
    assert not torch.allclose(a, b)


def test_bad_spec_names_the_field():
    with pytest.raises(LstmidiError, match="hidden"):
        build_model({"name": "rollnet", "hidden": 0}, ROLL)
    with pytest.raises(LstmidiError, match="output"):
        build_model({"name": "rollnet", "output": "dense"}, ROLL)
    with pytest.raises(LstmidiError, match="pitch_head"):
        build_model({"name": "notenet", "pitch_head": "nope"}, NOTES)
    with pytest.raises(LstmidiError, match="unknown model 'gpt'"):
        build_model({"name": "gpt"}, ROLL)


def test_tied_weights_share_the_embedding():
    model = build_model({"name": "tokennet", "embed": 8, "hidden": 16, "layers": 1, "tie_weights": True}, TOKENS)
    assert model.head.weight is model.embed.weight
    untied = build_model({"name": "tokennet", "embed": 8, "hidden": 16, "layers": 1}, TOKENS)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in untied.parameters())


def test_sampling_resumed_from_a_checkpoint_continues_exactly():
    from lstmidi.samplers import sample_tokens

    torch.manual_seed(0)
    model = build_model({"name": "tokennet", "embed": 8, "hidden": 16, "layers": 2}, TOKENS).eval()
    primer = torch.tensor([[1, 5, 2], [3, 3, 9]])
    saved = {"at": 8}
    whole = sample_tokens(model, primer, 20, greedy=True, checkpoint=saved)
    given = torch.cat([primer, whole[:, :8]], 1)
    resumed = sample_tokens(model, given, 12, greedy=True, resume=saved["resume"])
    reread = sample_tokens(model, given, 12, greedy=True)
    assert torch.equal(resumed, whole[:, 8:]) and torch.equal(reread, whole[:, 8:])
    # the stored state is the one after reading the primer and the first 8 tokens
    with torch.no_grad():
        logits, (h, c) = model(given)
    torch.testing.assert_close(saved["resume"][0], logits[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(saved["resume"][1][0], h, rtol=1e-5, atol=1e-5)


def test_a_step_of_many_rows_multiplies_in_bfloat16_and_stays_close_to_float32():
    from lstmidi.models import steplstm

    torch.manual_seed(0)
    lstm = steplstm.LSTM(16, 32, 2, batch_first=True).eval()
    rows = steplstm.HALF_ROWS
    x, state = torch.randn(rows, 5, 16), None
    with torch.no_grad():
        reference, _ = torch.nn.LSTM.forward(lstm, x)
        lstm(x[:1, :1])  # one row: float32
        assert "half" not in lstm.__dict__.get("_step_cache", {})
        steps = []
        for t in range(5):
            out, state = lstm(x[:, t : t + 1], state)
            steps.append(out)
    assert ("half" in lstm._step_cache) == steplstm.native_bfloat16()
    torch.testing.assert_close(torch.cat(steps, 1), reference, rtol=0, atol=2e-2)


def test_endecell_input_dropout_drops_keys_of_the_input_in_training_only():
    torch.manual_seed(0)
    spec = {"name": "endecell", "embed": 8, "hidden": 16, "decoder_hidden": 6, "dropout": 0.0, "span": 2}
    model = build_model({**spec, "input_dropout": 1 - 1e-9}, ROLL)
    x = make_input(ROLL)
    silent, _ = model.train()(torch.zeros_like(x))
    dropped, _ = model(x)  # every key dropped: the model sees silence (the frames to predict are not inputs)
    torch.testing.assert_close(dropped, silent)
    kept, _ = model.eval()(x)
    assert not torch.allclose(kept, silent)
    plain = build_model(spec, ROLL)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.train()(x)[0], kept)  # without it, training sees every key
