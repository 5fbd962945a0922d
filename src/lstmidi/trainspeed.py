"""The measures of the train suite of `lstmidi benchmark speed` (lstmidi.speed): the machine's matrix-multiply
rate, tokens per second and GFLOP/s of real training steps, and lstmidi's training step against plain PyTorch
with the same model and loss (also run by benchmarks/compare_trees.py)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch


def matmul_gflops(seconds: float = 2.0, n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matrix-multiply rate (GFLOP/s) in `dtype` with the threads torch uses."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e9


def flops_per_step_forward(model: torch.nn.Module) -> int:
    """Multiply-adds x 2 of one time step's forward pass: every LSTM layer and Linear layer."""
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.LSTM):
            for layer in range(m.num_layers):
                width = m.input_size if layer == 0 else m.hidden_size
                total += 2 * 4 * m.hidden_size * (width + m.hidden_size)
        elif isinstance(m, torch.nn.Linear):
            total += 2 * m.in_features * m.out_features
    return total


def train_rate(preset_name: str, sets: list[str], steps: int) -> dict:
    """Tokens (frames) per second and GFLOP/s of real training steps of a preset on random data of its
    shape (forward, loss, backward counted as 3 forward passes, gradient clipping, the optimizer of training),
    in the preset's precision (`train.precision`: bfloat16 autocast, as Lightning's bf16-mixed, or float32)."""
    from .batches import batch_objective
    from .config import load_preset
    from .encodings import build_encoding
    from .kinds import kind_of
    from .losses import progressive_weights
    from .models import build_model
    from .trainer import precision
    from .training import LitModel

    preset = load_preset(preset_name, sets)
    enc = build_encoding(preset.encoding)
    model = build_model(preset.model, enc.sizes).train()
    cfg = preset.train
    batch, window = cfg.batch_size, cfg.window
    g = torch.Generator().manual_seed(0)
    kind = kind_of(enc)
    x = kind.random_batch(enc, batch, window + 1, g)
    data = (x[:, :-1], x[:, 1:], torch.ones(batch, window, dtype=torch.uint8))
    weights = progressive_weights(window, cfg.progressive_ramp)  # as training weighs the steps of a window
    configured = LitModel(model, preset, enc.kind).configure_optimizers()  # the optimizer training uses
    opt = configured["optimizer"] if isinstance(configured, dict) else configured

    arithmetic = precision(cfg.precision)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arithmetic == "bf16-mixed"):
            loss, _, _ = batch_objective(model, data, enc.kind, cfg.loss, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
        opt.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    flops = 3 * flops_per_step_forward(model) * batch * window
    spec = preset.model
    return {
        "tokens_per_s": batch * window / seconds,
        "gflops": flops / seconds / 1e9,
        "seconds_per_step": seconds,
        "shape": f"{spec.get('layers')} x {spec.get('hidden')}, batch {batch} x {window}",
        "unit": kind.step_unit,
        "precision": arithmetic,
    }


FLAGSHIP_2X512 = ["model.layers=2", "model.hidden=512", "train.batch_size=64", "train.window=128"]


def _plain_tutorial(model, x, y, mask, loss_cfg):
    """The tutorial preset's loss written out in plain PyTorch: 0.05 x cross-entropy of the pitch + MSE with
    positive pressure on step and duration (the preset's weights and pressure), a mean over the real notes."""
    out, _ = model(x.float())
    m = mask.float()  # (batch, time)
    n = m.sum().clamp(min=1e-8)
    pitch = torch.nn.functional.cross_entropy(out["pitch"].transpose(1, 2), y[..., 0].round().long(), reduction="none")
    loss = loss_cfg.weights.get("pitch", 1.0) * (pitch * m).sum() / n
    for col, field in ((1, "step"), (2, "duration")):
        err = (out[field] - y[..., col].float()) ** 2 + loss_cfg.positive_pressure * torch.relu(-out[field])
        loss = loss + loss_cfg.weights.get(field, 1.0) * (err * m).sum() / n
    return loss


def _plain_tokens(model, x, y, mask, loss_cfg):
    """Cross-entropy over every real token, in plain PyTorch."""
    out, _ = model(x.long())
    m = mask.float()
    ce = torch.nn.functional.cross_entropy(out.transpose(1, 2), y.long(), reduction="none")  # (batch, time)
    return (ce * m).sum() / m.sum().clamp(min=1e-8)


PLAIN_LOSSES = {"tutorial": _plain_tutorial, "flagship": _plain_tokens}  # preset -> the same loss by hand
OVERHEAD_SIZES = (  # (name, preset, overrides, timed steps, steps before timing, target ratio or None)
    ("tutorial (1 x 128, batch 64 x 25), float32", "tutorial", ["train.precision=float32"], 200, 5, 1.1),
    ("tutorial in its preset's precision (auto), plain PyTorch in float32", "tutorial", [], 200, 5, None),
    ("flagship 2 x 512 (batch 64 x 128), float32", "flagship", [*FLAGSHIP_2X512, "train.precision=float32"], 4, 1, 1.1),
)


def train_overhead(
    preset_name: str, sets: list[str], steps: int, warm: int, rounds: int, work: Path, data: list[Path] | None = None
) -> dict:
    """ms per training batch of lstmidi's training (the LightningModule with the Trainer, callbacks, CSV log
    and progress bar of `lstmidi train`, the loader of `lstmidi.batches`) against a plain PyTorch loop over
    the same windows (cut beforehand, a random permutation per epoch) with the same model, initial weights
    and loss (written out by hand: PLAIN_LOSSES), gradient clipping and Adam. Augmentation is off in both.

    The two take turns inside one run, a few steps each (`max(1, steps // 40)`: 5 for 200 steps): a callback
    runs the plain loop's steps between lstmidi's, and their time is taken out of lstmidi's. So a machine whose
    speed drifts (other processes, a shared host) slows both alike; with whole runs in turn, a drift within a
    second moved the ratio by 5-10%. `warm` steps of each first, then `steps` timed of each; `rounds` such
    runs. -> medians over the rounds of wall and CPU ms per batch, and of the rounds' ratios (lstmidi / plain).
    """
    import contextlib
    import io
    import warnings

    import lightning as L

    from .batches import make_loader
    from .config import load_preset
    from .corpus import bundled_corpus, load_corpus
    from .encodings import build_encoding
    from .models import build_model
    from .trainer import precision
    from .training import LitModel, ResumeState, _quiet_lightning, make_trainer

    block = max(1, steps // 40)
    steps = -(-steps // block) * block  # whole turns
    sets = [*sets, "train.augment.transpose=0", "train.augment.stretch=0", "train.epochs=1000"]
    # one step more than timed: the last plain turn runs when that step starts
    preset = load_preset(preset_name, [*sets, f"train.max_steps={warm + steps + 1}"])
    cfg = preset.train
    corpus = load_corpus(
        data or [bundled_corpus("bach")],
        build_encoding(preset.encoding),
        preset.data,
        cache_dir=work / "overhead-cache",
    )
    enc = corpus.encoding
    loader = make_loader(corpus.concatenated("train"), cfg.window, cfg.hop, cfg.batch_size, True, cfg.seed)
    ds = loader.dataset
    windows = ds.__getitems__(range(len(ds)))  # the plain loop's (x, y, mask): every window, cut beforehand
    plain_loss = PLAIN_LOSSES[preset_name]

    def fresh_model():
        torch.manual_seed(cfg.seed)
        return build_model(preset.model, enc.sizes).train()

    class Plain:
        """The plain PyTorch loop, run `n` steps at a time."""

        def __init__(self):
            self.model = fresh_model()
            self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
            self.g = torch.Generator().manual_seed(cfg.seed)
            self.order, self.next = torch.randperm(len(windows[0]), generator=self.g), 0

        def run(self, n: int) -> None:
            for _ in range(n):
                if self.next >= len(self.order):  # a new epoch
                    self.order, self.next = torch.randperm(len(windows[0]), generator=self.g), 0
                x, y, mask = (t[self.order[self.next : self.next + cfg.batch_size]] for t in windows)
                self.next += cfg.batch_size
                loss = plain_loss(self.model, x, y, mask, cfg.loss)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
                self.opt.step()

    def clocks() -> np.ndarray:
        return np.array([time.perf_counter(), time.process_time()])

    class Turns(L.Callback):
        """Starts the clocks after `warm` steps of each, then runs `block` plain steps after every `block` of
        lstmidi's, and stops when lstmidi has run `steps` timed ones."""

        def __init__(self):
            self.plain, self.ours, self.theirs = Plain(), np.zeros(2), np.zeros(2)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            done = trainer.global_step - warm  # lstmidi's timed steps so far
            if done == 0:
                self.plain.run(warm)
                self.start = clocks()
            elif done > 0 and done % block == 0:
                before = clocks()
                self.plain.run(block)
                took = clocks() - before
                self.theirs += took
                if done == steps:
                    self.ours = before - self.start - (self.theirs - took)

    def one_round(k: int) -> tuple[np.ndarray, np.ndarray]:
        turns = Turns()
        loader.sampler.set_epoch(0)
        deterministic = torch.are_deterministic_algorithms_enabled()
        _quiet_lightning()
        quiet = contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO())  # the bar
        with warnings.catch_warnings(), quiet[0], quiet[1]:
            warnings.simplefilter("ignore")  # no validation loader here
            out = work / f"overhead-{preset_name}-{k}"
            callbacks = [ResumeState(loader, out / "last.ckpt"), turns]
            make_trainer(cfg, out, callbacks, progress=True).fit(LitModel(fresh_model(), preset, enc.kind), loader)
        torch.use_deterministic_algorithms(deterministic)  # the Trainer's `deterministic` outlives fit
        return turns.ours / steps, turns.theirs / steps

    rounds_ = [one_round(k) for k in range(rounds)]
    med = statistics.median
    return {
        "ms": med(o[0] for o, _ in rounds_) * 1000,
        "plain_ms": med(p[0] for _, p in rounds_) * 1000,
        "ratio": med(o[0] / p[0] for o, p in rounds_),
        "cpu_ratio": med(o[1] / p[1] for o, p in rounds_),
        "rounds": rounds,
        "turn": block,
        "precision": precision(cfg.precision),
    }
