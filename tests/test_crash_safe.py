"""Crash-safe training: atomic checkpoints, step checkpoints, and a SIGKILLed run that resumes to the
exact weights of an uninterrupted one; clear errors for an unwritable or full run folder."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lstmidi.config import load_preset
from lstmidi.errors import LstmidiError
from lstmidi.modelfile import load_model
from lstmidi.training import train

# rollnet with 2 layers: dropout between layers and before the output, so the RNG state matters
TINY = [
    "model.hidden=16",
    "model.layers=2",
    "model.dropout=0.3",
    "train.window=16",
    "train.hop=8",
    "train.batch_size=16",
    "train.primers=2",
    "train.primer_steps=8",
    "train.checkpoint_every_steps=2",
    "train.augment.transpose=2",
]

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lstmidi import training
    from lstmidi.config import load_preset

    marker = Path(sys.argv[3])
    save = training.AtomicCheckpointIO.save_checkpoint

    def save_then_hang(self, checkpoint, path, storage_options=None):
        save(self, checkpoint, path, storage_options)
        # the first checkpoint written inside epoch 1 is a step checkpoint in the middle of the epoch
        if checkpoint["epoch"] == 1 and Path(path).name == "last.ckpt":
            marker.write_text(str(checkpoint["global_step"]))
            time.sleep(600)  # killed here, with SIGKILL

    training.AtomicCheckpointIO.save_checkpoint = save_then_hang
    training.train(load_preset("musicgenerator", sys.argv[4:]), [sys.argv[1]], sys.argv[2], progress=False)
""")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_model(run / "model.lstmidi").model.state_dict()


def last_ckpt(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_sigkilled_run_resumes_to_the_same_weights_as_an_uninterrupted_run(tmp_path, corpus_dir):
    overrides = [*TINY, "train.epochs=3"]
    a = train(load_preset("musicgenerator", overrides), [corpus_dir], tmp_path / "a", progress=False)

    run_b, marker = tmp_path / "b", tmp_path / "killed-at"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus_dir), str(run_b), str(marker), *overrides],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 60
        while not marker.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), (
            child.stderr.read().decode()[-2000:] if child.poll() is not None else "no step checkpoint"
        )
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    killed_at = int(marker.read_text())
    state = last_ckpt(run_b)
    assert state["global_step"] == killed_at and state["epoch"] == 1
    batches_done = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_done"]
    steps_per_epoch = killed_at - batches_done
    assert 0 < batches_done < steps_per_epoch, "killed in the middle of epoch 2"
    assert not (run_b / "model.lstmidi").exists()

    b = train(load_preset("musicgenerator", overrides), None, run_b, resume=True, progress=False)
    assert b.epochs == a.epochs == 3
    wa, wb = weights(tmp_path / "a"), weights(run_b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    la, lb = last_ckpt(tmp_path / "a"), last_ckpt(run_b)
    assert la["global_step"] == lb["global_step"] == 3 * steps_per_epoch
    for name in la["state_dict"]:
        assert torch.equal(la["state_dict"][name], lb["state_dict"][name]), name
    # the per-epoch history (train loss over the whole epoch) is the same too
    ha, hb = load_model(a.model_path).config["history"], load_model(b.model_path).config["history"]
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], rel=1e-6)


def test_checkpoints_are_written_atomically_and_every_n_steps(tmp_path, corpus_dir, monkeypatch):
    from lstmidi import training

    saves, replaced = [], []
    real_replace = os.replace

    def spy_replace(src, dst):
        if str(dst).endswith(".ckpt"):
            assert Path(src).parent == Path(dst).parent and Path(src).name.startswith(".")  # temp file beside it
            replaced.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(training.os, "replace", spy_replace)
    real_save = training.AtomicCheckpointIO.save_checkpoint

    def spy_save(self, checkpoint, path, storage_options=None):
        saves.append((Path(path).name, checkpoint["global_step"]))
        real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(training.AtomicCheckpointIO, "save_checkpoint", spy_save)
    train(load_preset("musicgenerator", [*TINY, "train.epochs=1"]), [corpus_dir], tmp_path / "run", progress=False)
    steps = [step for name, step in saves if name == "last.ckpt"]
    assert steps[:-1] == list(range(2, steps[-1], 2))  # every 2 steps, then the end of the epoch
    assert sorted(set(replaced)) == ["best.ckpt", "last.ckpt"] and len(replaced) == len(saves)
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_unwritable_run_folder_fails_before_training(tmp_path, corpus_dir):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(LstmidiError, match=r"file.txt/run: cannot write the run folder"):
        train(load_preset("musicgenerator", [*TINY, "train.epochs=1"]), [corpus_dir], blocker / "run", progress=False)


def test_full_disk_fails_before_training(tmp_path, corpus_dir, monkeypatch):
    import shutil

    from lstmidi import training

    fits = []
    monkeypatch.setattr(training.L.Trainer, "fit", lambda *a, **k: fits.append(1))
    monkeypatch.setattr(training.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(
        LstmidiError, match=r"run: not enough free disk space for training \(1 MB free, about 5\d MB needed"
    ):
        train(load_preset("musicgenerator", [*TINY, "train.epochs=1"]), [corpus_dir], tmp_path / "run", progress=False)
    assert not fits


def test_weight_averaging_asks_for_room_for_a_second_copy_of_the_weights(tmp_path, corpus_dir, monkeypatch):
    import shutil

    from lstmidi import training

    monkeypatch.setattr(training.L.Trainer, "fit", lambda *a, **k: None)
    preset = load_preset("musicgenerator", ["model.hidden=512", "train.epochs=1", "train.quality_pieces=0"])
    size = sum(
        p.numel() * 4 for p in training.build_model(preset.model, {"input_size": 88, "output_size": 88}).parameters()
    )
    free = 3 * size + 50 * 2**20 + size // 2  # room for 3 copies of the weights, not for 4
    monkeypatch.setattr(training.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**10, 10**10 - free, free))
    training.train(preset, [corpus_dir], tmp_path / "plain", progress=False)  # fits
    averaged = load_preset("musicgenerator", ["model.hidden=512", "train.epochs=1", "train.average=0.99"])
    with pytest.raises(LstmidiError, match="not enough free disk space"):
        training.train(averaged, [corpus_dir], tmp_path / "averaged", progress=False)


def test_resume_from_an_end_of_epoch_checkpoint_is_exact_too(tmp_path, corpus_dir):
    overrides = [*TINY, "train.checkpoint_every_steps=0"]
    train(load_preset("musicgenerator", [*overrides, "train.epochs=3"]), [corpus_dir], tmp_path / "a", progress=False)
    train(load_preset("musicgenerator", [*overrides, "train.epochs=2"]), [corpus_dir], tmp_path / "b", progress=False)
    train(
        load_preset("musicgenerator", [*overrides, "train.epochs=3"]), None, tmp_path / "b", resume=True, progress=False
    )
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_epoch_order_depends_on_seed_and_epoch_only_and_resume_skips_done_windows():
    import numpy as np

    from lstmidi.batches import make_loader

    pieces = [np.arange(200)[:, None].astype(np.uint8)]
    loader = make_loader(pieces, 8, 4, 5, True, seed=3)

    def starts(ld, epoch):
        ld.sampler.set_epoch(epoch)
        return [int(v) for x, _, _ in ld for v in x[:, 0, 0]]

    e0, e1 = starts(loader, 0), starts(loader, 1)
    assert sorted(e0) == sorted(e1) and e0 != e1
    assert starts(loader, 0) == e0  # iterating again does not advance any generator
    fresh = make_loader(pieces, 8, 4, 5, True, seed=3)
    fresh.load_state_dict({"epoch": 1, "batches_done": 2})
    assert starts(fresh, 1) == e1[10:]  # the two batches already trained on are skipped, once
    assert starts(fresh, 1) == e1
    assert starts(make_loader(pieces, 8, 4, 5, True, seed=4), 0) != e0
