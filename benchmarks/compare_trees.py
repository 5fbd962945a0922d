"""Compare two lstmidi trees on a loaded machine: run this script once per tree, in alternation, and compare the
ratios it prints (each figure is a ratio taken inside one process, or CPU time, so the load of other jobs
reaches both sides). The tree measured is the `lstmidi` Python imports: this checkout's, or another one's with
`PYTHONPATH=OTHER/src`; the training comparison's code is always this checkout's `lstmidi/trainspeed.py`.

    python benchmarks/compare_trees.py train tutorial      # lstmidi's training step / plain PyTorch (3 rounds)
    python benchmarks/compare_trees.py train flagship      # the same at 2 x 512
    python benchmarks/compare_trees.py generate            # notes/s of 30-s pieces, batch 32 / batch 1 (3 rounds)
    python benchmarks/compare_trees.py ingest flagship     # one-core cold load, then after one new file (CPU s)

Prints one table line and, with `--json PATH`, writes the figures (issue 18: docs/benchmarks.md).
Run it with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import lstmidi

HERE = Path(__file__).resolve().parents[1]


def this_speed():
    """This checkout's trainspeed.py, run against whichever lstmidi is imported."""
    spec = importlib.util.spec_from_file_location("lstmidi._speed_here", HERE / "src" / "lstmidi" / "trainspeed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(preset: str, rounds: int) -> dict:
    import lightning as L

    from lstmidi import training

    if not hasattr(training, "make_trainer"):  # a tree from before issue 18: its train() built this Trainer

        def make_trainer(cfg, out, callbacks, *, progress=True, **_):
            return L.Trainer(
                max_epochs=cfg.epochs,
                max_steps=cfg.max_steps or -1,
                gradient_clip_val=cfg.grad_clip or None,
                callbacks=callbacks,
                logger=L.pytorch.loggers.CSVLogger(out, name="logs", version=""),
                enable_progress_bar=progress,
                enable_model_summary=False,
                log_every_n_steps=10,
                accelerator="cpu",
                use_distributed_sampler=False,
                num_sanity_val_steps=0,
                deterministic=True,
                default_root_dir=out,
                plugins=[training.AtomicCheckpointIO()],
            )

        training.make_trainer = make_trainer
    speed = this_speed()
    name, preset, sets, steps, warm, *_ = next(s for s in speed.OVERHEAD_SIZES if s[1] == preset)
    with tempfile.TemporaryDirectory() as work:
        return {
            "measure": f"train step / plain PyTorch: {name}",
            **speed.train_overhead(preset, sets, steps, warm, rounds, Path(work)),
        }


def generate(rounds: int) -> dict:
    from lstmidi.api import bundled_model
    from lstmidi.modelfile import load_model
    from lstmidi.sampling import generate as generate_pieces

    loaded = load_model(bundled_model())
    generate_pieces(loaded, seconds=3, num=2, seed=0)  # first-call work (tables, caches) before timing

    def notes_per_cpu_second(num: int) -> float:
        started = time.process_time()
        pieces = generate_pieces(loaded, seconds=30, num=num, seed=1)
        cpu = time.process_time() - started
        notes = sum(
            int((t.notes.numpy()["time"] >= p.primer_seconds - 1e-6).sum())
            for p in pieces
            for t in p.score.to("second").tracks
        )
        return notes / cpu

    gains = [notes_per_cpu_second(32) / notes_per_cpu_second(1) for _ in range(rounds)]
    return {"measure": "notes per CPU second, batch 32 / batch 1", "gains": gains, "median": statistics.median(gains)}


def ingest(preset: str) -> dict:
    from symusic import Score

    from lstmidi.config import load_preset
    from lstmidi.corpus import bundled_corpus, find_midi_files, load_corpus
    from lstmidi.encodings import build_encoding

    folders = [bundled_corpus("bach"), bundled_corpus("quartets")]
    files = find_midi_files(folders)
    config = load_preset(preset, check_model=False)
    data = config.data.model_copy(update={"workers": 1})
    with tempfile.TemporaryDirectory() as work:
        extra = Path(work) / "extra.mid"
        Score(str(files[0][0])).shift_pitch(1).dump_midi(str(extra))

        def load(more=()) -> float:
            started = time.process_time()
            load_corpus([*folders, *more], build_encoding(config.encoding), data, cache_dir=Path(work) / "cache")
            return time.process_time() - started

        cold = load()
        added = load([extra])
    return {"measure": f"ingest {preset}, one core, CPU s", "files": len(files), "cold": cold, "one_file_added": added}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["train", "generate", "ingest"])
    parser.add_argument("preset", nargs="?", default="tutorial")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.what == "train":
        result = train(args.preset, args.rounds)
    elif args.what == "generate":
        result = generate(args.rounds)
    else:
        result = ingest(args.preset)
    result["tree"] = str(Path(lstmidi.__file__).parents[1])
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
