"""The Lightning Trainer of a training run (`make_trainer`) and what it is built with: atomic checkpoint writes
and a progress bar that redraws at most a few times a second. `lstmidi.training.train` runs it; the speed
benchmark (lstmidi.trainspeed) times it against plain PyTorch."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import lightning as L
import torch
import torch.utils.deterministic

from .files import atomic_write
from .models.steplstm import native_bfloat16

LOG_EVERY = 10  # steps between the training loss's logged values (the progress bar and logs/metrics.csv)


class AtomicCheckpointIO(L.pytorch.plugins.TorchCheckpointIO):
    """Checkpoints written to a temp file in the same folder, flushed to disk, then renamed over the old
    one: a run killed while saving keeps its previous last.ckpt intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda f: torch.save(checkpoint, f), durable=True)


class ProgressBar(L.pytorch.callbacks.RichProgressBar):
    """Lightning's progress bar (Rich), updated at most every `interval` seconds while training (and at the
    last batch of an epoch): per batch it reads the logged metrics back from the device and redraws, about
    0.3 ms a step, which is a tenth of the step of a small model."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__()
        self.interval, self._next = interval, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        if now < self._next and batch_idx + 1 < trainer.num_training_batches:
            return
        self._next = now + self.interval
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module):
        """Lightning's metrics, and the training loss last logged (`shown_loss` of lstmidi.training.LitModel)."""
        metrics = super().get_metrics(trainer, pl_module)
        if pl_module.shown_loss is not None:
            metrics["loss"] = pl_module.shown_loss
        return metrics


class NoProfiler(L.pytorch.profilers.PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without the generator-based context manager it
    builds around each of the 60-odd hook calls of a training step: 0.025 ms a step (an empty step on a
    2-core machine, 0.244 -> 0.219 ms)."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._nothing


def precision(setting: str) -> str:
    """Lightning's precision for the preset's `train.precision`: "32-true" or "bf16-mixed"; "auto" is bfloat16
    where the processor multiplies it natively (the CPU's oneDNN, or a CUDA device that supports it)."""
    if setting == "auto":
        native = torch.cuda.is_bf16_supported() if torch.cuda.is_available() else native_bfloat16()
        setting = "bfloat16" if native else "float32"
    return {"float32": "32-true", "bfloat16": "bf16-mixed"}[setting]


def make_trainer(
    cfg,
    out: Path,
    callbacks: list[L.Callback],
    *,
    progress: bool = True,
    resume: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> L.Trainer:
    """The Lightning Trainer of a training run (`cfg`: the preset's TrainConfig) logging into `out`/logs: what
    `train` runs, and what `lstmidi benchmark speed` times against a plain PyTorch loop."""
    trainer = L.Trainer(
        default_root_dir=out,  # where Lightning's own checkpoint goes when `callbacks` has no ModelCheckpoint
        max_epochs=cfg.epochs,
        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
        max_steps=cfg.max_steps or -1,
        precision=precision(cfg.precision),
        callbacks=[*callbacks, ProgressBar()] if progress else callbacks,
        # a resumed run logs into logs/resumeN/: Lightning's CSV logger would delete the earlier metrics.csv
        logger=L.pytorch.loggers.CSVLogger(
            out, name="logs", version=f"resume{len(list(out.glob('logs/resume*'))) + 1}" if resume else ""
        ),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=LOG_EVERY,
        accelerator="cpu" if not torch.cuda.is_available() else "auto",
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        use_distributed_sampler=False,  # EpochSampler shards itself (ResumeState.setup), keeps its resumable order
        num_sanity_val_steps=0,
        deterministic=True,
        plugins=[AtomicCheckpointIO()],
        profiler=NoProfiler(),
    )
    # `deterministic` also has torch fill every new uninitialised tensor with NaN, a debugging aid that cost
    # 5% of a tutorial-sized training step; no result depends on it (nothing reads memory before writing it)
    torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer
