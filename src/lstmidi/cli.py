"""The `lstmidi` command: parse options, call one API function, print where the results are."""

from __future__ import annotations

import atexit
import os
import shlex
import sys
import threading
from pathlib import Path

from . import threads  # first: the machine's load is measured from the command's start (threads.busy_cores)

# isort: split
import typer

from .errors import LstmidiError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train LSTM networks on folders of MIDI files and generate new music.",
)

PRESET = typer.Option("musicgenerator", "--preset", "-p", help="preset name (configs/*.yaml) or a YAML path")
SET = typer.Option(None, "--set", help="override a preset value, e.g. --set train.lr=0.001 (repeatable)")
FORCE = typer.Option(False, "--force", help="overwrite existing output")
PARALLELS_HELP = (
    "four-voice models: nats taken off each choice per parallel fifth or octave it makes (0 = off; "
    "default: the model's)"
)
SCORE_HELP = "also write sheet music: OUT.musicxml (music21) and OUT.svg (verovio); needs the `score` extra"


COMPUTING = {"train", "generate", "evaluate", "demo", "benchmark", "serve"}  # commands that run PyTorch


@app.callback()
def _options(
    ctx: typer.Context,
    threads_: int | None = typer.Option(
        None,
        "--threads",
        help="PyTorch threads (default: LSTMIDI_THREADS, else OMP_NUM_THREADS, else one per core that other "
        "processes leave free, measured at start)",
    ),
):
    """Train LSTM networks on folders of MIDI files and generate new music."""
    if ctx.invoked_subcommand in COMPUTING:
        threads.configure(threads_)  # `train` prints the choice with its corpus (lstmidi.threads.describe)


def _command() -> str:
    return "lstmidi " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@app.command()
def prepare(
    data: list[Path] | None = typer.Argument(None, help="MIDI files or folders (default: bundled Bach chorales)"),
    out: Path = typer.Option(Path("lstmidi-data"), "--out", "-o", help="folder for report.json"),
    preset: str = PRESET,
    set_: list[str] | None = SET,
    force: bool = typer.Option(False, "--force", help="overwrite an existing OUT/report.json"),
):
    """Load, encode and split a corpus; print the per-file summary and write OUT/report.json."""
    from .api import prepare as run
    from .config import load_preset
    from .corpus import count_line

    corpus = run(
        data, out, load_preset(preset, set_ or [], check_model=False), force=force
    )  # no model: no torch import
    s = corpus.summary
    typer.echo(f"{s['files']} files: {count_line(s)}{' (from cache)' if corpus.cached else ''}")
    for split in ("train", "valid", "test"):
        typer.echo(f"  {split:5s} {s['pieces'][split]:5d} pieces {s['steps'][split]:8d} steps")
    for status in ("recovered", "skipped"):
        for name, reason in s[f"{status}_files"].items():
            typer.echo(f"  {status} {name}: {reason}")
    typer.echo(f"report: {out / 'report.json'}")


@app.command("inspect")
def inspect_command(
    data: list[Path] = typer.Argument(..., help="MIDI files or folders"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the per-file report to this JSON file"),
    preset: str = typer.Option(
        "musicgenerator", "--preset", "-p", help="preset whose data settings (tracks, drums) decide what is skipped"
    ),
    set_: list[str] | None = SET,
    force: bool = typer.Option(False, "--force", help="overwrite an existing --json file"),
):
    """Read MIDI files without encoding them: per file its status (loaded / recovered / skipped) and
    why, format, tracks, programs, drums, notes, seconds, tempo changes and time signature; then counts."""
    import json

    from .config import load_preset
    from .corpus import atomic_write_text, file_progress, refuse_overwrite
    from .inspection import inspect_files, table

    chosen = load_preset(preset, set_ or [], check_model=False)  # only its data settings are used
    if json_path:
        refuse_overwrite([json_path], force)  # before the files are read
    result = inspect_files(data, chosen.data, progress=file_progress())
    typer.echo(table(result))
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=1))
        typer.echo(f"report: {json_path}")


@app.command()
def train(
    data: list[Path] | None = typer.Argument(None, help="MIDI files or folders (default: bundled Bach chorales)"),
    preset: str | None = typer.Option(
        None,
        "--preset",
        "-p",
        help="preset name (configs/*.yaml) or a YAML path [default: flagship, or the --init model's]",
    ),
    out: Path = typer.Option(Path("lstmidi-run"), "--out", "-o", help="run folder; the model is OUT/model.lstmidi"),
    init: Path | None = typer.Option(
        None, "--init", help="fine-tune: start from this .lstmidi model and keep its encoding"
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="number of epochs (default: the preset's)"),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="stop cleanly after this many minutes"),
    set_: list[str] | None = SET,
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUT from its last checkpoint"),
    force: bool = typer.Option(False, "--force", help="start over in a non-empty OUT"),
    devices: int = typer.Option(
        1,
        "--devices",
        min=1,
        help="processes per machine: GPUs, or CPU processes without a GPU (batch size is per process)",
    ),
    strategy: str = typer.Option(
        "auto", "--strategy", help="'auto' (one process, or ddp when devices x nodes > 1) or 'ddp'"
    ),
    num_nodes: int = typer.Option(
        1, "--num-nodes", min=1, help="machines, each running --devices processes (launch with torchrun or srun)"
    ),
):
    """Train a model; writes OUT/model.lstmidi, checkpoints, logs/metrics.csv and loss.png."""
    from .api import train_overrides, training_preset

    chosen = training_preset(preset, init=init, overrides=train_overrides(set_, epochs, max_minutes))  # a bad preset
    from .training import train as run  # fails above, before Lightning loads

    result = run(
        chosen,
        data,
        out,
        resume=resume,
        force=force,
        command=_command(),
        init=init,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
    )
    if result is None:  # a DDP process other than global rank 0: rank 0 reports
        return
    typer.echo(_summary(result))
    q = result.metrics.get("quality")
    if q:
        from .quality import summary_line

        typer.echo(summary_line(q))
        if q["near_random"]:
            typer.echo(
                "warning: the pitch content of the generated pieces is closer to random pitches than to the "
                "training music: train longer (--epochs, --max-minutes) or with more data, then check with "
                "`lstmidi evaluate`",
                err=True,
            )
    typer.echo(f"model: {result.model_path}")


def _summary(result) -> str:
    m = result.metrics
    extra = "".join(
        f", {k.removeprefix('valid_').replace('_', ' ')} {v:.3f}"
        for k, v in m.items()
        if k.startswith("valid_") and k != "valid_loss"
    )
    base = ", ".join(f"{k} {v:.3f}" for k, v in m["baselines"].items())
    return (
        f"validation loss {m['valid_loss']:.3f} {m['unit']}{extra} (baselines: {base})"
        f" after {result.epochs} epochs in {result.seconds:.0f} s"
    )


@app.command()
def generate(
    model: Path | None = typer.Argument(None, help="a .lstmidi model file (default: the bundled pretrained model)"),
    out: str = typer.Option(
        "generated.mid",
        "--out",
        "-o",
        help="output MIDI; with --num N: OUT-1.mid .. OUT-N.mid; "
        "a folder (existing, or ending in '/'): FOLDER/generated.mid",
    ),
    seconds: float | None = typer.Option(
        None, "--seconds", help="length of the new part in seconds (default: the model's)"
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="length of the new part in encoding steps (overrides --seconds)"
    ),
    num: int = typer.Option(1, "--num", "-n", help="pieces to generate (in one batch)"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives the same music"),
    primer: Path | None = typer.Option(
        None, "--primer", help="MIDI file to continue (default: held-out excerpt stored in the model)"
    ),
    primer_seconds: float | None = typer.Option(
        None, "--primer-seconds", help="use only the first S seconds of the primer; 0 = start from silence"
    ),
    temperature: float | None = typer.Option(None, "--temperature", "-t", help="> 1 bolder, < 1 safer"),
    top_k: int | None = typer.Option(
        None, "--top-k", help="note/token models: sample among the k most likely (1 = greedy)"
    ),
    top_p: float | None = typer.Option(None, "--top-p", help="note/token models: nucleus sampling mass (0..1]"),
    nucleus: str | None = typer.Option(
        None,
        "--nucleus",
        help="event models: the tokens --top-p may cut: all, or pitch (timing and durations keep the "
        "model's whole distribution; default: the model's)",
    ),
    greedy: bool | None = typer.Option(
        None, "--greedy/--no-greedy", help="note/token models: always take the most likely"
    ),
    beam: int | None = typer.Option(None, "--beam", help="event models: beam search with N beams"),
    repetition_penalty: float | None = typer.Option(
        None, "--repetition-penalty", help="event models: > 1 discourages repeated tokens"
    ),
    max_repeat: int | None = typer.Option(
        None, "--max-repeat", help="event models: no pitch more than N times in a row"
    ),
    key: str | None = typer.Option(None, "--key", help='event models: only pitches of this key, e.g. "D minor"'),
    pitch_range: str | None = typer.Option(
        None, "--pitch-range", help="event models: LOW-HIGH MIDI pitches, e.g. 48-84"
    ),
    programs: str | None = typer.Option(
        None, "--programs", help="multi-instrument event models: allowed GM programs, e.g. 0,40,42"
    ),
    bars: float | None = typer.Option(
        None, "--bars", help="length in 4/4 bars at 120 qpm (= 2 s per bar); alternative to --seconds"
    ),
    primer_output: bool = typer.Option(
        True, "--primer-output/--no-primer-output", help="include the primer in the output"
    ),
    max_copy: int | None = typer.Option(
        None, "--max-copy", min=1, help="resample any stretch that repeats more than N notes of a training piece"
    ),
    copy_data: list[Path] | None = typer.Option(
        None,
        "--copy-data",
        help="training MIDI for --max-copy (repeatable; default: the bundled model's corpora, or the bundled chorales)",
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="piano-roll models: bernoulli or threshold (default: the model's)"
    ),
    threshold: float | None = typer.Option(None, "--threshold", help="key-on probability for --mode threshold"),
    max_notes: int | None = typer.Option(
        None, "--max-notes", help="piano-roll models: at most N keys held at once (default: the model's)"
    ),
    fill: float | None = typer.Option(
        None,
        "--fill",
        help="piano-roll models: favour full chords: a frame with fewer keys than the training music usually "
        "holds weighs exp(-FILL) times less for each key it lacks (0 = off; default: the model's)",
    ),
    iterations: int | None = typer.Option(
        None, "--iterations", help="four-voice models: Gibbs sweeps over every free cell (default: the model's)"
    ),
    parallels: float | None = typer.Option(None, "--parallels", help=PARALLELS_HELP),
    rewrite: str | None = typer.Option(
        None, "--rewrite", help="four-voice models: resample bars FIRST-LAST of the --primer piece, e.g. 5-8"
    ),
    rewrite_voices: str = typer.Option("S,A,T,B", "--rewrite-voices", help="the voices --rewrite resamples, e.g. A,T"),
    wav: bool = typer.Option(True, "--wav/--no-wav", help="write OUT.wav"),
    png: bool = typer.Option(True, "--png/--no-png", help="write the piano roll OUT.png"),
    sheet: bool = typer.Option(False, "--score", help=SCORE_HELP),
    soundfont: str | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for the WAV"),
    force: bool = FORCE,
):
    """Generate music with a trained model: MIDI, plus WAV and a piano-roll PNG beside it (and sheet music
    with --score)."""
    from .api import generate_files, rewrite_files

    if rewrite is not None:
        if primer is None:
            raise LstmidiError("--rewrite needs the piece to rewrite: --primer PIECE.mid")
        written = rewrite_files(
            model,
            primer,
            _bar_span(rewrite),
            out,
            num=num,
            wav=wav,
            png=png,
            sheet=sheet,
            force=force,
            soundfont=soundfont,
            voices=rewrite_voices,
            seed=seed,
            temperature=temperature,
            iterations=iterations,
            parallels=parallels,
        )
        _echo_files(written)
        return
    if bars is not None:
        seconds = bars * 2.0
    written = generate_files(
        model,
        out,
        num=num,
        wav=wav,
        png=png,
        sheet=sheet,
        force=force,
        soundfont=soundfont,
        seconds=seconds,
        steps=steps,
        seed=seed,
        primer=primer,
        primer_seconds=primer_seconds,
        temperature=temperature,
        mode=mode,
        threshold=threshold,
        max_notes=max_notes,
        fill=fill,
        top_k=top_k,
        top_p=top_p,
        nucleus=nucleus,
        greedy=greedy,
        beam=beam,
        repetition_penalty=repetition_penalty,
        max_repeat=max_repeat,
        key=key,
        pitch_range=_pitch_range(pitch_range),
        programs=_int_list(programs, "--programs"),
        iterations=iterations,
        parallels=parallels,
        include_primer=primer_output,
        max_copy=max_copy,
        copy_data=copy_data,
    )
    _echo_files(written)


@app.command()
def harmonize(
    melody: Path = typer.Argument(..., help="MIDI file with the melody (or the given voices)"),
    out: str = typer.Option("harmonized.mid", "--out", "-o", help="output MIDI; with --num N: OUT-1.mid .. OUT-N.mid"),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="a four-voice .lstmidi model (default: the bundled chorale model)"
    ),
    voices: str = typer.Option("S", "--voices", help="the given voices, any of S, A, T, B, e.g. S or S,B"),
    track: int | None = typer.Option(
        None, "--track", help="the track with the melody (default: the highest line of the top pitched track)"
    ),
    num: int = typer.Option(1, "--num", "-n", help="harmonisations to write"),
    seed: int = typer.Option(0, "--seed", help="random seed; the same seed gives the same music"),
    temperature: float | None = typer.Option(None, "--temperature", "-t", help="> 1 bolder, < 1 safer"),
    iterations: int | None = typer.Option(None, "--iterations", help="Gibbs sweeps (default: the model's)"),
    parallels: float | None = typer.Option(None, "--parallels", help=PARALLELS_HELP),
    wav: bool = typer.Option(True, "--wav/--no-wav", help="write OUT.wav"),
    png: bool = typer.Option(True, "--png/--no-png", help="write the piano roll OUT.png"),
    sheet: bool = typer.Option(False, "--score", help=SCORE_HELP),
    soundfont: str | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for the WAV"),
    force: bool = FORCE,
):
    """Harmonise a melody in four voices (S, A, T, B) with a four-voice model: MIDI, WAV and PNG (and sheet
    music with --score)."""
    from .api import CHORALE, harmonize_files

    written = harmonize_files(
        model or CHORALE,
        melody,
        out,
        num=num,
        wav=wav,
        png=png,
        sheet=sheet,
        force=force,
        soundfont=soundfont,
        voices=voices,
        track=track,
        seed=seed,
        temperature=temperature,
        iterations=iterations,
        parallels=parallels,
    )
    _echo_files(written)


def _echo_files(written: list[dict[str, str]]) -> None:
    """One line per piece: the files written for it."""
    for files in written:
        typer.echo("  ".join(files.values()))


def _bar_span(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        a = b = 0
    if not 1 <= a <= b:
        raise LstmidiError(f"--rewrite {text!r}: expected bars FIRST-LAST counted from 1, e.g. 5-8")
    return a, b


def _pitch_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        lo = hi = -1
    if not sep or not 0 <= lo <= hi <= 127:
        raise LstmidiError(
            f"--pitch-range {text!r}: expected LOW-HIGH MIDI pitches with 0 <= LOW <= HIGH <= 127, e.g. 48-84"
        )
    return lo, hi


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LstmidiError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0,40,42") from None


@app.command()
def render(
    midi: Path = typer.Argument(..., help="a MIDI file"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output name (default: beside the MIDI file)"),
    wav: bool = typer.Option(True, "--wav/--no-wav"),
    png: bool = typer.Option(True, "--png/--no-png"),
    sheet: bool = typer.Option(False, "--score", help=SCORE_HELP),
    soundfont: str | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for the WAV"),
    force: bool = FORCE,
):
    """Render a MIDI file to WAV audio and a piano-roll PNG (and sheet music with --score)."""
    from .api import render_file

    written = render_file(midi, out, wav=wav, png=png, sheet=sheet, force=force, soundfont=soundfont)
    typer.echo("  ".join(written.values()))


@app.command()
def demo(
    out: Path = typer.Option(Path("lstmidi-demo"), "--out", "-o", help="output folder"),
    minutes: float = typer.Option(2.0, "--minutes", help="training time"),
    num: int = typer.Option(3, "--num", "-n", help="pieces to generate"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="replace an existing demo folder"),
):
    """Generate with the bundled pretrained model, then train briefly on the bundled Bach chorales and
    generate again (MIDI + WAV + PNG)."""
    from .api import demo as run

    result, pretrained, trained = run(out, minutes=minutes, num=num, seed=seed, force=force)
    typer.echo("from the bundled pretrained model:")
    for f in pretrained:
        typer.echo("  " + "  ".join(f.values()))
    typer.echo(_summary(result))
    typer.echo(f"model: {result.model_path}   loss curve: {result.run_dir / 'loss.png'}")
    typer.echo("from the model trained just now:")
    for f in trained:
        typer.echo("  " + "  ".join(f.values()))
    typer.echo(f"listen: {Path(pretrained[0].get('wav', pretrained[0]['midi'])).resolve()}")


@app.command()
def evaluate(
    model: Path | None = typer.Argument(None, help="a .lstmidi model file (default: the bundled pretrained model)"),
    data: list[Path] | None = typer.Option(
        None,
        "--data",
        "-d",
        help="the MIDI files or folders the model was trained on (repeatable; default: the bundled corpora for "
        "the bundled model, else the bundled Bach chorales)",
    ),
    num: int = typer.Option(20, "--num", "-n", help="pieces to generate"),
    seconds: float | None = typer.Option(
        None, "--seconds", help="length of the generated pieces and of the real excerpts (default: the model's)"
    ),
    seed: int = typer.Option(0, "--seed", help="random seed of the generated pieces"),
    out: Path | None = typer.Option(None, "--out", "-o", help="report folder (default: MODEL-STEM-eval)"),
    json_path: Path | None = typer.Option(None, "--json", help="also write the figures to this JSON file"),
    temperature: float | None = typer.Option(
        None, "--temperature", "-t", help="sampling temperature of the generated pieces (default: the model's)"
    ),
    top_p: float | None = typer.Option(
        None, "--top-p", help="nucleus sampling mass of the generated pieces (default: the model's)"
    ),
    programs: str | None = typer.Option(
        None,
        "--programs",
        help="event-token models: the instruments of the generated pieces, e.g. 0 (piano: the chorales of the "
        "bundled model)",
    ),
    split: str = typer.Option("test", "--split", help="the held-out pieces: test (default), valid, or held-out (both)"),
    force: bool = FORCE,
):
    """Measure a model: held-out NLL, the quality gate (harmony of generated vs real music and a
    random-pitch control, tell-apart score), musical metrics, originality against the training split;
    writes OUT/report.md with plots."""
    from .api import evaluate as run
    from .quality import gate_table, summary_line

    r = run(
        model,
        data,
        num=num,
        seconds=seconds,
        seed=seed,
        out=out,
        json_path=json_path,
        force=force,
        split=split,
        temperature=temperature,
        top_p=top_p,
        programs=_int_list(programs, "--programs"),
    )
    nll, held = r["nll"], r["held_out"]
    typer.echo(
        f"held-out NLL ({held['pieces']} {held['split']} pieces): {nll['per_step']:.4f} {nll['unit']}, "
        f"{nll['per_note']:.4f} per note"
    )
    if nll.get("by_type"):
        typer.echo(
            "  by token type, nats per note: "
            + ", ".join(f"{t} {v['per_note']:.3f}" for t, v in nll["by_type"].items())
        )
    for line in gate_table(r["quality"]):
        typer.echo(line)
    typer.echo(summary_line(r["quality"]))
    typer.echo(f"{'metric (mean)':22s} {'generated':>10s} {'real':>10s} {'overlap':>8s} {'KL':>7s}")
    for name, m in r["metrics"].items():
        typer.echo(
            f"{name:22s} {m['generated']['mean']:10.3f} {m['real']['mean']:10.3f} "
            f"{m['overlap_area']:8.3f} {m['kl_real_generated']:7.3f}"
        )
    for key in ("generated", "real"):
        o = r["originality"][key]
        typer.echo(
            f"originality, {key}: longest copy {o['longest_copy']['mean']:.1f} notes (max "
            f"{o['longest_copy']['max']:.0f}), "
            f"8-note n-grams in training {o['ngram8_share']['mean']:.3f}"
        )
    typer.echo(f"report: {r['report']}" + (f"   figures: {json_path}" if json_path else ""))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (default: this machine only)"),
    port: int = typer.Option(7860, "--port", help="port to listen on"),
    runs: Path = typer.Option(
        Path("lstmidi-runs"), "--runs", help="folder for training runs, uploads and generated pieces"
    ),
):
    """Start lstmidi studio, a web page to generate, listen, look and train (needs the 'studio' extra of lstmidi)."""
    from .studio import serve as run

    run(host=host, port=port, runs=runs)


benchmark_app = typer.Typer(
    no_args_is_help=True, help="Measure models against published numbers, and this machine's speed."
)
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("polyphonic")
def benchmark_polyphonic(
    dataset: str = typer.Option("jsb", "--dataset", "-d", help="jsb or nottingham"),
    preset: str = PRESET,
    data: Path | None = typer.Option(
        None,
        "--data",
        help="a .mat file of the benchmark layout or its folder "
        "(default: $LSTMIDI_POLYPHONIC or shared/data/polyphonic)",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="run folder (default: bench-DATASET-PRESET)"),
    epochs: int | None = typer.Option(None, "--epochs", help="number of epochs (default: the preset's)"),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="stop training after this many minutes"),
    set_: list[str] | None = SET,
    json_path: Path | None = typer.Option(None, "--json", help="write the figures to this JSON file"),
    force: bool = typer.Option(False, "--force", help="start over in a non-empty OUT"),
):
    """Train a piano-roll preset on JSB Chorales or Nottingham; print test NLL (nats per frame) and frame
    accuracy beside the published results."""
    import json

    from .api import train_overrides
    from .config import load_preset
    from .corpus import atomic_write_text, refuse_overwrite
    from .polyphonic import run, table

    if json_path:
        refuse_overwrite([json_path], force)
    result = run(
        dataset,
        load_preset(preset, train_overrides(set_, epochs, max_minutes)),
        out or Path(f"bench-{dataset}-{Path(preset).stem}"),
        data=data,
        force=force,
        command=_command(),
    )
    typer.echo(table(result))
    if json_path:
        atomic_write_text(json_path, json.dumps(result.as_json(), indent=1))
        typer.echo(f"figures: {json_path}")


@benchmark_app.command("ensemble")
def benchmark_ensemble(
    models: list[Path] = typer.Argument(..., help="model files of `lstmidi benchmark polyphonic` runs on one data set"),
    dataset: str = typer.Option("jsb", "--dataset", "-d", help="jsb or nottingham"),
    data: Path | None = typer.Option(
        None, "--data", help="the .mat file the models were trained on or its folder (as for `polyphonic`)"
    ),
    json_path: Path | None = typer.Option(None, "--json", help="write the figures to this JSON file"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --json file"),
):
    """Score the mixture of polyphonic benchmark models (each frame's probability: the mean of theirs) on the
    valid and test pieces, beside each model's own NLL."""
    import json

    from .corpus import atomic_write_text, refuse_overwrite
    from .polyphonic import ensemble_table, score_ensemble

    if json_path:
        refuse_overwrite([json_path], force)
    result = score_ensemble(dataset, models, data)
    typer.echo(ensemble_table(result))
    if json_path:
        atomic_write_text(json_path, json.dumps({**result, "command": _command()}, indent=1))
        typer.echo(f"figures: {json_path}")


@benchmark_app.command("speed")
def benchmark_speed(
    suite: list[str] | None = typer.Option(
        None, "--suite", "-s", help="ingest, train, generate or memory (repeatable; default: all)"
    ),
    json_path: Path | None = typer.Option(None, "--json", help="write the figures to this JSON file"),
    markdown: Path | None = typer.Option(
        None,
        "--markdown",
        help="write the tables into this Markdown file (between its speed markers; the rest of the file is kept)",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="tiny sizes: checks that the suites run (the figures are not the benchmark's)"
    ),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --json file"),
    peer: str | None = typer.Option(
        None,
        "--peer",
        help="keras: the TensorFlow tutorial's Keras model beside the tutorial preset, in alternation (needs the "
        "extra [peer]; alone unless --suite is given)",
    ),
):
    """Measure ingest, training, generation and memory on this machine, each beside the method it replaces;
    print a table and the project's speed targets."""
    import json

    from .corpus import atomic_write_text, refuse_overwrite
    from .speed import markdown as to_markdown
    from .speed import run, table, update_markdown

    if json_path:
        refuse_overwrite([json_path], force)
    result = run(suite, quick=quick, progress=lambda msg: typer.echo(msg, err=True), peer=peer)
    typer.echo(table(result))
    if json_path:
        atomic_write_text(json_path, json.dumps(result, indent=1))
        typer.echo(f"figures: {json_path}")
    if markdown:
        update_markdown(markdown, to_markdown(result, _command()))
        typer.echo(f"tables: {markdown}")


def main() -> None:
    try:
        app()
    except LstmidiError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="red", err=True)
        sys.exit(130)


def run() -> None:
    """The `lstmidi` command: `main()`, then a prompt exit.

    Python's own shutdown tears down every module and object one by one, which takes about 0.4 s once
    torch is imported. The command's work is done by then (every file is written and closed), so after
    the other threads finish it flushes the output, runs the `atexit` handlers (multiprocessing, logging,
    temporary folders) and ends the process with `os._exit`.
    """
    code: int | str | None = 0
    try:
        main()
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):  # sys.exit("message"): printed, exit status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    run()
