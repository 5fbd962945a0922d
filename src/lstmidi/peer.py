"""`lstmidi benchmark speed --peer keras`: the TensorFlow music tutorial's Keras model beside lstmidi's `tutorial`
preset, on the same windows of the bundled Bach chorales (25 notes of (pitch, step, duration), hop 5, batch 64).

Each side runs in a process of its own (so that its peak memory is its own), in alternation (lstmidi, Keras,
lstmidi, ...), and reports: ms per training batch and windows per second (after the first batches), the
held-out loss after the same number of training windows (pitch NLL in nats of the note after each validation
window, and the tutorial's weighted loss on it), ms per generated note (lstmidi: its stateful sampler; Keras:
the tutorial's `predict_next_note`, `model.predict` on the last 25 notes for every note) and the peak resident
memory. The Keras model is the tutorial's: LSTM(128) on (pitch / 128, step, duration), Dense heads for pitch
(128 logits), step and duration; loss = 0.05 x sparse cross-entropy + MSE with positive pressure on step and
duration; Adam, learning rate 0.005. lstmidi scores all 25 positions of a window, Keras only the last.
Needs the optional extra `peer` (tensorflow-cpu); CI does not run it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCH, WINDOW, GENERATED = 64, 25, 50


def windows(work: Path) -> dict:
    """The tutorial preset's training windows and the validation windows (no overlap) of the bundled chorales,
    as lstmidi's loader cuts them: x (windows, 25, 3), y (windows, 25, 3) the next notes, mask (windows, 25)."""
    import torch

    from .batches import make_loader
    from .config import load_preset
    from .corpus import bundled_corpus, load_corpus
    from .encodings import build_encoding

    preset = load_preset("tutorial")
    corpus = load_corpus([bundled_corpus("bach")], build_encoding(preset.encoding), preset.data, cache_dir=work)
    cfg = preset.train
    out = {"preset": preset, "encoding": corpus.encoding}
    for split, hop in (("train", cfg.hop), ("valid", None)):
        ds = make_loader(corpus.concatenated(split), cfg.window, hop, cfg.batch_size, False, cfg.seed).dataset
        x, y, mask = (torch.stack(c).numpy() for c in zip(*(ds[i] for i in range(len(ds)))))
        out[split] = (x, y, mask)
    return out


def held_out(pitch_logits: np.ndarray, step: np.ndarray, duration: np.ndarray, target: np.ndarray) -> dict:
    """Pitch NLL (nats) and the tutorial's weighted loss of predictions of the note after each window."""
    z = pitch_logits - pitch_logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = float(-logp[np.arange(len(target)), target[:, 0].round().astype(int)].mean())

    def pressure(pred, true):
        return float(((pred - true) ** 2 + 10 * np.maximum(-pred, 0)).mean())

    loss = 0.05 * nll + pressure(step, target[:, 1]) + pressure(duration, target[:, 2])
    return {"pitch_nll": nll, "tutorial_loss": loss}


def last_real(y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last real step of each window and the note there (the note the tutorial predicts)."""
    last = mask.sum(1).astype(int) - 1
    return last, y[np.arange(len(y)), last]


def run_lstmidi(batches: int, work: Path) -> dict:
    import lightning as L
    import torch

    from .models import build_model
    from .samplers import sample_notes
    from .training import LitModel, _quiet_lightning, make_trainer

    data = windows(work)
    preset, enc = data["preset"], data["encoding"]
    x, y, mask = data["train"]
    preset.train.max_steps, preset.train.epochs = batches, 1000
    torch.manual_seed(0)
    model = build_model(preset.model, enc.sizes)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    times = []

    class Clock(L.Callback):
        def on_train_batch_start(self, *args):
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args):
            times.append(time.perf_counter() - self.start)

    _quiet_lightning()
    make_trainer(preset.train, work / "lstmidi-run", [Clock()], progress=False).fit(
        LitModel(model, preset, enc.kind), loader
    )
    model.eval()
    vx, vy, vmask = data["valid"]
    with torch.no_grad():
        out, _ = model(torch.from_numpy(vx).float())
    last, target = last_real(vy, vmask)
    rows = np.arange(len(vx))
    scores = held_out(
        out["pitch"].numpy()[rows, last], out["step"].numpy()[rows, last], out["duration"].numpy()[rows, last], target
    )
    primer = torch.from_numpy(vx[:1]).float()
    started = time.perf_counter()
    sample_notes(model, primer, GENERATED, temperatures={"pitch": 2.0}, generator=torch.Generator().manual_seed(0))
    per_note = (time.perf_counter() - started) / GENERATED
    return {"batch_ms": 1000 * statistics.median(times[10:] or times), **scores, "note_ms": 1000 * per_note}


def run_keras(batches: int, work: Path) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    data = windows(work)
    x, y, mask = data["train"]
    keep = mask.all(1)  # the tutorial's windows are all full; so are these but a piece's last
    x, y = x[keep], y[keep]
    inputs_x = x.astype(np.float32) * np.array([1 / 128, 1, 1], np.float32)  # the tutorial's pitch / vocab_size
    labels = y[:, -1]
    tf.keras.utils.set_random_seed(0)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)  # as many as PyTorch gets
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    def mse_with_positive_pressure(y_true, y_pred):
        mse = (y_true - y_pred) ** 2
        return tf.reduce_mean(mse + 10 * tf.maximum(-y_pred, 0.0))

    inputs = keras.Input((WINDOW, 3))
    h = keras.layers.LSTM(128)(inputs)
    model = keras.Model(
        inputs,
        {
            "pitch": keras.layers.Dense(128, name="pitch")(h),
            "step": keras.layers.Dense(1, name="step")(h),
            "duration": keras.layers.Dense(1, name="duration")(h),
        },
    )
    model.compile(
        loss={
            "pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "step": mse_with_positive_pressure,
            "duration": mse_with_positive_pressure,
        },
        loss_weights={"pitch": 0.05, "step": 1.0, "duration": 1.0},
        optimizer=keras.optimizers.Adam(learning_rate=0.005),
    )
    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    target = {"pitch": labels[:, 0].round().astype(np.int64), "step": labels[:, 1], "duration": labels[:, 2]}
    dataset = tf.data.Dataset.from_tensor_slices((inputs_x, target)).shuffle(len(inputs_x), seed=0).repeat()
    model.fit(dataset.batch(BATCH).take(batches), epochs=1, callbacks=[Clock()], verbose=0, shuffle=False)
    vx, vy, vmask = data["valid"]
    full = vmask.all(1)
    vx, vy, vmask = vx[full], vy[full], vmask[full]
    out = model.predict(vx.astype(np.float32) * np.array([1 / 128, 1, 1], np.float32), verbose=0, batch_size=256)
    _, vtarget = last_real(vy, vmask)
    scores = held_out(out["pitch"], out["step"][:, 0], out["duration"][:, 0], vtarget)
    notes = list(vx[0].astype(np.float32))
    started = time.perf_counter()
    for _ in range(GENERATED):  # the tutorial's predict_next_note: the last 25 notes through model.predict
        window = np.array(notes[-WINDOW:])[None] * np.array([1 / 128, 1, 1], np.float32)
        p = model.predict(window, verbose=0)
        pitch = int(tf.random.categorical(p["pitch"] / 2.0, 1)[0, 0])
        notes.append(np.array([pitch, max(float(p["step"][0, 0]), 0), max(float(p["duration"][0, 0]), 0)], np.float32))
    per_note = (time.perf_counter() - started) / GENERATED
    return {"batch_ms": 1000 * statistics.median(times[10:] or times), **scores, "note_ms": 1000 * per_note}


def side(name: str, batches: int, work: Path) -> dict:
    """One side in a process of its own -> its figures and peak resident memory (MB)."""
    cmd = [sys.executable, "-m", "lstmidi.peer", name, str(batches), str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode:
        raise RuntimeError(f"the {name} side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(quick: bool, work: Path, row, target) -> tuple[list[dict], list[dict]]:
    """Rows and targets for `lstmidi benchmark speed --peer keras` (see the module doc), made by `row(suite, name,
    value, unit, note)` and `target(name, measured, goal, unit, below=)` (lstmidi.speed's): medians of 3
    alternating runs."""
    batches, rounds = (20, 1) if quick else (300, 3)
    runs: dict[str, list[dict]] = {"lstmidi": [], "keras": []}
    for _ in range(rounds):
        for name in runs:
            runs[name].append(side(name, batches, work))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    ours, peer = med["lstmidi"], med["keras"]
    note = f"Keras tutorial model; median of {rounds} alternating runs, each in its own process"
    rows = [
        row(
            "peer",
            "ms per training batch (64 x 25 notes): lstmidi tutorial",
            ours["batch_ms"],
            "ms",
            f"{ours['batch_ms'] / peer['batch_ms']:.2f}x Keras; lstmidi scores all 25 positions",
        ),
        row("peer", "ms per training batch (64 x 25 notes): Keras", peer["batch_ms"], "ms", note),
        row(
            "peer",
            "training windows per second: lstmidi / Keras",
            64000 / ours["batch_ms"],
            "windows/s",
            f"Keras {64000 / peer['batch_ms']:,.0f}",
        ),
        row(
            "peer",
            f"held-out pitch NLL after {batches * BATCH:,} windows: lstmidi",
            ours["pitch_nll"],
            "nats",
            f"Keras {peer['pitch_nll']:.2f}; the note after each validation window",
        ),
        row(
            "peer",
            f"held-out tutorial loss after {batches * BATCH:,} windows: lstmidi",
            ours["tutorial_loss"],
            "",
            f"Keras {peer['tutorial_loss']:.2f}",
        ),
        row(
            "peer",
            "ms per generated note: lstmidi (stateful)",
            ours["note_ms"],
            "ms",
            f"Keras predict_next_note {peer['note_ms']:.1f} ms ({peer['note_ms'] / ours['note_ms']:.0f}x)",
        ),
        row("peer", "peak memory: lstmidi", ours["peak_mb"], "MB", f"Keras {peer['peak_mb']:,.0f} MB"),
    ]
    ratio = ours["batch_ms"] / peer["batch_ms"]
    return rows, [target("ms per training batch, tutorial preset against the Keras tutorial", ratio, 1.0, below=True)]


if __name__ == "__main__":  # one side: python -m lstmidi.peer lstmidi|keras BATCHES WORK
    name, batches, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    result = (run_lstmidi if name == "lstmidi" else run_keras)(batches, work)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
