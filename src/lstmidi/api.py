"""The public API behind the CLI and the web page: each function is one user-level job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .config import Preset, load_preset
from .corpus import Corpus, file_progress, load_corpus, write_report
from .encodings import build_encoding
from .errors import LstmidiError, OutputExistsError
from .modelfile import load_model
from .render import render_all
from .sampling import generate


def prepare(data: list[str | Path] | None, out: str | Path, preset: Preset | None = None,
            cache_dir: Path | None = None, progress: bool = True) -> Corpus:
    """Load, encode, split and cache a corpus (default: bundled Bach chorales); writes OUT/report.json."""

    preset = preset or load_preset("musicgenerator")
    corpus = load_corpus(data, build_encoding(preset.encoding), preset.data, cache_dir=cache_dir,
                         progress=file_progress() if progress else None)
    write_report(corpus, Path(out) / "report.json")
    return corpus


def bundled_model() -> Path:
    """The pretrained flagship model shipped inside the package (see pretrained/README.md)."""
    from importlib import resources

    path = Path(str(resources.files("lstmidi") / "pretrained" / "default.lstmidi"))
    if not path.is_file():
        raise LstmidiError(f"{path}: the bundled model is missing from this installation; pass a model file")
    return path


def output_paths(out: str | Path, num: int) -> list[Path]:
    """OUT.mid for one piece; OUT-1.mid .. OUT-N.mid for several."""
    out = Path(out)
    if out.suffix.lower() not in (".mid", ".midi"):
        out = out.with_suffix(out.suffix + ".mid") if out.suffix else out.with_suffix(".mid")
    if num == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, num + 1)]


def generate_files(model: str | Path | None, out: str | Path, *, num: int = 1, wav: bool = True, png: bool = True,
                   force: bool = False, soundfont: str | None = None, **sample_options) -> list[dict[str, str]]:
    """Generate `num` pieces with the model file `model` (None: the bundled pretrained model) and write
    MIDI (+ WAV + PNG beside each).

    Refuses before writing anything if any output exists and `force` is False.
    `sample_options` go to `lstmidi.sampling.generate` (seconds, steps, seed, primer, temperature, ...).
    """
    paths = output_paths(out, num)
    if not force:
        wanted = [p.with_suffix(ext) for p in paths for ext, on in ((".mid", True), (".wav", wav), (".png", png)) if on]
        existing = [str(p) for p in wanted if p.exists()]
        if existing:
            raise OutputExistsError(f"{', '.join(existing)}: file exists (use --force to overwrite)")
    loaded = load_model(model if model is not None else bundled_model())
    pieces = generate(loaded, num=num, **sample_options)
    written = []
    for piece, path in zip(pieces, paths):
        written.append(render_all(piece.score, path, wav=wav, png=png, primer_seconds=piece.primer_seconds,
                                  soundfont=soundfont, force=force))
    return written


def render_file(midi: str | Path, out: str | Path | None = None, *, wav: bool = True, png: bool = True,
                force: bool = False, soundfont: str | None = None) -> dict[str, str]:
    """Render an existing MIDI file to WAV and/or a piano-roll PNG (beside it, or named after `out`)."""
    from .midi import read_score
    from .render import render_pianoroll_png, render_wav

    score = read_score(midi)
    base = Path(out) if out else Path(midi)
    written = {}
    targets = [(base.with_suffix(".wav"), wav), (base.with_suffix(".png"), png)]
    if not force:
        existing = [str(p) for p, on in targets if on and p.exists()]
        if existing:
            raise OutputExistsError(f"{', '.join(existing)}: file exists (use --force to overwrite)")
    if wav:
        render_wav(score, targets[0][0], soundfont=soundfont, force=force)
        written["wav"] = str(targets[0][0])
    if png:
        render_pianoroll_png(score, targets[1][0], title=Path(midi).name, force=force)
        written["png"] = str(targets[1][0])
    return written


def demo(out: str | Path = "lstmidi-demo", *, minutes: float = 2.0, num: int = 3, seed: int = 0,
         force: bool = False, progress: bool = True):
    """The main job on the bundled defaults, in two parts, written into `out`:
    1. `num` pieces from the bundled pretrained flagship model, at once (out/pretrained-N.mid/.wav/.png);
    2. a short training run of the `musicgenerator` preset on the bundled Bach chorales (`minutes`),
       then `num` pieces from it (out/trained-N.*; the run folder is out/run).
    Returns (train result, files of part 1, files of part 2)."""
    from .training import train

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out}: folder exists (use --force to replace the demo output)")
    started = time.time()
    pretrained = generate_files(None, out / "pretrained.mid", num=num, seed=seed, seconds=30, force=True)
    print(f"pretrained model: {num} pieces in {time.time() - started:.0f} s", file=sys.stderr)
    preset = load_preset("musicgenerator", [f"train.max_minutes={minutes}", "train.epochs=1000"])
    result = train(preset, None, out / "run", force=True, progress=progress,
                   command=f"lstmidi demo --minutes {minutes}")
    trained = generate_files(result.model_path, out / "trained.mid", num=num, seed=seed, force=True)
    print(f"demo finished in {time.time() - started:.0f} s", file=sys.stderr)
    return result, pretrained, trained
