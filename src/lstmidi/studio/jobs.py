"""Training from the studio: the request checked and its data staged, `lstmidi.training.train` in a child
process (one at a time, cancellable) that reports progress through a JSON file, and the page's view of it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LstmidiError
from ..files import atomic_write_text, figure, save_figure
from .state import Studio
from .uploads import run_name, stage_uploads, unique_path


@dataclass
class TrainJob:
    name: str
    run_dir: Path
    process: subprocess.Popen
    progress: Path
    log: Path
    curve: Path
    started: float = field(default_factory=time.time)
    status: str = "running"  # running / finished / failed / cancelled
    ended: float | None = None
    message: str = ""
    plotted: int = -1  # progress points in the last loss-curve picture

    def read(self) -> dict:
        try:
            return json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return {}


def start_training(
    studio: Studio,
    *,
    uploads: list[str] | None,
    folder: str | None,
    preset: str,
    init: str | None,
    epochs: int | None,
    max_minutes: float | None,
    settings: str | None,
    name: str | None,
) -> tuple[TrainJob, dict]:
    """Check the request, stage the data, and start `lstmidi.training.train` in a child process.
    Returns the job and the corpus inspection (lstmidi.inspection) of its data."""
    from ..api import train_overrides, training_preset
    from ..inspection import inspect_files

    if studio.job is not None and studio.job.status == "running":
        raise LstmidiError(f"a training run ({studio.job.name}) is in progress: one at a time; wait or cancel it")
    sets = [line.strip() for line in (settings or "").splitlines() if line.strip() and not line.strip().startswith("#")]
    overrides = train_overrides(sets, int(epochs) if epochs else None, float(max_minutes) if max_minutes else None)
    init_path = studio.model_path(init) if init and init != "none" else None
    if init_path is None and preset not in _preset_names():  # names only: never a YAML path on the server
        raise LstmidiError(f"{preset!r}: unknown preset; choose one of {', '.join(_preset_names())}")
    chosen = training_preset(
        None if init_path else preset,
        init=studio.load(init_path) if init_path else None,
        overrides=overrides,
        where=init_path.name if init_path else None,
    )
    name = run_name(name, Path(init_path).parent.name + "-finetune" if init_path else preset)
    run_dir = studio.runs / name
    if run_dir.exists():
        raise LstmidiError(f"run {name!r} exists in the runs folder; choose another name")
    data = _training_data(studio, uploads, folder, name)
    inspection = inspect_files(data, chosen.data.model_copy(update={"workers": 1}))
    usable = inspection["summary"].get("loaded", 0) + inspection["summary"].get("recovered", 0)
    if not usable:
        raise LstmidiError("none of the files can be used for training; see the corpus report")
    jobs = studio.home / "jobs"
    spec = {
        "preset": chosen.model_dump(),
        "data": [str(d) for d in data],
        "out": str(run_dir),
        "init": str(init_path) if init_path else None,
        "progress": str(jobs / f"{name}.json"),
        "command": f"lstmidi serve (studio): train {name}",
    }
    spec_path = jobs / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    log = jobs / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lstmidi.studio", "train-job", str(spec_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    studio.job = TrainJob(name, run_dir, process, Path(spec["progress"]), log, jobs / f"{name}-loss.png")
    return studio.job, inspection


def _preset_names() -> list[str]:
    from ..config import preset_names

    return preset_names()


def _training_data(studio: Studio, uploads: list[str] | None, folder: str | None, name: str) -> list[Path]:
    if uploads:
        return [stage_uploads(uploads, unique_path(studio.home / "data", name)).folder]
    if folder and folder.strip():
        if not studio.server_folders:
            raise LstmidiError(
                "training on a server folder is only offered when the studio listens on localhost; upload the files"
            )
        path = Path(folder.strip()).expanduser()
        if not path.is_dir():
            raise LstmidiError(f"{folder}: no such folder on the server")
        return [path.resolve()]
    raise LstmidiError("upload MIDI files (or a zip of them) or give a folder on the server")


def inspect_uploads(studio: Studio, uploads: list[str] | None, folder: str | None, preset: str) -> dict:
    """The corpus inspection of uploads (staged into a scratch folder) or a server folder, before training."""
    from ..config import DataConfig, load_preset
    from ..inspection import inspect_files

    try:
        data_cfg = load_preset(preset).data if preset in _preset_names() else DataConfig()
    except LstmidiError:
        data_cfg = DataConfig()
    scratch = studio.home / "data" / f".check-{uuid.uuid4().hex[:8]}"
    try:
        data = [stage_uploads(uploads, scratch).folder] if uploads else _training_data(studio, None, folder, "")
        result = inspect_files(data, data_cfg.model_copy(update={"workers": 1}))
        for entry in result["files"]:
            entry["path"] = entry["name"]  # never show server paths of scratch copies
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report_rows(inspection: dict) -> list[list]:
    """Rows of the per-file corpus report table."""
    rows = []
    for e in inspection["files"]:
        rows.append(
            [
                e["name"],
                e["status"],
                e["tracks"] if e["tracks"] is not None else "",
                ",".join(map(str, e["instruments"] or [])),
                e["notes"] if e["notes"] is not None else "",
                f"{e['duration']:.1f}" if e["duration"] is not None else "",
                e["reason"],
            ]
        )
    return rows


REPORT_HEADERS = ["file", "status", "tracks", "programs", "notes", "seconds", "reason"]


def poll_job(studio: Studio) -> tuple[str, Path | None, bool]:
    """(status text in Markdown, loss-curve picture if it changed else None, finished just now)."""
    job = studio.job
    if job is None:
        return "No training run yet.", None, False
    progress = job.read()
    finished_now = False
    if job.status == "running":
        code = job.process.poll()
        if progress.get("status") in ("finished", "failed"):  # the process may still be exiting: not waited for
            job.status, job.message = progress["status"], progress.get("error", "")
            finished_now = True
        elif code is not None:
            job.status, job.message = "failed", f"the training process stopped (exit code {code}); see {job.log}"
            finished_now = True
    if finished_now:
        job.ended = time.time()
    if finished_now and job.status == "finished":
        studio.models_version += 1
    curve = None
    points = progress.get("steps", [])
    if len(points) + len(progress.get("history", [])) != job.plotted and points:
        _plot_progress(progress, job.curve)
        job.plotted = len(points) + len(progress.get("history", []))
        curve = job.curve
    elapsed = (job.ended or time.time()) - job.started
    lines = [f"**Run `{job.name}`: {job.status}** ({elapsed:.0f} s)"]
    if progress.get("epochs"):
        lines.append(
            f"epoch {progress.get('epoch', 0)} of {progress['epochs']}, batch {progress.get('batch', 0)} "
            f"of {progress.get('batches', '?')}"
            + (f", loss {progress['loss']:.4f}" if progress.get("loss") is not None else "")
        )
    elif job.status == "running":
        lines.append("starting: loading the libraries, reading the corpus, building the model …")
    if job.status == "finished":
        lines.append(
            f"model: `{Path(progress.get('model', '')).relative_to(studio.runs) if progress.get('model') else ''}` — "
            "now in Generate's model list" + (f"; {progress['summary']}" if progress.get("summary") else "")
        )
    if job.status == "failed":
        lines.append(f"error: {job.message}")
    if job.status == "cancelled":
        lines.append(f"cancelled; the run folder keeps its checkpoints (`lstmidi train --resume --out {job.run_dir}`)")
    return "\n\n".join(lines), curve, finished_now


def cancel_job(studio: Studio) -> str:
    job = studio.job
    if job is None or job.status != "running":
        return "No training run in progress."
    try:
        os.killpg(job.process.pid, signal.SIGTERM)
        job.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(job.process.pid, signal.SIGKILL)
        job.process.wait()
    except ProcessLookupError:
        pass
    job.status, job.ended = "cancelled", time.time()
    return f"Run `{job.name}` cancelled."


def _plot_progress(progress: dict, path: Path) -> None:
    """The live loss curve of a job: per-batch and per-epoch training loss, validation loss, by step."""
    fig, ax = figure((6, 3.2), dpi=90)
    steps = progress.get("steps", [])
    if steps:
        ax.plot([s for s, _ in steps], [v for _, v in steps], lw=1, alpha=0.6, label="training loss (batch)")
    hist = progress.get("history", [])
    if hist:
        ax.plot([h["step"] for h in hist], [h["train_loss"] for h in hist], "o-", label="training loss (epoch)")
        if any("val_loss" in h for h in hist):
            ax.plot(
                [h["step"] for h in hist if "val_loss" in h],
                [h["val_loss"] for h in hist if "val_loss" in h],
                "s-",
                label="validation loss",
            )
    ax.set_xlabel("step")
    ax.set_ylabel(progress.get("unit", "loss"))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def train_job(spec_path: str | Path) -> int:
    """The child process of a training job: `lstmidi.training.train` with progress written to a JSON file
    (status, epoch, batch, loss, per-step losses, epoch history; at the end the model or the error)."""
    import lightning as L

    from .. import training
    from ..config import validate_preset

    spec = json.loads(Path(spec_path).read_text())
    progress_path = Path(spec["progress"])
    state: dict = {"status": "running", "steps": [], "history": [], "started": time.time()}
    last_write = [0.0]

    def write(force: bool = False) -> None:
        if force or time.time() - last_write[0] > 0.5:
            state["seconds"] = round(time.time() - state["started"], 1)
            atomic_write_text(progress_path, json.dumps(state))
            last_write[0] = time.time()

    class Progress(L.Callback):  # reports to the page through the progress file
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            value = float(loss)  # a tensor or a number
            state.update(
                epoch=trainer.current_epoch + 1,
                epochs=trainer.max_epochs,
                batch=batch_idx + 1,
                batches=trainer.num_training_batches,
                loss=value,
            )
            state["steps"].append([int(trainer.global_step), value])
            if len(state["steps"]) > 2000:
                state["steps"] = state["steps"][::2]
            write()

        def on_train_epoch_start(self, trainer, module):  # the module's history has the epochs before this one
            state["history"] = list(module.history)
            write(force=True)

        def on_train_end(self, trainer, module):
            state["history"] = list(module.history)
            write(force=True)

    write(force=True)
    try:
        preset = validate_preset(spec["preset"], where=str(spec_path))
        result = training.train(
            preset,
            spec["data"] or None,
            spec["out"],
            init=spec.get("init"),
            command=spec.get("command"),
            progress=False,
            callbacks=[Progress()],
        )
        m = result.metrics
        state.update(
            status="finished",
            model=str(result.model_path),
            unit=m.get("unit", "loss"),
            summary=f"validation loss {m['valid_loss']:.3f} {m.get('unit', '')} after {result.epochs} "
            f"epochs in {result.seconds:.0f} s",
        )
        write(force=True)
        return 0
    except LstmidiError as err:
        state.update(status="failed", error=str(err))
    except Exception as err:  # noqa: BLE001 — reported in the page; the traceback goes to the job's log
        traceback.print_exc()
        state.update(status="failed", error=f"{type(err).__name__}: {err}")
    write(force=True)
    return 1
