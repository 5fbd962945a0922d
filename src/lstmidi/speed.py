"""`lstmidi benchmark speed`: how fast lstmidi reads, trains and generates on this machine, each figure
beside the method it replaces, all measured in one run.

Suites (`SUITES`), each returning table rows and the project's targets (issue 7):

* **ingest**: reading and encoding the bundled corpora, in this process (as pretty_midi is measured) and
  as `lstmidi prepare` from process start, with an empty cache and a warm one, for a piano-roll and the
  event-token preset, beside the TensorFlow tutorial's note extraction with pretty_midi on the same
  files; files/s and notes/s.
* **train**: tokens (frames) per second and achieved GFLOP/s of a real training step (forward, loss,
  backward, gradient clipping, Adam) of the `musicgenerator` and `flagship` presets as they are, and of
  the flagship at 2 x 512 with batch 64 x 128 steps (the bundled model's size), against the float32
  matrix-multiply rate measured in the same run.
* **generate**: steps/s of the stateful sampler at batch 1 and 32 against re-running a 25- and a
  100-step window for every step (the tutorial's method), each the median of 3 runs; notes/s of whole
  pieces from the bundled model at batch 1 and 32, and the wall time of `lstmidi generate --seconds 30`
  from process start.
* **memory**: peak resident memory of `lstmidi prepare` and of a short `lstmidi train`.

`--quick` shrinks every size to check that the suites run (the tests use it); its figures are not the
benchmark's.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .trainspeed import (  # noqa: F401 (public here)
    FLAGSHIP_2X512,
    OVERHEAD_SIZES,
    PLAIN_LOSSES,
    flops_per_step_forward,
    matmul_gflops,
    train_overhead,
    train_rate,
)

BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"
CLI = [sys.executable, "-c", "from lstmidi.cli import run; run()"]


def lstmidi_command(*args: str) -> list[str]:
    """The `lstmidi` command line run by this Python (the console script may not be on PATH)."""
    return [*CLI, *args]


def timed_run(cmd: list[str], env: dict | None = None) -> float:
    """Run `cmd` to completion (output discarded unless it fails) -> wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(cmd[3:] if cmd[:3] == CLI else cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return seconds


def peak_rss_mb(cmd: list[str], env: dict | None = None) -> float:
    """Run `cmd` in a process of its own -> the peak resident memory (MB) of its largest process."""
    probe = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd], env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1]) / 1024  # Linux reports kB


def row(suite: str, name: str, value: float, unit: str, note: str = "") -> dict:
    return {"suite": suite, "name": name, "value": float(value), "unit": unit, "note": note}


def target(name: str, measured: float, goal: float, unit: str = "x", *, below: bool = False) -> dict:
    """A figure against its target (at least `goal`, or at most with `below`)."""
    return {
        "target": name,
        "measured": float(measured),
        "goal": goal,
        "unit": unit,
        "met": bool(measured <= goal if below else measured >= goal),
        "below": below,
    }


# ---------------------------------------------------------------------------------------------- ingest


def tutorial_notes(path: Path) -> np.ndarray:
    """The TensorFlow tutorial's `midi_to_notes` (pretty_midi; every instrument rather than the first)
    -> (notes, 5) pitch, start, end, step, duration, sorted by start per instrument."""
    import pretty_midi

    rows = []
    for instrument in pretty_midi.PrettyMIDI(str(path)).instruments:
        notes = sorted(instrument.notes, key=lambda n: n.start)
        prev = notes[0].start if notes else 0.0
        for n in notes:
            rows.append((n.pitch, n.start, n.end, n.start - prev, n.end - n.start))
            prev = n.start
    return np.array(rows, np.float64).reshape(-1, 5)


def ingest(quick: bool, work: Path) -> tuple[list[dict], list[dict]]:
    from symusic import Score

    from .corpus import bundled_corpus, find_midi_files

    folders = [bundled_corpus("bach"), bundled_corpus("quartets")]
    files = find_midi_files(folders)
    if quick:
        folders = [p for p, _ in files[:12]]
        files = files[:12]
    try:
        import pretty_midi  # noqa: F401
    except ImportError:
        pretty = None
        notes = sum(t.note_num() for p, _ in files for t in Score(str(p)).tracks)
    else:
        started = time.perf_counter()
        notes = sum(len(tutorial_notes(p)) for p, _ in files)
        pretty = time.perf_counter() - started
    n = len(files)
    rows, targets = [], []
    if pretty is not None:
        rows.append(
            row(
                "ingest",
                "pretty_midi note extraction (the tutorial's midi_to_notes)",
                n / pretty,
                "files/s",
                f"{n} files, {notes / pretty:,.0f} notes/s, {pretty:.2f} s, in-process",
            )
        )
    else:
        rows.append(row("ingest", "pretty_midi not installed (pip install pretty_midi): no comparison", 0, "files/s"))
    from .config import load_preset
    from .corpus import load_corpus
    from .encodings import build_encoding

    extra = work / "ingest-extra.mid"  # a file no cache has seen: a bundled piece a semitone up
    Score(str(files[0][0])).shift_pitch(1).dump_midi(str(extra))
    for preset, what, per_core_goal in (
        ("musicgenerator", "piano roll", 30),
        ("flagship", "event tokens, the default preset", 10),
    ):
        # in this process (as pretty_midi is measured): parallel reading and encoding, then the cached load
        config = load_preset(preset, check_model=False)
        build_encoding(config.encoding).encode(Score(str(files[0][0])))  # its libraries imported first, as pretty_midi
        cache = work / f"ingest-cache-{preset}"
        shutil.rmtree(cache, ignore_errors=True)

        def load(data=config.data, more=()):
            started = time.perf_counter()
            load_corpus([*folders, *more], build_encoding(config.encoding), data, cache_dir=cache)  # noqa: B023 (called in this iteration)
            return time.perf_counter() - started

        # one worker process, i.e. one core, as pretty_midi runs; cold, so the cache is emptied first; a load
        # takes a fifth of a second, so one is noisy: the median of 3
        one_core_runs = []
        for _ in range(1 if quick else 3):
            shutil.rmtree(cache, ignore_errors=True)
            one_core_runs.append(load(config.data.model_copy(update={"workers": 1})))
        one_core = statistics.median(one_core_runs)
        shutil.rmtree(cache, ignore_errors=True)
        cold, warm = load(), statistics.median(load() for _ in range(3))
        added = load(more=[extra])  # the corpus's files are in the per-file cache: only the new one is encoded
        # the command, from process start (Python and imports included)
        shutil.rmtree(cache, ignore_errors=True)
        cmd = lstmidi_command(
            "prepare", *map(str, folders), "--preset", preset, "--out", str(work / "prepare"), "--force"
        )
        env = {"LSTMIDI_CACHE": str(cache)}
        cli_cold = timed_run(cmd, env)
        cli_warm = statistics.median(timed_run(cmd, env) for _ in range(3))
        for label, seconds in (
            (f"empty cache, in-process, one process (one core), median of {len(one_core_runs)}", one_core),
            (f"empty cache, in-process, {config.data.workers or os.cpu_count()} worker processes", cold),
            ("warm cache, in-process", warm),
            ("one new file added to a cached corpus, in-process", added),
            ("empty cache, `lstmidi prepare` from process start", cli_cold),
            ("warm cache, `lstmidi prepare` from process start", cli_warm),
        ):
            rows.append(
                row(
                    "ingest",
                    f"--preset {preset} ({what}), {label}",
                    n / seconds,
                    "files/s",
                    f"{notes / seconds:,.0f} notes/s, {seconds:.2f} s"
                    + (f"; {pretty / seconds:.1f}x pretty_midi" if pretty else ""),
                )
            )
        if pretty is not None:
            targets += [
                target(
                    f"ingest --preset {preset}, empty cache, one core: files/s vs pretty_midi (one core)",
                    pretty / one_core,
                    per_core_goal,
                ),
                target(
                    f"ingest --preset {preset}, warm cache: files/s vs pretty_midi (in-process)", pretty / warm, 100
                ),
            ]
        targets.append(
            target(
                f"`lstmidi prepare --preset {preset}` of the bundled corpus, warm cache", cli_warm, 2.0, "s", below=True
            )
        )
    return rows, targets


# ----------------------------------------------------------------------------------------------- train


def train(quick: bool, work: Path) -> tuple[list[dict], list[dict]]:
    size = 512 if quick else 2048
    peak = matmul_gflops(0.3 if quick else 3.0, size)
    rows = [row("train", f"float32 matmul ({size} x {size}, {torch.get_num_threads()} threads)", peak, "GFLOP/s")]
    half_peak = None  # the bfloat16 matmul rate, measured once a preset trains in bfloat16
    targets = []
    for name, preset, sets in (
        ("musicgenerator", "musicgenerator", []),
        ("flagship (the default preset)", "flagship", []),
        ("flagship 2 x 512", "flagship", FLAGSHIP_2X512),
        ("flagship 2 x 512, float32", "flagship", [*FLAGSHIP_2X512, "train.precision=float32"]),
    ):
        is_target = sets == FLAGSHIP_2X512
        if quick:
            sets = [*sets, "train.batch_size=4", "train.window=8", "model.hidden=32"]
        r = train_rate(preset, sets, 1 if quick else 4)
        note = f"{r['gflops']:.1f} GFLOP/s in {r['precision']} = {r['gflops'] / peak:.0%} of the float32 matmul"
        if r["precision"] == "bf16-mixed":
            if half_peak is None:
                half_peak = matmul_gflops(0.3 if quick else 3.0, size, torch.bfloat16)
                rows.append(row("train", f"bfloat16 matmul ({size} x {size})", half_peak, "GFLOP/s"))
            note += f", {r['gflops'] / half_peak:.0%} of the bfloat16 matmul"
        rows.append(
            row(
                "train",
                f"{name} ({r['shape']})",
                r["tokens_per_s"],
                f"{r['unit']}/s",
                f"{note}; {r['seconds_per_step']:.2f} s/step",
            )
        )
        rows.append(row("train", f"{name}: share of the float32 matmul rate", 100 * r["gflops"] / peak, "%"))
        if is_target:
            targets.append(
                target(
                    f"training 2 x 512, batch 64 x 128, in the preset's precision ({r['precision']}): share of "
                    "the float32 matmul GFLOP/s",
                    100 * r["gflops"] / peak,
                    85,
                    "%",
                )
            )
    from .corpus import bundled_corpus, find_midi_files

    data = [p for p, _ in find_midi_files([bundled_corpus("bach")])[:12]] if quick else None
    for name, preset, sets, steps, warm, goal in OVERHEAD_SIZES:
        if quick:
            sets, steps, warm = [*sets, "train.batch_size=4", "train.window=8", "model.hidden=32"], 3, 1
        o = train_overhead(preset, sets, steps, warm, 1 if quick else 3, work, data)
        label = f"train step vs plain PyTorch, same model and loss: {name}"
        rows.append(
            row(
                "train",
                label,
                o["ratio"],
                "x",
                f"{o['ms']:.1f} ms against {o['plain_ms']:.1f} ms per batch (wall); CPU-time ratio "
                f"{o['cpu_ratio']:.2f}; in turns of {o['turn']} step{'s' * (o['turn'] > 1)}, "
                f"median of {o['rounds']} runs; lstmidi in {o['precision']}",
            )
        )
        if goal:
            targets.append(target(f"{label} (ms per batch)", o["ratio"], goal, "x", below=True))
    return rows, targets


# -------------------------------------------------------------------------------------------- generate


@torch.no_grad()
def rerun_rate(model: torch.nn.Module, vocab: int, batch: int, window: int, steps: int) -> float:
    """Steps/s of the tutorial's method: every new step runs the model over the last `window` steps
    from a zero state and samples from the last output."""
    from . import processors

    g = torch.Generator().manual_seed(0)
    seq = torch.randint(vocab, (batch, window), generator=g)
    started = time.perf_counter()
    for _ in range(steps):
        logits, _ = model(seq[:, -window:])
        token = processors.sample(logits[:, -1], generator=g)
        seq = torch.cat([seq, token[:, None]], 1)
    return steps / (time.perf_counter() - started)


@torch.no_grad()
def stateful_rate(model: torch.nn.Module, bos: int, batch: int, steps: int) -> float:
    """Steps/s of lstmidi's sampler: the state is carried, one LSTM step per new step."""
    from .sampling import sample_tokens

    g = torch.Generator().manual_seed(0)
    primer = torch.full((batch, 1), bos, dtype=torch.long)
    sample_tokens(model, primer, 10, generator=g)
    started = time.perf_counter()
    sample_tokens(model, primer, steps, generator=g)
    return steps / (time.perf_counter() - started)


def pieces_rate(loaded, num: int, seconds: float) -> tuple[float, float]:
    """Whole pieces from a model with every constraint on (grammar, ending), `num` in one batch ->
    (new notes per second of wall time, steps per second per piece)."""
    from .sampling import generate

    started = time.perf_counter()
    pieces = generate(loaded, seconds=seconds, num=num, seed=1)
    wall = time.perf_counter() - started
    notes = 0
    for p in pieces:
        for track in p.score.to("second").tracks:
            notes += int((track.notes.numpy()["time"] >= p.primer_seconds - 1e-6).sum())
    steps = max(len(p.frames) for p in pieces)
    return notes / wall, steps / wall


def generate(quick: bool, work: Path) -> tuple[list[dict], list[dict]]:
    from .api import bundled_model
    from .modelfile import load_model

    loaded = load_model(bundled_model())
    model, enc = loaded.model.eval(), loaded.encoding
    vocab = enc.sizes["vocab_size"]
    shape = f"{model.spec.layers} x {model.spec.hidden}"
    n1, n32, nr = (40, 10, 5) if quick else (1000, 200, 40)
    rows, rates = [], {}
    for batch, steps in ((1, n1), (32, n32)):
        rates[("stateful", batch)] = statistics.median(stateful_rate(model, enc.bos, batch, steps) for _ in range(3))
        rows.append(
            row(
                "generate",
                f"stateful sampler, batch {batch} ({shape})",
                rates[("stateful", batch)],
                "steps/s",
                f"{rates[('stateful', batch)] * batch:,.0f} tokens/s over the batch",
            )
        )
        for window in (25, 100):
            rates[(window, batch)] = statistics.median(
                rerun_rate(model, vocab, batch, window, nr if batch == 1 else max(nr // 4, 2)) for _ in range(3)
            )
            rows.append(
                row(
                    "generate",
                    f"re-run a {window}-step window per step, batch {batch}",
                    rates[(window, batch)],
                    "steps/s",
                    f"stateful is {rates[('stateful', batch)] / rates[(window, batch)]:.0f}x faster",
                )
            )
    seconds = 3 if quick else 30
    pieces_rate(loaded, 2, 2)  # the first piece builds the grammar tables: not counted in batch 1's rate
    # one piece takes about a second: batch 1 and batch 32 alternate, and each figure is a median of 3
    pairs = [(pieces_rate(loaded, 1, seconds), pieces_rate(loaded, 4 if quick else 32, seconds)) for _ in range(3)]
    notes1, steps1 = (statistics.median(one[i] for one, _ in pairs) for i in (0, 1))
    notes32 = statistics.median(many[0] for _, many in pairs)
    gain = statistics.median(many[0] / one[0] for one, many in pairs)
    rows += [
        row(
            "generate",
            f"{seconds}-s pieces with grammar and ending, batch 1",
            notes1,
            "notes/s",
            f"{steps1:,.0f} steps/s; median of 3",
        ),
        row(
            "generate",
            f"{seconds}-s pieces with grammar and ending, batch {4 if quick else 32}",
            notes32,
            "notes/s",
            f"{gain:.1f}x batch 1 (median of 3 alternating pairs)",
        ),
    ]
    out = work / "e2e"
    out.mkdir(parents=True, exist_ok=True)
    cli = {}
    for label, extra in (("MIDI + WAV", ["--no-png"]), ("MIDI + WAV + PNG", [])):
        cmd = lstmidi_command(
            "generate", "-o", str(out / "piece.mid"), "--seconds", str(seconds), "--seed", "1", "--force", *extra
        )
        runs = 1 if quick else 3
        cli[label] = statistics.median(timed_run(cmd) for _ in range(runs))
        rows.append(
            row(
                "generate",
                f"`lstmidi generate --seconds {seconds}` -> {label}, from process start",
                cli[label],
                "s",
                f"median of {runs}",
            )
        )
    targets = [
        target(f"stateful sampler, batch 1 ({shape})", rates[("stateful", 1)], 1000, "steps/s"),
        target("stateful vs re-running a 100-step window, batch 1", rates[("stateful", 1)] / rates[(100, 1)], 30),
        target("batch 32 vs batch 1, notes/s", gain, 10),
        target("30 s of music, MIDI + WAV, from the CLI", cli["MIDI + WAV"], 2.5, "s", below=True),
    ]
    return rows, targets


# ---------------------------------------------------------------------------------------------- memory


def memory(quick: bool, work: Path) -> tuple[list[dict], list[dict]]:
    from .corpus import bundled_corpus

    bach, quartets = str(bundled_corpus("bach")), str(bundled_corpus("quartets"))
    env = {"LSTMIDI_CACHE": str(work / "memory-cache")}
    shutil.rmtree(work / "memory-cache", ignore_errors=True)
    rows = [
        row(
            "memory",
            "lstmidi prepare, bundled corpora, empty cache",
            peak_rss_mb(
                lstmidi_command("prepare", bach, quartets, "--preset", "flagship", "--out", str(work / "mem-prepare")),
                env,
            ),
            "MB peak RSS",
            "largest process",
        )
    ]
    minutes = "0.05" if quick else "0.5"
    for label, data in (("Bach chorales", [bach]), ("Bach chorales + quartets", [bach, quartets])):
        cmd = lstmidi_command(
            "train",
            *data,
            "--preset",
            "flagship",
            *[a for s in FLAGSHIP_2X512 for a in ("--set", s)],
            "--max-minutes",
            minutes,
            "--epochs",
            "1",
            "--out",
            str(work / "mem-train"),
            "--force",
        )
        rows.append(
            row(
                "memory",
                f"lstmidi train, flagship 2 x 512, {label}",
                peak_rss_mb(cmd, env),
                "MB peak RSS",
                f"{minutes} min of training",
            )
        )
    return rows, []


SUITES = {"ingest": ingest, "train": train, "generate": generate, "memory": memory}


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def peer_keras(quick: bool, work: Path) -> tuple[list[dict], list[dict]]:
    """The TensorFlow tutorial's Keras model beside the `tutorial` preset (lstmidi.peer; extra [peer])."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:  # each side runs in its own process: no import here
        from .errors import LstmidiError

        raise LstmidiError("--peer keras needs TensorFlow: pip install 'lstmidi[peer]' (tensorflow-cpu)")
    from .peer import compare

    return compare(quick, work, row, target)


PEERS = {"keras": peer_keras}


def run(
    suites: list[str] | None = None,
    *,
    quick: bool = False,
    work: Path | None = None,
    progress=print,
    peer: str | None = None,
) -> dict:
    """Run the named suites (default: all; with `peer`, only the peer comparison unless suites are named)
    -> {"machine", "rows", "targets", "seconds"}."""
    if peer is not None and peer not in PEERS:
        from .errors import LstmidiError

        raise LstmidiError(f"unknown peer {peer!r} (choose from: {', '.join(PEERS)})")
    suites = suites or ([] if peer else list(SUITES))
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        from .errors import LstmidiError

        raise LstmidiError(f"unknown suite(s) {', '.join(unknown)} (choose from: {', '.join(SUITES)})")
    started = time.time()
    rows, targets = [], []
    with tempfile.TemporaryDirectory(prefix="lstmidi-speed-") as tmp:
        for name in [*suites, *([f"peer {peer}"] if peer else [])]:
            progress(f"{name} ...")
            t0 = time.time()
            r, t = (PEERS[peer] if name.startswith("peer ") else SUITES[name])(quick, Path(work or tmp))
            rows += r
            targets += t
            progress(f"{name}: {time.time() - t0:.0f} s")
    return {
        "machine": machine(),
        "quick": quick,
        "rows": rows,
        "targets": targets,
        "seconds": round(time.time() - started, 1),
    }


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def table(result: dict) -> str:
    lines = []
    for suite in dict.fromkeys(r["suite"] for r in result["rows"]):
        lines.append(f"\n{suite}")
        for r in (r for r in result["rows"] if r["suite"] == suite):
            lines.append(f"  {r['name']:<68s} {_fmt(r['value']):>10s} {r['unit']:<12s} {r['note']}")
    lines.append("\ntargets")
    for t in result["targets"]:
        goal = f"<= {t['goal']}" if t.get("below", t["unit"] == "s") else f">= {t['goal']}"
        lines.append(
            f"  {t['target']:<68s} {_fmt(t['measured']):>10s} {t['unit']:<8s} target {goal} "
            f"{'met' if t['met'] else 'NOT met'}"
        )
    m = result["machine"]
    lines.append(
        f"\nmachine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} with {m['torch_threads']} threads; "
        f"{result['seconds']:.0f} s"
    )
    return "\n".join(lines)


def markdown(result: dict, command: str) -> str:
    m = result["machine"]
    out = [
        BEGIN,
        "## Speed and memory",
        "",
        f"Written by `{command}` on {m['date']}: {m['cores']} cores ({m['cpu']}), torch {m['torch']} with "
        f"{m['torch_threads']} threads, Python {m['python']}; the whole run took {result['seconds']:.0f} s. "
        "Every ratio compares two figures of this same run.",
        "",
    ]
    for suite in dict.fromkeys(r["suite"] for r in result["rows"]):
        out += [f"### {suite}", "", "| measure | value | unit | notes |", "|---|---|---|---|"]
        out += [
            f"| {r['name']} | {_fmt(r['value'])} | {r['unit']} | {r['note']} |"
            for r in result["rows"]
            if r["suite"] == suite
        ]
        out.append("")
    out += ["### Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        goal = f"≤ {t['goal']} {t['unit']}" if t.get("below", t["unit"] == "s") else f"≥ {t['goal']} {t['unit']}"
        out.append(
            f"| {t['target']} | {_fmt(t['measured'])} {t['unit']} | {goal} | {'yes' if t['met'] else '**no**'} |"
        )
    out += ["", END]
    return "\n".join(out)


def update_markdown(path: Path, section: str) -> None:
    """Put `section` between the speed markers of `path` (appended when they are missing), keeping the rest."""
    from .corpus import atomic_write_text

    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(path, text)
