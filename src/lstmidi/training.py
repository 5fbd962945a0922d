"""Training: a thin LightningModule over `batches`, its callbacks, and `train()` which runs a whole job
(corpus -> Trainer -> model file) in a run folder:

    RUN/config.json        the resolved preset and the command     RUN/report.json       per-file corpus report
    RUN/checkpoints/       last.ckpt (for --resume) and best.ckpt  RUN/logs/metrics.csv  (logs/resumeN/ after --resume)
    RUN/loss.png           loss curves with the baseline           RUN/model.lstmidi     the model file
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from . import evaluation, losses, threads
from .batches import ResumableLoader, batch_objective, evaluate_loader, make_augmenter, make_loader, primer_bank
from .config import Preset, validate_preset
from .corpus import Corpus, atomic_write_text, count_line, file_progress, load_corpus, write_report
from .encodings import build_encoding
from .encodings.base import TokenStream
from .errors import LstmidiError
from .kinds import kind_of
from .modelfile import LoadedModel, load_model, save_model
from .models import build_model
from .monitoring import LossPlot, SampleWriter, plot_distributions
from .trainer import LOG_EVERY, AtomicCheckpointIO, ProgressBar, make_trainer, precision  # noqa: F401 (public here)


class LitModel(L.LightningModule):
    """Wraps any model: the weighted objective in training, the unweighted one in validation.

    training_step steps the optimizer itself (Lightning's manual optimization): Lightning's closure loop
    costs 0.11 ms more a step (an empty step on a 2-core machine: 0.35 against 0.24 ms), a fiftieth of a
    tutorial-sized step. So the gradient clipping (`train.grad_clip`) and the learning-rate decay after a
    flat validation loss (`train.lr_decay`) are done here too."""

    def __init__(self, model: torch.nn.Module, preset: Preset, kind: str) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.kind = kind
        self.cfg = preset.train
        # the weights' moving average (Polyak averaging): a frozen copy that validation scores and the model file keeps
        self.averaged = copy.deepcopy(model).requires_grad_(False) if self.cfg.average else None
        ramp = self.cfg.progressive_ramp  # without a ramp every step weighs 1: no weights to multiply by
        weights = losses.progressive_weights(self.cfg.window, ramp) if ramp > 0 else None
        self.register_buffer("step_weights", weights, persistent=False)
        self.history: list[dict] = []
        # Running sums kept on the device as float64 tensors, read once per epoch (and for the logs and progress
        # bar once every `log_every_n_steps` steps): a float() or .item() per step would wait for the device each step.
        self._val: dict[str, torch.Tensor] = {}  # name -> (sum of value x weight, sum of weight)
        self._train = torch.zeros(2, dtype=torch.float64)  # the epoch's (sum of loss x weight, sum of weight)
        self._shown = torch.zeros(2, dtype=torch.float64)  # the same since the loss was last logged
        self.shown_loss: float | None = None  # the loss last logged, for the progress bar
        self._rng_to_restore = None  # RNG states from a checkpoint, restored when training starts

    def __setattr__(self, name, value):
        # Lightning sets `_current_fx_name` (a hook's name) before and after each of its 30-odd hook calls a
        # step; nn.Module's __setattr__ first checks whether the value is a parameter, module or buffer, which
        # a name never is: 0.04 ms a step (an empty step on a 2-core machine, 0.244 -> 0.201 ms)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def training_step(self, batch, _):
        loss, weight, _ = batch_objective(self.model, batch, self.kind, self.cfg.loss, self.step_weights)
        pair = torch.stack([loss.detach().double() * weight, weight.double()])  # (2,) on the loss's device
        if self._train.device != pair.device:
            self._train, self._shown = self._train.to(pair.device), self._shown.to(pair.device)
        self._train.add_(pair)
        self._shown.add_(pair)
        every = self.trainer.log_every_n_steps if self._trainer is not None else 0
        if every and (self.global_step + 1) % every == 0:  # the steps Lightning writes its logs at
            self._log_loss()
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.cfg.grad_clip:  # no loss scaling to undo: the precisions are float32 and bfloat16
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        optimizer.step()
        return loss

    def _log_loss(self) -> None:
        """The mean training loss since the last call, to the run's loggers (logs/metrics.csv) and the progress
        bar (`shown_loss`): one read from the device. Not through `self.log`: once a value is logged there,
        Lightning gathers its logged values again after every step, 0.05 ms a step."""
        total, weight = self._shown.tolist()
        self._shown = torch.zeros_like(self._shown)
        self.shown_loss = total / max(weight, 1e-8)
        for logger in self.loggers:
            logger.log_metrics({"loss": self.shown_loss, "epoch": self.current_epoch}, step=self.global_step)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        """The loaders' batches are CPU tensors: on the CPU there is nothing to move, so Lightning's walk
        through the batch (0.03 ms a training step) is skipped."""
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @torch.no_grad()
    def on_train_batch_end(self, *_):
        """Move the averaged weights towards the new ones. The decay starts low, (1 + n) / (10 + n) after n
        steps, so that the average does not hold on to the random initial weights."""
        if self.averaged is None:
            return
        n = self.global_step
        decay = min(self.cfg.average, (1 + n) / (10 + n))
        torch._foreach_lerp_(list(self.averaged.parameters()), list(self.model.parameters()), 1.0 - decay)
        for kept, now in zip(self.averaged.buffers(), self.model.buffers()):
            kept.copy_(now)

    @property
    def scored(self) -> torch.nn.Module:
        """The weights validation scores and the model file keeps: the averaged ones when averaging is on."""
        return self.model if self.averaged is None else self.averaged

    def validation_step(self, batch, _):
        with torch.autocast(self.device.type, enabled=False):  # validation in float32 whatever the training's precision
            loss, weight, extras = batch_objective(self.scored, batch, self.kind, self.cfg.loss)
        for name, value in {"val_loss": loss, **{f"val_{k}": v for k, v in extras.items()}}.items():
            pair = torch.stack([torch.as_tensor(value).detach().double() * weight, weight.double()])
            if name in self._val:
                self._val[name].add_(pair)
            else:
                self._val[name] = pair

    def on_validation_epoch_end(self):
        # every process validates on all the data (its value is the same on each); sync_dist keeps the
        # logged value identical on all ranks, which ModelCheckpoint's all-ranks decision needs
        for name, (total, weight) in ((k, v.tolist()) for k, v in self._val.items()):  # one read per metric
            if weight:
                self.log(name, total / weight, prog_bar=name == "val_loss", sync_dist=self._distributed())
        self._val = {}

    def on_train_epoch_end(self):
        metrics = self.trainer.callback_metrics
        total, weight = self._train_sums()
        row = {"epoch": self.current_epoch + 1, "step": self.global_step, "train_loss": total / max(weight, 1e-8)}
        row.update({k: float(v) for k, v in metrics.items() if k.startswith("val_")})
        self.history.append(row)
        self.log("train_loss", row["train_loss"], sync_dist=self._distributed())
        plateau = self.lr_schedulers()
        if plateau is not None and "val_loss" in metrics:  # after each validation
            plateau.step(metrics["val_loss"])
        self._train = torch.zeros_like(self._train)
        self._shown = torch.zeros_like(self._shown)

    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _train_sums(self) -> list[float]:
        """The epoch's running (loss x weight, weight) over all processes (a collective when distributed)."""
        if not self._distributed():
            return self._train.tolist()
        return self.trainer.strategy.reduce(self._train.clone(), reduce_op="sum").tolist()

    def configure_optimizers(self):
        # fused: one kernel for every parameter instead of a Python loop over them (the same arithmetic; Adam's
        # step of the flagship 2 x 384 on one CPU thread: 11-13 ms -> 2-3 ms). The weights stay float32 in
        # bfloat16 training too (autocast), and training_step clips the gradients itself: Lightning's mixed
        # precision would refuse to clip those of a fused optimizer.
        decay = self.cfg.weight_decay
        kind, extra = (torch.optim.AdamW, {"weight_decay": decay}) if decay else (torch.optim.Adam, {})
        optimizer = kind(self.model.parameters(), lr=self.cfg.lr, fused=True, **extra)
        if self.cfg.lr_decay == 1.0:
            return optimizer
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.cfg.lr_decay, patience=self.cfg.lr_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": plateau}  # stepped by on_train_epoch_end

    def on_save_checkpoint(self, checkpoint):  # keep the epoch history so --resume can plot all of it
        checkpoint["lstmidi_history"] = self.history
        checkpoint["lstmidi_train_sums"] = self._train_sums()  # the running epoch loss, for a mid-epoch resume
        checkpoint["lstmidi_rng"] = rng_states()  # dropout draws continue exactly after --resume

    def on_load_checkpoint(self, checkpoint):
        self.history = checkpoint.get("lstmidi_history", [])
        sums = checkpoint.get("lstmidi_train_sums", [0.0, 0.0])  # all processes' sums: kept by rank 0 only
        if self._distributed() and self.trainer.global_rank:
            sums = [0.0, 0.0]
        self._train = torch.tensor(sums, dtype=torch.float64, device=self._train.device)
        self._rng_to_restore = checkpoint.get("lstmidi_rng")

    def on_train_start(self):  # restored here, after Lightning's own setup, right before the first batch
        if self._rng_to_restore:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


def rng_states() -> dict:
    """The torch, numpy and python global RNG states as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class TrainResult:
    model_path: Path
    run_dir: Path
    metrics: dict
    epochs: int
    seconds: float
    corpus: Corpus

    @property
    def valid_nll(self) -> float:
        """Validation loss of the saved weights (nats per frame/token for likelihood models)."""
        return self.metrics["valid_loss"]

    @property
    def baseline_nll(self) -> float | None:
        return next(iter(self.metrics["baselines"].values()), None)


def prepare_run_dir(out: Path, resume: bool, force: bool) -> None:
    """Refuse to clobber an earlier run unless asked; check the folder is writable before training."""
    if resume:
        if not (out / "checkpoints" / "last.ckpt").is_file():
            raise LstmidiError(f"{out}: nothing to resume (no checkpoints/last.ckpt)")
    elif out.exists() and any(out.iterdir()):
        if not force:
            raise LstmidiError(
                f"{out}: run folder exists and is not empty; use --resume to continue it or --force to start over"
            )
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise LstmidiError(f"{out}: cannot write the run folder ({err.strerror or err})") from None


def process_rank(devices: int = 1) -> int:
    """This process's global rank in a distributed run, read from the environment the way Lightning
    will (torchrun/TorchElastic: RANK; SLURM srun: SLURM_PROCID; LSF; MPI; Lightning's own launcher,
    which re-runs the command for each local rank: NODE_RANK x `devices` + LOCAL_RANK); 0 when alone.
    Needed before the Trainer exists: only rank 0 may check and fill the run folder."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):  # Lightning's order
        if env.detect():
            return int(env().global_rank())
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node * devices + int(os.environ.get("LOCAL_RANK", 0))


def check_free_space(out: Path, model: torch.nn.Module, averaged: bool = False) -> None:
    """Fail before training when the run folder's disk cannot hold the checkpoints and the model file:
    a checkpoint holds the weights and Adam's two moments (3x the model; 4x with weight averaging, which
    keeps a second copy of the weights) and a temp copy while it is replaced, plus logs and plots; that
    many times the model size + 50 MB is asked for."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    need = (4 if averaged else 3) * size + 50 * 2**20
    free = shutil.disk_usage(out).free
    if free < need:
        raise LstmidiError(
            f"{out}: not enough free disk space for training ({free / 2**20:.0f} MB free, "
            f"about {need / 2**20:.0f} MB needed for checkpoints and the model file)"
        )


class ResumeState(L.Callback):
    """Counts the training batches done in the epoch (saved with the loader) and, every `every` optimizer
    steps, writes checkpoints/last.ckpt so a run killed mid-epoch loses at most `every` steps. In a
    distributed run it gives the loader's sampler this process's shard (rank and world size as the
    Trainer set them up); every process then has the same number of batches, so all reach each
    checkpoint (a collective) together, and `batches_done` skips the same count on every rank."""

    def __init__(self, loader: ResumableLoader, last: Path, every: int = 0) -> None:
        self.loader, self.last, self.every = loader, last, every

    def setup(self, trainer, module, stage):
        self.loader.sampler.shard(trainer.global_rank, trainer.world_size)

    def on_train_epoch_start(self, trainer, module):
        self.loader.batches_done = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.loader.batches_done = batch_idx + 1
        if self.every and trainer.global_step % self.every == 0 and batch_idx + 1 < trainer.num_training_batches:
            trainer.save_checkpoint(self.last)  # the end of the epoch is saved by ModelCheckpoint


class ShardLog(L.Callback):
    """Debugging aid, on when LSTMIDI_SHARD_LOG=PATH is set: each process writes the training windows it
    trained on in each epoch to PATH.rank{R}.json: {"rank", "world", "windows", "epochs": {epoch: [index, ...]}}."""

    def __init__(self, loader: ResumableLoader, path: str) -> None:
        self.loader, self.path, self.epochs = loader, path, {}

    def on_train_epoch_end(self, trainer, module):
        sampler = self.loader.sampler
        self.epochs[str(sampler.epoch)] = list(sampler.served)
        atomic_write_text(
            Path(f"{self.path}.rank{trainer.global_rank}.json"),
            json.dumps(
                {
                    "rank": trainer.global_rank,
                    "world": trainer.world_size,
                    "windows": len(sampler.dataset),
                    "epochs": self.epochs,
                }
            ),
        )


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
    init: str | Path | None = None,
    corpus: Corpus | None = None,
    devices: int = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    callbacks: list[L.Callback] | None = None,
) -> TrainResult | None:
    """Train `preset` on the MIDI files under `data` (default: bundled Bach chorales) in run folder `out`.

    `corpus`: already encoded pieces (e.g. the polyphonic benchmark's piano rolls) used instead of
    reading `data`; its `encoding` must be the one the pieces were made with.

    Writes `out/model.lstmidi` at the end, also when stopped by `train.max_minutes`. With `resume`,
    the preset and data saved in `out/config.json` are used and training continues from last.ckpt.
    With `init` (a model file), training starts from that model's weights and keeps its encoding
    (tokenizer, bins): fine-tuning on new music. `callbacks`: more Lightning callbacks (e.g. progress
    reports to a user interface).

    Several processes (Lightning DDP): `devices` processes per machine (GPUs, or CPU processes with
    the gloo backend when there is no GPU; default 1) on each of `num_nodes` machines (default 1);
    `strategy` is "auto" (default: one process, or "ddp" when devices x num_nodes > 1) or "ddp".
    Launched from a script or the CLI, Lightning re-runs the same command (`sys.argv`) for local
    ranks 1..devices-1; under torchrun or SLURM (srun) the processes already exist and are used. Each
    process trains on its own share of every epoch's windows (`train.batch_size` is per process) and
    validates on all the validation data. Only global rank 0 checks and writes the run folder
    (config.json, report.json, checkpoints, logs, loss.png, model.lstmidi) and returns the
    TrainResult; the other processes return None after training.
    """
    out = Path(out)
    command = command or " ".join(["lstmidi", *sys.argv[1:]])
    if strategy not in ("auto", "ddp"):
        raise LstmidiError(f"strategy {strategy!r}: use 'auto' or 'ddp'")
    if int(devices) < 1 or int(num_nodes) < 1:
        raise LstmidiError(f"devices ({devices}) and num_nodes ({num_nodes}) must be at least 1")
    devices, num_nodes = int(devices), int(num_nodes)
    world = devices * num_nodes
    lead = process_rank(devices) == 0 if world > 1 else True  # global rank 0: the only process that writes
    fresh, existed = lead and not resume, out.exists()  # a resumed run keeps everything
    if lead:  # the other ranks must not check (rank 0 has filled the folder) nor --force-delete it
        prepare_run_dir(out, resume, force)
    try:  # until training starts, a failure takes back what this call wrote, so that the retry is not blocked
        if resume:
            saved = json.loads((out / "config.json").read_text())
            epochs, minutes = preset.train.epochs, preset.train.max_minutes
            preset = validate_preset(saved["preset"], where=str(out / "config.json"))
            preset.train.epochs, preset.train.max_minutes = epochs, minutes
            data, init = saved["data"], saved.get("init")  # a fine-tuned run keeps its base model's encoding
        elif lead:
            atomic_write_text(
                out / "config.json",
                json.dumps(
                    {
                        "preset": preset.model_dump(),
                        "data": [str(Path(d).resolve()) for d in data or []],
                        "command": command,
                        "init": str(Path(init).resolve()) if init else None,
                    },
                    indent=1,
                ),
            )

        _quiet_lightning()
        started = time.time()
        L.seed_everything(preset.train.seed, workers=True, verbose=False)
        base = load_model(init) if init else None
        encoding = base.encoding if base else build_encoding(preset.encoding)
        if base and build_encoding(preset.encoding).to_dict() != build_encoding(base.preset.encoding).to_dict():
            raise LstmidiError(
                f"--init {init}: fine-tuning keeps the model's encoding ({base.encoding.name}, "
                f"{base.encoding.sizes}); the preset asks for a different one — drop --preset or --set encoding.*"
            )
        if corpus is None:
            corpus = load_corpus(
                data,
                encoding,
                preset.data,
                cache_dir=cache_dir,
                progress=file_progress() if progress and lead else None,
            )
        encoding = corpus.encoding  # fitted (bins, vocabulary) where the encoding learns from the corpus
        s = corpus.summary
        if lead:
            write_report(corpus, out / "report.json")
            print(
                f"corpus: {s['files']} files, {count_line(s)}"
                f" (train {s['pieces']['train']} / valid {s['pieces']['valid']} / test {s['pieces']['test']} pieces)"
                + (" [cached]" if corpus.cached else ""),
                file=sys.stderr,
            )
            for status in ("recovered", "skipped"):
                for name, reason in s[f"{status}_files"].items():
                    print(f"  {status} {name}: {reason}", file=sys.stderr)
            if encoding.describe():
                print(f"encoding: {encoding.describe()}", file=sys.stderr)
            print(threads.describe(), file=sys.stderr)
            chosen = precision(preset.train.precision)
            print(f"precision: {chosen}" + (" (auto)" if preset.train.precision == "auto" else ""), file=sys.stderr)

        cfg = preset.train
        learnt = kind_of(encoding).sample_defaults(encoding, corpus.pieces["train"])  # e.g. the most keys at once
        learnt = {k: v for k, v in learnt.items() if getattr(preset.sample, k) is None}
        if learnt:
            preset = preset.model_copy(update={"sample": preset.sample.model_copy(update=learnt)})
        model = build_model(preset.model, encoding.sizes)
        if base:
            try:
                model.load_state_dict(base.model.state_dict())
            except RuntimeError as err:
                raise LstmidiError(
                    f"--init {init}: its weights do not fit the model {preset.model} "
                    f"({str(err).splitlines()[-1].strip()})"
                ) from None
        if lead:
            check_free_space(out, model, averaged=cfg.average > 0)
        span = cfg.window + model.context  # a seq2seq model's encoder reads `context` steps first
        valid_split = next(name for name in ("valid", "test", "train") if corpus.pieces[name])
        valid = corpus.pieces[valid_split]
        train_loader = make_loader(
            corpus.concatenated("train"),
            span,
            cfg.hop,
            cfg.batch_size,
            True,
            cfg.seed,
            make_augmenter(encoding, cfg.augment),
        )
        valid_loader = make_loader(corpus.concatenated(valid_split), span, None, cfg.batch_size, False, cfg.seed)
        baselines = evaluation.baselines(encoding, corpus.pieces["train"], valid)
        unit = kind_of(encoding).unit

        module = LitModel(model, preset, encoding.kind)
        ckpt_dir = out / "checkpoints"
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        )
        callbacks = [
            ResumeState(train_loader, ckpt_dir / "last.ckpt", cfg.checkpoint_every_steps),
            checkpoint,
            LossPlot(out / "loss.png", baselines, unit),
            *(callbacks or []),
        ]
        if os.environ.get("LSTMIDI_SHARD_LOG"):
            callbacks.append(ShardLog(train_loader, os.environ["LSTMIDI_SHARD_LOG"]))
        if cfg.early_stop:
            # checked after each validation only: a run that --max-steps or --max-minutes ends before its first
            # validation has no val_loss yet, and must still write its model file
            callbacks.append(
                L.pytorch.callbacks.EarlyStopping(
                    "val_loss", patience=cfg.early_stop, mode="min", check_on_train_epoch_end=False
                )
            )
        if cfg.sample_every:
            callbacks.append(SampleWriter(out / "samples", encoding, preset, valid, cfg.sample_every))
        trainer = make_trainer(
            cfg,
            out,
            callbacks,
            progress=progress,
            resume=resume,
            devices=devices,
            num_nodes=num_nodes,
            strategy="ddp" if world > 1 else strategy,
        )
    except BaseException:
        if fresh:
            _take_back(out, existed)
        raise
    trainer.fit(module, train_loader, valid_loader, ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None)
    if not trainer.is_global_zero:
        return None  # rank 0 evaluates and writes the model

    if checkpoint.best_model_path and Path(checkpoint.best_model_path).is_file():
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        prefix = "model." if module.averaged is None else "averaged."
        model.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    elif module.averaged is not None:  # no validation ran (e.g. stopped before the first): the average as it is
        model.load_state_dict(module.averaged.state_dict())
    held_out, _ = evaluate_loader(model, valid_loader, encoding.kind, cfg.loss)
    seconds = time.time() - started
    epochs_done = module.history[-1]["epoch"] if module.history else 0
    metrics = {
        "valid_loss": held_out.pop("loss"),
        **{f"valid_{k}": v for k, v in held_out.items()},
        "baselines": baselines,
        "unit": unit,
        "epochs": epochs_done,
        "train_seconds": round(seconds, 1),
        "final_train_loss": module.history[-1]["train_loss"] if module.history else None,
    }
    model_path = out / "model.lstmidi"
    primers = primer_bank(valid, cfg.primers, cfg.primer_steps, cfg.seed) if cfg.primers else None
    if cfg.quality_pieces:
        if progress:
            print(
                f"quality gate: {cfg.quality_pieces} pieces of {min(preset.sample.seconds, 20.0):g} s "
                f"against the {len(valid)} {valid_split} pieces ...",
                file=sys.stderr,
            )
        metrics["quality"] = quality_check(
            LoadedModel(model.eval(), encoding, preset, {}, "", primers, model_path),
            [encoding.decode(p) for p in valid],
            num=cfg.quality_pieces,
            seconds=min(preset.sample.seconds, 20.0),
            seed=cfg.seed,
        )
    save_model(
        model_path,
        encoding=encoding,
        model=model,
        preset=preset,
        metrics=metrics,
        primers=primers,
        command=command,
        corpus_summary={
            **{k: s[k] for k in ("files", "loaded", "recovered", "skipped", "pieces", "steps")},
            "manifest": corpus.manifest_hash,
            **known_programs(encoding, corpus, base),
        },
        history=module.history,
        fine_tuned_from=lineage(base),
        force=True,
    )
    if cfg.sample_every or kind_of(encoding).distributions:
        plot_distributions(encoding, model_path, valid, out / "distributions.png")
    return TrainResult(model_path, out, metrics, epochs_done, seconds, corpus)


def gate_pieces(loaded: LoadedModel, *, num: int, seconds: float, seed: int) -> list:
    """The pieces the quality gate rates: `num` of `seconds` generated by `loaded` (no primer, the model's own
    sampling defaults), as symusic Scores."""
    from .sampling import generate

    return [p.score for p in generate(loaded, seconds=seconds, num=num, seed=seed, include_primer=False)]


def quality_check(
    loaded: LoadedModel, real: list, *, num: int = 8, seconds: float = 20.0, seed: int = 0, generated=None
) -> dict:
    """The quality gate (lstmidi.quality) of `num` pieces of `seconds` generated by `loaded` (`gate_pieces`,
    or `generated` when the caller has them) against the last `seconds` of the `real` pieces (symusic
    Scores), without its per-piece lists: what `lstmidi train` reports and the model card keeps."""
    from .quality import compact, gate, last_seconds

    if generated is None:
        generated = gate_pieces(loaded, num=num, seconds=seconds, seed=seed)
    return {
        **compact(gate(generated, [last_seconds(s, seconds) for s in real], seed)),
        "pieces": num,
        "seconds": seconds,
    }


def _take_back(out: Path, existed: bool) -> None:
    """Remove what a failed start wrote in the run folder: the folder itself when this call made it, else
    its content (it was empty, or emptied by --force). Never anything of an earlier run."""
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def lineage(base) -> list[dict]:
    """The runs behind a `--init` model (LoadedModel or None), nearest first: its own command, epochs and
    training time, then the runs it was fine-tuned from."""
    if base is None:
        return []
    m = base.config.get("metrics", {})
    run = {"command": base.config.get("command"), "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds")}
    return [run, *base.config.get("fine_tuned_from", [])]


def known_programs(encoding, corpus: Corpus, base=None) -> dict:
    """{"programs": [...]}: the instruments of the training split (and of the --init model) for a
    multi-instrument event encoding, which `generate --programs` accepts; {} for other encodings."""
    if not (isinstance(encoding, TokenStream) and encoding.programs):
        return {}
    programs = set(encoding.programs_in(corpus.pieces["train"]))
    if base is not None:
        programs |= set(base.config.get("corpus", {}).get("programs") or [])
    return {"programs": sorted(programs)}


def _quiet_lightning() -> None:
    """Keep the console to our own progress bar and summary: no Lightning tips or hardware banners."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for pattern in (
        ".*LeafSpec.*",
        ".*smaller than the logging interval.*",
        ".*does not have many workers.*",
        ".*litlogger.*",
        ".*Checkpoint directory .* exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
