"""Training: windows over encoded pieces, a thin LightningModule, and `train()` which runs a whole job
(corpus -> Trainer -> model file) in a run folder:

    RUN/config.json        the resolved preset and the command        RUN/report.json   per-file corpus report
    RUN/checkpoints/       last.ckpt (for --resume) and best.ckpt     RUN/logs/metrics.csv (logs/resumeN/ after --resume)
    RUN/loss.png           loss curves with the baseline              RUN/model.lstmidi the model file
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import Preset, validate_preset
from .corpus import Corpus, atomic_write_text, file_progress, load_corpus, write_report
from .encodings import build_encoding
from .errors import LstmidiError
from .evaluation import markov_baseline_nll, multihot_nll_on
from .losses import multihot_nll, progressive_weights
from .models import build_model
from .modelfile import save_model


class WindowDataset(Dataset):
    """Overlapping windows over pieces: x = piece[s:s+W], y = piece[s+1:s+W+1], mask of real frames.

    Starts are every `hop` steps plus one aligned to the piece's end; with `hop=None` the windows tile
    each piece exactly once (every predicted frame counted once, for validation).
    """

    def __init__(self, pieces: list[np.ndarray], window: int, hop: int | None) -> None:
        self.window = window
        self.data = np.concatenate(pieces) if pieces else np.zeros((0, 1), np.uint8)
        self.index: list[tuple[int, int]] = []  # (absolute start, frames in the piece after it)
        offset = 0
        for piece in pieces:
            n = len(piece)
            if hop is None:
                starts = list(range(0, n - 1, window))
            else:
                starts = list(range(0, max(n - 1 - window, 0) + 1, hop))
                if n - 1 - window > starts[-1]:
                    starts.append(n - 1 - window)
            self.index.extend((offset + s, n - s) for s in starts)
            offset += n

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        start, remaining = self.index[i]
        w = self.window
        real = min(w, remaining - 1)  # predicted frames in this window
        x = np.zeros((w, self.data.shape[1]), np.uint8)
        y = np.zeros_like(x)
        x[:real] = self.data[start : start + real]
        y[:real] = self.data[start + 1 : start + 1 + real]
        mask = np.zeros(w, np.uint8)
        mask[:real] = 1
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


class LitModel(L.LightningModule):
    """Wraps any multihot model: weighted BCE in training, plain nats/frame in validation."""

    def __init__(self, model: torch.nn.Module, preset: Preset) -> None:
        super().__init__()
        self.model = model
        self.cfg = preset.train
        self.register_buffer("step_weights", progressive_weights(self.cfg.window, self.cfg.progressive_ramp), persistent=False)
        self.history: list[dict] = []
        self._val = [0.0, 0.0]
        self._train = [0.0, 0.0]

    def training_step(self, batch, _):
        x, y, mask = batch
        logits, _ = self.model(x.float())  # (batch, window, keys)
        loss, weight = multihot_nll(logits, y.float(), mask.float(), self.step_weights)
        self._train[0] += float(loss.detach()) * float(weight)
        self._train[1] += float(weight)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, _):
        x, y, mask = batch
        logits, _ = self.model(x.float())
        loss, weight = multihot_nll(logits, y.float(), mask.float())
        self._val[0] += float(loss) * float(weight)
        self._val[1] += float(weight)

    def on_validation_epoch_end(self):
        if self._val[1]:
            self.log("val_loss", self._val[0] / self._val[1], prog_bar=True)
        self._val = [0.0, 0.0]

    def on_train_epoch_end(self):
        metrics = self.trainer.callback_metrics
        row = {"epoch": self.current_epoch + 1, "step": self.global_step,
               "train_loss": self._train[0] / max(self._train[1], 1e-8)}
        if "val_loss" in metrics:
            row["val_loss"] = float(metrics["val_loss"])
        self.history.append(row)
        self.log("train_loss", row["train_loss"])
        self._train = [0.0, 0.0]

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)

    def on_save_checkpoint(self, checkpoint):  # keep the epoch history so --resume can plot all of it
        checkpoint["lstmidi_history"] = self.history

    def on_load_checkpoint(self, checkpoint):
        self.history = checkpoint.get("lstmidi_history", [])


class LossPlot(L.Callback):
    """Keeps RUN/loss.png (train and validation nats/frame per epoch, with the baseline) up to date:
    redrawn at most every `every` seconds during training (plotting costs ~0.3 s) and at the end."""

    def __init__(self, path: Path, baseline: float | None, every: float = 15.0) -> None:
        self.path, self.baseline, self.every, self.last = path, baseline, every, 0.0

    def on_train_epoch_end(self, trainer, module):
        if trainer.is_global_zero and time.time() - self.last >= self.every:
            self.on_train_end(trainer, module)

    def on_train_end(self, trainer, module):
        if trainer.is_global_zero and module.history:
            plot_losses(module.history, self.path, self.baseline)
            self.last = time.time()


def plot_losses(history: list[dict], path: Path, baseline: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train (weighted)")
    val = [(h["epoch"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), "s-", label="validation")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=f"per-key Markov baseline ({baseline:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per frame")
    ax.set_title("lstmidi training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


@dataclass
class TrainResult:
    model_path: Path
    run_dir: Path
    valid_nll: float | None
    baseline_nll: float | None
    epochs: int
    seconds: float
    corpus: Corpus


def prepare_run_dir(out: Path, resume: bool, force: bool) -> None:
    """Refuse to clobber an earlier run unless asked; check the folder is writable before training."""
    if resume:
        if not (out / "checkpoints" / "last.ckpt").is_file():
            raise LstmidiError(f"{out}: nothing to resume (no checkpoints/last.ckpt)")
        return
    if out.exists() and any(out.iterdir()):
        if not force:
            raise LstmidiError(f"{out}: run folder exists and is not empty; use --resume to continue it or --force to start over")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise LstmidiError(f"{out}: cannot write the run folder ({err.strerror})") from None


def make_loader(pieces, window, hop, batch_size, shuffle, seed):
    ds = WindowDataset(pieces, window, hop)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=False)


def primer_bank(pieces: list[np.ndarray], n: int, steps: int, seed: int) -> np.ndarray:
    """`n` random excerpts of `steps` frames from `pieces` (pieces shorter than that are padded)."""
    rng = np.random.default_rng(seed)
    width = pieces[0].shape[1]
    bank = np.zeros((n, steps, width), np.uint8)
    for i in range(n):
        piece = pieces[rng.integers(len(pieces))]
        start = rng.integers(max(len(piece) - steps, 0) + 1)
        chunk = piece[start : start + steps]
        bank[i, : len(chunk)] = chunk
    return bank


def train(
    preset: Preset,
    data: list[str | Path] | None,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    command: str | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train `preset` on the MIDI files under `data` (default: bundled Bach chorales) in run folder `out`.

    Writes `out/model.lstmidi` at the end, also when stopped by `train.max_minutes`. With `resume`,
    the preset and data saved in `out/config.json` are used and training continues from last.ckpt.
    """
    out = Path(out)
    command = command or " ".join(["lstmidi", *sys.argv[1:]])
    prepare_run_dir(out, resume, force)
    if resume:
        saved = json.loads((out / "config.json").read_text())
        epochs, minutes = preset.train.epochs, preset.train.max_minutes
        preset = validate_preset(saved["preset"], where=str(out / "config.json"))
        preset.train.epochs, preset.train.max_minutes = epochs, minutes
        data = saved["data"]
    else:
        atomic_write_text(out / "config.json", json.dumps(
            {"preset": preset.model_dump(), "data": [str(Path(d).resolve()) for d in data or []], "command": command}, indent=1))

    _quiet_lightning()
    started = time.time()
    L.seed_everything(preset.train.seed, workers=True, verbose=False)
    encoding = build_encoding(preset.encoding)
    if encoding.kind != "multihot":
        raise LstmidiError(f"training for {encoding.kind!r} encodings is not available yet")
    corpus = load_corpus(data, encoding, preset.data, cache_dir=cache_dir, progress=file_progress() if progress else None)
    write_report(corpus, out / "report.json")
    s = corpus.summary
    print(f"corpus: {s['loaded']} files loaded, {s['skipped']} skipped"
          f" (train {s['pieces']['train']} / valid {s['pieces']['valid']} / test {s['pieces']['test']} pieces)"
          + (" [cached]" if corpus.cached else ""), file=sys.stderr)
    for name, reason in s["skipped_files"].items():
        print(f"  skipped {name}: {reason}", file=sys.stderr)

    cfg = preset.train
    valid = corpus.pieces["valid"] or corpus.pieces["test"] or corpus.pieces["train"]
    train_loader = make_loader(corpus.pieces["train"], cfg.window, cfg.hop, cfg.batch_size, True, cfg.seed)
    valid_loader = make_loader(valid, cfg.window, None, cfg.batch_size, False, cfg.seed)
    baseline = markov_baseline_nll(corpus.pieces["train"], valid)

    model = build_model(preset.model, encoding.sizes)
    module = LitModel(model, preset)
    ckpt_dir = out / "checkpoints"
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min", save_top_k=1, save_last=True,
        enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        gradient_clip_val=cfg.grad_clip or None,
        callbacks=[checkpoint, LossPlot(out / "loss.png", baseline)],
        # a resumed run logs into logs/resumeN/: Lightning's CSV logger would delete the earlier metrics.csv
        logger=L.pytorch.loggers.CSVLogger(out, name="logs", version=f"resume{len(list(out.glob('logs/resume*'))) + 1}" if resume else ""),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        accelerator="cpu" if not torch.cuda.is_available() else "auto",
        devices=1,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(module, train_loader, valid_loader, ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None)

    if checkpoint.best_model_path and Path(checkpoint.best_model_path).is_file():
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    valid_nll = multihot_nll_on(model, valid_loader)
    seconds = time.time() - started
    epochs_done = module.history[-1]["epoch"] if module.history else 0
    metrics = {"valid_nll": valid_nll, "baseline_valid_nll": baseline, "epochs": epochs_done,
               "train_seconds": round(seconds, 1), "unit": "nats per frame",
               "final_train_loss": module.history[-1]["train_loss"] if module.history else None}
    model_path = out / "model.lstmidi"
    save_model(
        model_path,
        encoding=encoding,
        model=model,
        preset=preset,
        metrics=metrics,
        primers=primer_bank(valid, cfg.primers, cfg.primer_steps, cfg.seed) if cfg.primers else None,
        command=command,
        corpus_summary={**{k: s[k] for k in ("files", "loaded", "skipped", "pieces", "steps")}, "manifest": corpus.manifest_hash},
        history=module.history,
        force=True,
    )
    return TrainResult(model_path, out, valid_nll, baseline, epochs_done, seconds, corpus)


def _quiet_lightning() -> None:
    """Keep the console to our own progress bar and summary: no Lightning tips or hardware banners."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*Checkpoint directory .* exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)
