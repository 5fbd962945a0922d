import json
import shutil

import numpy as np
import pytest
import torch

from lstmidi.batches import WindowDataset
from lstmidi.config import load_preset
from lstmidi.errors import LstmidiError, ModelFileError
from lstmidi.modelfile import load_model
from lstmidi.sampling import generate
from lstmidi.training import train

TINY = [
    "model.hidden=24",
    "model.layers=1",
    "train.window=16",
    "train.hop=8",
    "train.batch_size=16",
    "train.primers=4",
    "train.primer_steps=8",
]


def tiny(epochs=2, extra=()):
    return load_preset("musicgenerator", [*TINY, f"train.epochs={epochs}", *extra])


def test_windows_cover_every_target_once_for_validation():
    piece = np.arange(23)[:, None].astype(np.uint8)  # frame t holds the value t
    ds = WindowDataset([piece, piece[:5]], window=8, hop=None)
    targets = []
    for i in range(len(ds)):
        x, y, mask = ds[i]
        real = int(mask.sum())
        np.testing.assert_array_equal(y[:real, 0].numpy(), x[:real, 0].numpy() + 1)  # target is one step ahead
        targets.extend(y[:real, 0].tolist())
    assert targets == list(range(1, 23)) + list(range(1, 5))


def test_training_windows_overlap_and_reach_the_end():
    piece = np.arange(30)[:, None].astype(np.uint8)
    ds = WindowDataset([piece], window=8, hop=4)
    starts = [int(ds[i][0][0, 0]) for i in range(len(ds))]
    assert starts == [0, 4, 8, 12, 16, 20, 21]
    assert all(ds[i][2].all() for i in range(len(ds)))


def test_tiny_overfit_beats_markov_baseline(tmp_path):
    # one repeating 4-chord progression: an LSTM learns it far better than "repeat the previous frame"
    from conftest import make_score

    chords = [(48, 64, 67), (53, 65, 69), (55, 62, 71), (48, 64, 67)]
    data = tmp_path / "loop"
    data.mkdir()
    for k in range(6):
        notes = [(beat * 480, 480, p) for beat in range(32) for p in chords[beat % 4]]
        make_score(notes).dump_midi(data / f"loop{k}.mid")
    preset = tiny(epochs=60, extra=["train.lr=0.01", "data.valid_fraction=0.3", "train.window=32"])
    result = train(preset, [data], tmp_path / "run", progress=False)
    assert result.valid_nll < 0.5 * result.baseline_nll, (result.valid_nll, result.baseline_nll)
    history = load_model(result.model_path).config["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_corpus

    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    write_corpus(data, n=10)
    (data / "notes.txt.mid").write_text("this is not MIDI")
    (data / "empty.mid").write_bytes(b"")
    good = (data / "piece00.mid").read_bytes()
    (data / "cut.mid").write_bytes(good[: len(good) // 2])
    import os

    os.environ["LSTMIDI_CACHE"] = str(root / "cache")
    result = train(tiny(epochs=2), [data], root / "run", progress=False, command="lstmidi train (test)")
    return result, data


def test_broken_files_are_skipped_and_reported_by_name(trained):
    result, _ = trained
    report = json.loads((result.run_dir / "report.json").read_text())
    skipped = {r["name"]: r["reason"] for r in report["files"] if r["status"] == "skipped"}
    assert set(skipped) == {"notes.txt.mid", "empty.mid"}
    assert "not a MIDI file" in skipped["notes.txt.mid"]
    assert "empty file" in skipped["empty.mid"]
    recovered = {r["name"]: r["reason"] for r in report["files"] if r["status"] == "recovered"}
    assert (
        set(recovered) == {"cut.mid"} and "track 1 truncated" in recovered["cut.mid"]
    )  # the notes before the cut are kept
    assert report["summary"]["loaded"] == 10 and report["summary"]["recovered"] == 1


def test_model_file_round_trip_gives_identical_outputs_and_samples(trained, tmp_path):
    result, _ = trained
    a, b = load_model(result.model_path), load_model(result.model_path)
    x = (torch.rand(2, 12, 88, generator=torch.Generator().manual_seed(3)) > 0.9).float()
    torch.testing.assert_close(a.model(x)[0], b.model(x)[0], rtol=0, atol=0)
    pa = generate(a, steps=24, num=2, seed=7)
    pb = generate(b, steps=24, num=2, seed=7)
    assert all(np.array_equal(p.frames, q.frames) for p, q in zip(pa, pb))
    pc = generate(a, steps=24, num=2, seed=8)
    assert not all(np.array_equal(p.frames, q.frames) for p, q in zip(pa, pc))
    assert a.config["command"] == "lstmidi train (test)" and "lstmidi train (test)" in a.card
    assert a.config["encoding"] == {"name": "pianoroll", **a.encoding.params.model_dump()}


def test_generation_works_after_the_data_folder_is_deleted(trained, tmp_path):
    result, data = trained
    copy = tmp_path / "model.lstmidi"
    shutil.copy(result.model_path, copy)
    shutil.rmtree(data)
    pieces = generate(load_model(copy), seconds=4.0, num=3, seed=1)
    assert len(pieces) == 3
    for p in pieces:  # stored primer (8 steps) + 4 s at 120 qpm on a 16th grid (32 steps), give or take 10%
        assert 8 + 29 <= len(p.frames) <= 8 + 35 and p.frames.shape[1] == 88  # (it ends on its home chord)
        assert p.primer_seconds == pytest.approx(1.0)
    assert generate(load_model(copy), steps=32, seed=1)[0].frames.shape == (8 + 32, 88)  # --steps: exactly


def test_step_sampler_matches_reference_that_reruns_the_sequence(trained):
    """Stateful sampling must equal the naive method that re-runs the whole sequence each step."""
    result, _ = trained
    loaded = load_model(result.model_path)
    loaded.preset.sample.max_notes = None  # the reference draws each frame once (no redraws over the cap)
    pieces = generate(loaded, steps=10, num=1, seed=5, primer_seconds=0.5)
    frames = torch.from_numpy(pieces[0].frames).float()[None]  # (1, primer + 10, 88)
    primer_len = frames.shape[1] - 10
    gen = torch.Generator().manual_seed(5)
    torch.randint(len(loaded.primers), (1,), generator=gen)  # the primer choice consumed the first draw
    seq = frames[:, :primer_len]
    for _ in range(10):
        logits, _ = loaded.model(seq)
        frame = torch.bernoulli(torch.sigmoid(logits[:, -1]), generator=gen)
        seq = torch.cat([seq, frame[:, None]], 1)
    torch.testing.assert_close(seq, frames)


def test_resume_continues_and_refuses_to_clobber(tmp_path, corpus_dir):
    run = tmp_path / "run"
    train(tiny(epochs=1), [corpus_dir], run, progress=False)
    with pytest.raises(LstmidiError, match="use --resume to continue it or --force"):
        train(tiny(epochs=1), [corpus_dir], run, progress=False)
    resumed = train(tiny(epochs=3), None, run, resume=True, progress=False)
    assert resumed.epochs == 3
    assert [h["epoch"] for h in load_model(resumed.model_path).config["history"]] == [1, 2, 3]
    with pytest.raises(LstmidiError, match="nothing to resume"):
        train(tiny(), None, tmp_path / "other", resume=True, progress=False)


def test_step_limit_stops_cleanly_after_exactly_that_many_steps(tmp_path, corpus_dir):
    result = train(tiny(epochs=10_000, extra=["train.max_steps=7"]), [corpus_dir], tmp_path / "run", progress=False)
    history = load_model(result.model_path).config["history"]
    assert history[-1]["step"] == 7 and result.epochs == history[-1]["epoch"]


@pytest.mark.filterwarnings(
    "ignore:`ModelCheckpoint\\(monitor='val_loss'\\)` could not find"
)  # no validation yet: expected
def test_a_step_limit_before_the_first_validation_still_writes_the_model_with_early_stopping(tmp_path, corpus_dir):
    result = train(
        tiny(extra=["train.max_steps=1", "train.early_stop=3"]), [corpus_dir], tmp_path / "run", progress=False
    )
    assert load_model(result.model_path).config["history"][-1]["step"] == 1


def test_time_limit_stops_cleanly_and_writes_the_model(tmp_path, corpus_dir):
    result = train(
        tiny(epochs=10_000, extra=["train.max_minutes=0.05"]), [corpus_dir], tmp_path / "run", progress=False
    )
    assert 1 <= result.epochs < 10_000
    load_model(result.model_path)


def test_early_stop_and_lr_patience_act_on_a_flat_validation_loss(tmp_path, corpus_dir):
    # a learning rate far below float32 resolution leaves the weights, so the validation loss, unchanged:
    # epoch 1 is the only new best, so early_stop=3 ends after epoch 4; lr_patience=1 halves the rate after
    # every second epoch without a new best (epochs 3 and 5 would; only 3 happens)
    extra = ["train.lr=1e-12", "train.early_stop=3", "train.lr_decay=0.5", "train.lr_patience=1"]
    result = train(tiny(epochs=10_000, extra=extra), [corpus_dir], tmp_path / "run", progress=False)
    history = load_model(result.model_path).config["history"]
    assert len({h["val_loss"] for h in history}) == 1
    assert result.epochs == 4
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["lr_schedulers"][0]["_last_lr"] == [pytest.approx(0.5e-12)]


def test_weight_average_moves_by_the_decay_and_starts_fast():
    from lstmidi.models import build_model
    from lstmidi.training import LitModel

    preset = tiny(extra=["train.average=0.9"])
    model = build_model(preset.model, {"input_size": 3, "output_size": 3})
    lit = LitModel(model, preset, "roll")
    old = [p.detach().clone() for p in lit.averaged.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    lit.on_train_batch_end()  # after step 0 the decay is min(0.9, 1/10): 90% of the way to the new weights
    for kept, before, now in zip(lit.averaged.parameters(), old, model.parameters()):
        torch.testing.assert_close(kept, 0.1 * before + 0.9 * now)
        assert not kept.requires_grad
    assert LitModel(model, tiny(), "roll").averaged is None


def test_weight_decay_shrinks_the_weights_by_lr_times_decay_per_step():
    from lstmidi.models import build_model
    from lstmidi.training import LitModel

    preset = tiny(extra=["train.weight_decay=0.25", "train.lr=0.1"])
    model = build_model(preset.model, {"input_size": 3, "output_size": 3})
    optimizer = LitModel(model, preset, "roll").configure_optimizers()
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    optimizer.step()
    for now, old in zip(model.parameters(), before):
        torch.testing.assert_close(now.detach(), old * (1 - 0.1 * 0.25))
    plain = LitModel(model, tiny(), "roll").configure_optimizers()
    assert type(plain) is torch.optim.Adam and plain.defaults["weight_decay"] == 0
    assert optimizer.defaults["fused"] and plain.defaults["fused"]  # one kernel, not a loop over the parameters


def test_with_weight_averaging_validation_and_the_model_file_use_the_average(tmp_path, corpus_dir):
    result = train(tiny(epochs=3, extra=["train.average=0.99"]), [corpus_dir], tmp_path / "run", progress=False)
    loaded = load_model(result.model_path)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, best[f"averaged.{name}"])
    assert any(not torch.equal(best[f"averaged.{n}"], best[f"model.{n}"]) for n in loaded.model.state_dict())
    # the validation loss that chose the checkpoint is the one of the weights kept
    best_val = min(h["val_loss"] for h in loaded.config["history"])
    assert loaded.config["metrics"]["valid_loss"] == pytest.approx(best_val, rel=1e-5)


def test_damaged_model_files_give_clear_errors(trained, tmp_path):
    result, _ = trained
    bad = tmp_path / "bad.lstmidi"
    bad.write_bytes(result.model_path.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="bad.lstmidi: not an lstmidi model file"):
        load_model(bad)
    with pytest.raises(ModelFileError, match="missing.lstmidi: model file not found"):
        load_model(tmp_path / "missing.lstmidi")


@pytest.mark.parametrize("hop", [None, 3])
@pytest.mark.parametrize("inner", [(), (5,)])  # tokens, frames x keys
@pytest.mark.parametrize("augmented", [False, True])
def test_a_batch_of_windows_is_the_windows_one_by_one(hop, inner, augmented):
    """The loader gathers a batch in one go (`__getitems__`); it must give exactly what stacking
    `__getitem__` gives, padding and per-window augmentation included."""
    from lstmidi.batches import make_loader

    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 9, (n, *inner)).astype(np.uint8) for n in (3, 40, 17, 2, 9)]
    augment = (lambda steps, r: (steps.astype(np.int64) + r.integers(1, 4)) % 9) if augmented else None
    ds = WindowDataset(pieces, 8, hop, augment, seed=4)
    ds.epoch = 2
    full = [i for i in range(len(ds)) if ds[i][2].all()]
    assert 0 < len(full) < len(ds)
    for indices in (rng.permutation(len(ds))[:11].tolist(), full[::-1]):  # windows of any length; full ones only
        batch = ds.__getitems__(indices)
        one_by_one = [torch.stack(column) for column in zip(*(ds[i] for i in indices))]
        for got, want in zip(batch, one_by_one, strict=True):
            assert got.dtype == want.dtype and got.is_contiguous() and torch.equal(got, want)
    loader = make_loader(pieces, 8, hop, 4, True, seed=1, augment=augment)
    order = list(loader.sampler)
    assert len(order) % 4  # a last batch of fewer windows
    for chunk in (loader.CHUNK, 2):  # batches gathered 16 at a time (all of them here), or 2
        loader.CHUNK = chunk
        batches = list(loader)
        assert len(batches) == len(loader) == -(-len(order) // 4)
        for k, (x, y, mask) in enumerate(batches):
            want = [torch.stack(column) for column in zip(*(loader.dataset[i] for i in order[4 * k : 4 * k + 4]))]
            assert torch.equal(x, want[0]) and torch.equal(y, want[1]) and torch.equal(mask, want[2])


def test_training_steps_keep_the_loss_on_the_device_and_log_it_every_n_steps(monkeypatch):
    """A float()/.item() per training step would wait for a GPU each step: the loss is read back only every
    `log_every_n_steps` steps, when the logs and the progress bar get the weighted mean since the last time;
    the epoch's sums are exact."""
    from types import SimpleNamespace

    from lstmidi.batches import batch_objective
    from lstmidi.models import build_model
    from lstmidi.training import LitModel

    preset = load_preset("flagship", ["model.embed=8", "model.hidden=16", "model.layers=1", "train.window=6"])
    model = build_model(preset.model, {"vocab_size": 30})
    module = LitModel(model, preset, "tokens")
    module._trainer = SimpleNamespace(log_every_n_steps=3, global_step=0, world_size=1, current_epoch=0)
    logged = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append((step, metrics)))
    monkeypatch.setattr(LitModel, "loggers", property(lambda self: [logger]))
    # the step's own backward and optimizer step, with a rate of 0: the weights, so the losses, stay as they are
    monkeypatch.setattr(module, "optimizers", lambda: torch.optim.SGD(model.parameters(), lr=0.0))
    monkeypatch.setattr(module, "manual_backward", lambda loss: loss.backward())
    g = torch.Generator().manual_seed(0)
    batches = []
    for k in range(7):
        x = torch.randint(30, (4, 7), generator=g)
        mask = torch.ones(4, 6, dtype=torch.uint8)
        mask[k % 4, k:] = 0  # windows of different lengths: the weights differ
        batches.append((x[:, :-1], x[:, 1:], mask))
    torch.manual_seed(0)
    expected = []
    with torch.no_grad():
        for b in batches:
            loss, weight, _ = batch_objective(model.eval(), b, "tokens", preset.train.loss)
            expected.append((float(loss), float(weight)))

    reads = []
    model.eval()  # no dropout: the same losses as above
    with monkeypatch.context() as m:
        for name in ("item", "__float__", "tolist"):
            read = getattr(torch.Tensor, name)
            m.setattr(torch.Tensor, name, lambda self, read=read: reads.append(module.global_step) or read(self))
        for step, b in enumerate(batches):
            module._trainer.global_step = step
            module.training_step(b, step)
    assert reads == [2, 5]  # once each at steps 3 and 6, for the logs
    assert [step for step, _ in logged] == [2, 5]
    for (_, metrics), part in zip(logged, (expected[:3], expected[3:6]), strict=True):
        assert sorted(metrics) == ["epoch", "loss"]
        mean = sum(loss * weight for loss, weight in part) / sum(weight for _, weight in part)
        assert metrics["loss"] == pytest.approx(mean, rel=1e-6)
    assert module.shown_loss == logged[-1][1]["loss"]
    total, weight = module._train_sums()
    assert weight == sum(w for _, w in expected)
    assert total == pytest.approx(sum(loss * w for loss, w in expected), rel=1e-9)


def test_a_batch_moves_to_another_device_and_stays_as_it_is_on_the_cpu():
    from lstmidi.models import build_model
    from lstmidi.training import LitModel

    preset = tiny()
    module = LitModel(build_model(preset.model, {"input_size": 3, "output_size": 3}), preset, "roll")
    batch = (torch.zeros(2, 4, 3), torch.ones(2, 4, 3), torch.ones(2, 4, dtype=torch.uint8))
    assert module.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert [t.device.type for t in moved] == ["meta"] * 3 and [t.shape for t in moved] == [t.shape for t in batch]


class Recorder:
    """An optimizer that records the gradient norm it is stepped with, and the calls it gets."""

    def __init__(self, params):
        self.params, self.calls, self.norms = list(params), [], []

    def zero_grad(self, set_to_none=True):
        self.calls.append("zero_grad")
        for p in self.params:
            p.grad = None

    def step(self):
        self.calls.append("step")
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params]))))


@pytest.mark.parametrize("clip", [0.0, 0.01, 1e6])
def test_a_training_step_clears_the_gradients_clips_their_norm_and_steps_the_optimizer(monkeypatch, clip):
    from types import SimpleNamespace

    from lstmidi.batches import batch_objective
    from lstmidi.models import build_model
    from lstmidi.training import LitModel

    preset = load_preset("tutorial", ["model.hidden=8", "model.pitch_embed=4", f"train.grad_clip={clip}"])
    model = build_model(preset.model, {"fields": ["pitch", "step", "duration"]})
    module = LitModel(model, preset, "notes")
    module._trainer = SimpleNamespace(log_every_n_steps=0, global_step=0, world_size=1)
    recorder = Recorder(model.parameters())
    monkeypatch.setattr(module, "optimizers", lambda: recorder)
    monkeypatch.setattr(module, "manual_backward", lambda loss: loss.backward())
    g = torch.Generator().manual_seed(1)
    notes = torch.stack(
        [
            torch.randint(40, 80, (3, 9), generator=g).float(),
            torch.rand(3, 9, generator=g),
            torch.rand(3, 9, generator=g),
        ],
        -1,
    )
    batch = (notes[:, :-1], notes[:, 1:], torch.ones(3, 8, dtype=torch.uint8))
    for p in model.parameters():  # a stale gradient that the step must clear
        p.grad = torch.full_like(p, 100.0)
    module.training_step(batch, 0)

    loss, _, _ = batch_objective(model, batch, "notes", preset.train.loss, module.step_weights)
    model.zero_grad()
    loss.backward()
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))
    assert recorder.calls == ["zero_grad", "step"]
    assert recorder.norms[0] == pytest.approx(min(norm, clip) if clip else norm, rel=1e-5)
    assert 0.01 < norm < 1e6  # so each setting above is a real case: clipped, not clipped, off


def test_the_trainer_is_deterministic_without_filling_new_memory(tmp_path, monkeypatch):
    import torch.utils.deterministic

    from lstmidi.training import ProgressBar, make_trainer

    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer = make_trainer(load_preset("tutorial").train, tmp_path, [], progress=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory  # 5% of a small model's step
        assert isinstance(trainer.progress_bar_callback, ProgressBar)
    finally:
        torch.use_deterministic_algorithms(deterministic)


@pytest.mark.parametrize("precision, dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_the_training_precision_reaches_the_training_steps_but_not_validation(precision, dtype, tmp_path, corpus_dir):
    """train.precision=bfloat16: the LSTM runs in bfloat16 in the training steps, in float32 in validation;
    the weights, the loss and the model file stay float32."""
    import lightning as L

    seen = {"train": set(), "valid": set()}

    class Watch(L.Callback):
        def on_fit_start(self, trainer, module):
            def hook(lstm, inputs, output):
                seen["train" if lstm.training else "valid"].add(output[0].dtype)

            module.model.lstm.register_forward_hook(hook)

    preset = tiny(extra=[f"train.precision={precision}"])
    result = train(preset, [corpus_dir], tmp_path / "run", progress=False, callbacks=[Watch()])
    assert seen == {"train": {dtype}, "valid": {torch.float32}}
    history = load_model(result.model_path).config["history"]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in history)
    weights = load_model(result.model_path).model.state_dict().values()
    assert {w.dtype for w in weights if w.is_floating_point()} == {torch.float32}


def test_a_float32_run_resumes_in_bfloat16_where_auto_chooses_it_there(tmp_path, corpus_dir, monkeypatch):
    """A run with train.precision=auto moved to a machine where auto means bfloat16 resumes there: the
    checkpoint holds a fused Adam's state (float32), and Lightning refuses to clip the gradients of an
    optimizer built fused in mixed precision."""
    from lstmidi import trainer

    run = tmp_path / "run"
    monkeypatch.setattr(trainer, "native_bfloat16", lambda: False)
    train(tiny(epochs=1, extra=["train.precision=auto"]), [corpus_dir], run, progress=False)
    monkeypatch.setattr(trainer, "native_bfloat16", lambda: True)
    resumed = train(tiny(epochs=2), None, run, resume=True, progress=False)
    assert [h["epoch"] for h in load_model(resumed.model_path).config["history"]] == [1, 2]


def test_automatic_precision_is_bfloat16_where_the_processor_multiplies_it_natively(monkeypatch):
    from lstmidi import trainer

    monkeypatch.setattr(trainer.torch.cuda, "is_available", lambda: False)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(trainer, "native_bfloat16", lambda native=native: native)
        assert trainer.precision("auto") == expected
    assert trainer.precision("float32") == "32-true" and trainer.precision("bfloat16") == "bf16-mixed"


def test_the_progress_bar_shows_the_loss_last_logged():
    from types import SimpleNamespace

    from lstmidi.training import ProgressBar

    trainer = SimpleNamespace(loggers=[], progress_bar_metrics={"val_loss": 2.5})
    module = SimpleNamespace(shown_loss=None)
    assert ProgressBar().get_metrics(trainer, module) == {"val_loss": 2.5}
    module.shown_loss = 1.25
    assert ProgressBar().get_metrics(trainer, module) == {"val_loss": 2.5, "loss": 1.25}


def test_the_progress_bar_is_redrawn_at_most_every_interval(monkeypatch):
    from types import SimpleNamespace

    import lightning as L

    from lstmidi.training import ProgressBar

    drawn = []
    monkeypatch.setattr(
        L.pytorch.callbacks.RichProgressBar, "on_train_batch_end", lambda self, tr, m, o, b, i: drawn.append(i)
    )
    bar = ProgressBar(interval=3600.0)
    trainer = SimpleNamespace(num_training_batches=50)
    for i in range(50):
        bar.on_train_batch_end(trainer, None, None, None, i)
    assert drawn == [0, 49]  # the first batch, then none within the interval but the epoch's last
