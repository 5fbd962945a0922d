"""The public API behind the CLI and the web page: each function is one user-level job."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .config import Preset, load_preset
from .corpus import Corpus, file_progress, load_corpus, refuse_overwrite, write_report
from .encodings import build_encoding
from .encodings.base import TokenStream
from .errors import LstmidiError, OutputExistsError


def prepare(
    data: list[str | Path] | None,
    out: str | Path,
    preset: Preset | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> Corpus:
    """Load, encode, split and cache a corpus (default: bundled Bach chorales); writes OUT/report.json,
    refusing an existing one unless `force`."""
    if Path(out).exists() and not Path(out).is_dir():
        raise LstmidiError(f"{out}: exists and is not a folder")
    refuse_overwrite([Path(out) / "report.json"], force)
    preset = preset or load_preset("musicgenerator")
    corpus = load_corpus(
        data,
        build_encoding(preset.encoding),
        preset.data,
        cache_dir=cache_dir,
        progress=file_progress() if progress else None,
    )
    write_report(corpus, Path(out) / "report.json")
    return corpus


DEFAULT_PRESET = "flagship"  # what `lstmidi train` trains when no preset is named: the quality gate rates it best


def train_overrides(
    sets: list[str] | None = None, epochs: int | None = None, max_minutes: float | None = None
) -> list[str]:
    """`--set key=value` overrides plus --epochs and --max-minutes as train.* overrides."""
    overrides = list(sets or [])
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if max_minutes is not None:
        overrides.append(f"train.max_minutes={max_minutes}")
    return overrides


def training_preset(
    preset: str | None = None, *, init=None, overrides: list[str] = (), where: str | None = None
) -> Preset:
    """The preset a training run uses, with `key=value` `overrides` applied and checked: the preset named
    (configs/NAME.yaml or a YAML path; default: DEFAULT_PRESET), or, with `init` and no preset, the preset
    that model was trained with (fine-tuning keeps the model's encoding). `init` is a model file or a loaded
    model (`lstmidi.modelfile.LoadedModel`); `where` names it in errors (default: its path)."""
    if init is None or preset is not None:
        return load_preset(preset or DEFAULT_PRESET, list(overrides))
    from .config import apply_overrides, validate_preset
    from .modelfile import LoadedModel, load_model

    loaded = init if isinstance(init, LoadedModel) else load_model(init)
    return validate_preset(
        apply_overrides(loaded.preset.model_dump(), list(overrides)),
        where=where or str(init if not isinstance(init, LoadedModel) else loaded.path),
    )


BUNDLED = {  # name -> the bundled corpora the pretrained model was trained on (see pretrained/README.md)
    "default": ("bach",),  # four-part chorales
    "quartets": ("bach", "quartets"),  # string quartets (--programs 40,41,42) and piano (--programs 0)
    "chorale": ("bach",),  # four voices (S, A, T, B): `lstmidi harmonize`, --rewrite
}
CHORALE = "chorale"  # the bundled four-voice model, harmonize's default


def bundled_path(name: str) -> Path:
    """Where the bundled model `name` lies in the package (whether or not it is there)."""
    from importlib import resources

    return Path(str(resources.files("lstmidi") / "pretrained" / f"{name}.lstmidi"))


def bundled_model(name: str = "default") -> Path:
    """A pretrained model shipped inside the package, by name (BUNDLED; see pretrained/README.md)."""
    if name not in BUNDLED:
        raise LstmidiError(f"{name}: no such bundled model (bundled: {', '.join(BUNDLED)})")
    path = bundled_path(name)
    if not path.is_file():
        raise LstmidiError(f"{path}: the bundled model is missing from this installation; pass a model file")
    return path


def model_path(model: str | Path | None) -> Path:
    """The model file a user means: None -> the bundled default; a bundled model's name (e.g. "quartets")
    when no file of that name exists; else the path as given."""
    if model is None:
        return bundled_model()
    if str(model) in BUNDLED and not Path(model).exists():
        return bundled_model(str(model))
    return Path(model)


DEFAULT_STEM = "generated"  # the file name in an output folder: FOLDER/generated.mid


def output_paths(out: str | Path, num: int) -> list[Path]:
    """OUT.mid for one piece; OUT-1.mid .. OUT-N.mid for several. OUT an existing folder or a path ending
    in '/': FOLDER/generated.mid (or generated-1.mid ..) inside it (the folder is made when written)."""
    if str(out).endswith(("/", os.sep)) or Path(out).is_dir():
        out = Path(out) / f"{DEFAULT_STEM}.mid"
    out = Path(out)
    if out.exists() and out.is_dir():
        raise LstmidiError(f"{out}: is a folder; give a file name or the folder itself")
    if out.suffix.lower() not in (".mid", ".midi"):
        out = out.with_suffix(out.suffix + ".mid") if out.suffix else out.with_suffix(".mid")
    if num == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, num + 1)]


def generate_files(
    model,
    out: str | Path,
    *,
    num: int = 1,
    wav: bool = True,
    png: bool = True,
    sheet: bool = False,
    force: bool = False,
    soundfont: str | None = None,
    max_copy: int | None = None,
    copy_data: list[str | Path] | None = None,
    **sample_options,
) -> list[dict[str, str]]:
    """Generate `num` pieces with `model` (a model file, a loaded model (`lstmidi.modelfile.LoadedModel`), or
    None: the bundled pretrained model) and write MIDI (+ WAV + PNG beside each, and with `sheet` (default
    False) sheet music: .musicxml + .svg, `lstmidi.render.render_score`); returns the files of each piece
    ({"midi", "wav", "png", "musicxml", "svg"}, those written).

    Refuses before writing anything if any output exists and `force` is False, or if `sheet` is asked for
    without music21 and verovio (the `score` extra).
    `sample_options` go to `lstmidi.sampling.generate` (seconds, steps, seed, primer, temperature, ...).
    `max_copy`: resample every stretch that repeats more than this many notes of a training piece of
    `copy_data` (see `model_data`; lstmidi.nocopy).
    """
    from .options import check_options

    check_options({"num": num, **sample_options})  # before anything is loaded or written
    if max_copy is not None and (isinstance(max_copy, bool) or not isinstance(max_copy, int) or max_copy < 1):
        raise LstmidiError(f"--max-copy {max_copy!r}: a whole number of notes, at least 1")
    from .sampling import generate

    paths = output_paths(out, num)
    refuse_outputs(paths, wav, png, sheet, force)
    loaded = loaded_model(model)
    if max_copy is None:
        pieces = generate(loaded, num=num, **sample_options)
    else:
        from .nocopy import generate_without_copies

        index = training_index(loaded, model_corpus(loaded, model_data(copy_data, model))[1]["train"])
        pieces, reports = generate_without_copies(loaded, index, max_copy, num=num, **sample_options)
        for path, r in zip(paths, reports):
            print(
                f"{path.name}: longest run copied from the training data {r.longest_copy} notes"
                f" ({r.resampled} stretches resampled)",
                file=sys.stderr,
            )
    return write_pieces(
        [p.score for p in pieces], paths, wav, png, sheet, soundfont, force, [p.primer_seconds for p in pieces]
    )


def refuse_outputs(paths: list[Path], wav: bool, png: bool, sheet: bool, force: bool) -> None:
    """Before anything loads: refuse if a file `write_pieces` would write exists (unless `force`), or if
    sheet music is asked for without music21 and verovio (the `score` extra)."""
    from .render import SCORE_SUFFIXES
    from .sheet import score_libraries

    suffixes = [".mid"] + [".wav"] * wav + [".png"] * png + list(SCORE_SUFFIXES) * sheet
    refuse_overwrite([p.with_suffix(ext) for p in paths for ext in suffixes], force)
    if sheet:
        score_libraries()


def write_pieces(scores, paths, wav, png, sheet, soundfont, force, primer_seconds=None) -> list[dict[str, str]]:
    """Write each Score to its path (MIDI, + WAV, PNG and sheet music beside it; render.render_all),
    warning about empty ones; -> the files of each piece."""
    from .render import render_all

    written = []
    for i, (score, path) in enumerate(zip(scores, paths)):
        if not score.note_num():
            print(
                f"warning: {path}: the model wrote no notes (try another --seed, a longer piece or other options)",
                file=sys.stderr,
            )
        written.append(
            render_all(
                score,
                path,
                wav=wav,
                png=png,
                sheet=sheet,
                primer_seconds=primer_seconds[i] if primer_seconds else 0.0,
                soundfont=soundfont,
                force=force,
            )
        )
    return written


def loaded_model(model):
    """A loaded model (`lstmidi.modelfile.LoadedModel`) as given, else the model file `model_path(model)`
    loaded (torch is imported here, by the functions that need it, so `prepare` starts fast)."""
    from .modelfile import LoadedModel, load_model

    return model if isinstance(model, LoadedModel) else load_model(model_path(model))


def _filled_files(model, out, num, wav, png, sheet, force, soundfont, fill) -> list[dict[str, str]]:
    """`fill(loaded model)` -> the Scores to write to OUT.mid (OUT-1.mid ..), after refusing any output that
    exists (unless `force`) before the model loads."""
    paths = output_paths(out, num)
    refuse_outputs(paths, wav, png, sheet, force)
    return write_pieces(fill(loaded_model(model)), paths, wav, png, sheet, soundfont, force)


def harmonize_files(
    model,
    melody: str | Path,
    out: str | Path,
    *,
    num: int = 1,
    wav: bool = True,
    png: bool = True,
    sheet: bool = False,
    force: bool = False,
    soundfont: str | None = None,
    **options,
) -> list[dict[str, str]]:
    """Harmonise the given voices of `melody` with a four-voice model (lstmidi.harmonize.harmonize: `voices`,
    `track`, `seed`, `temperature`, `iterations`, `parallels`) and write each of the `num` results as MIDI
    with four tracks (S, A, T, B), + WAV + PNG (+ sheet music with `sheet`); refuses before writing anything
    if any output exists and `force` is False."""
    from .harmonize import harmonize

    return _filled_files(
        model, out, num, wav, png, sheet, force, soundfont, lambda loaded: harmonize(loaded, melody, num=num, **options)
    )


def rewrite_files(
    model,
    piece: str | Path,
    bars: tuple[int, int],
    out: str | Path,
    *,
    num: int = 1,
    wav: bool = True,
    png: bool = True,
    sheet: bool = False,
    force: bool = False,
    soundfont: str | None = None,
    **options,
) -> list[dict[str, str]]:
    """Rewrite bars first..last of a four-voice `piece` with a four-voice model (lstmidi.harmonize.rewrite:
    `voices`, `seed`, `temperature`, `iterations`, `parallels`) and write each of the `num` versions as
    MIDI + WAV + PNG."""
    from .harmonize import rewrite

    return _filled_files(
        model,
        out,
        num,
        wav,
        png,
        sheet,
        force,
        soundfont,
        lambda loaded: rewrite(loaded, piece, bars, num=num, **options),
    )


def model_data(data: list[str | Path] | None, model: str | Path | None) -> list[Path] | None:
    """The data a model is measured against: `data` if given; a bundled model's own corpora for a bundled
    model (`model` None, a bundled name or its file); else None (the bundled Bach chorales, as `train`
    defaults to)."""
    if data:
        return [Path(d) for d in data]
    path = model_path(model)
    for name, corpora in BUNDLED.items():
        if path == bundled_path(name):
            from .corpus import bundled_corpus

            return [bundled_corpus(c) for c in corpora]
    return None


def model_corpus(loaded, data: list[Path] | None, *, progress: bool = True):
    """The corpus `data` (from `model_data`) read and split with the model's settings, and its file
    paths by split: (corpus, {split: [Path]})."""
    from .corpus import SPLITS

    corpus = load_corpus(data, loaded.encoding, loaded.preset.data, progress=file_progress() if progress else None)
    return corpus, {s: [Path(r["path"]) for r in corpus.report if r.get("split") == s] for s in SPLITS}


def training_index(loaded, train_paths: list[Path]):
    """NgramIndex of the training files, read with the model's track settings."""
    from .midi import load_score
    from .originality import NgramIndex

    d = loaded.preset.data
    return NgramIndex.build([load_score(p, d.tracks, d.drums) for p in train_paths])


def render_file(
    midi: str | Path,
    out: str | Path | None = None,
    *,
    wav: bool = True,
    png: bool = True,
    sheet: bool = False,
    force: bool = False,
    soundfont: str | None = None,
) -> dict[str, str]:
    """Render an existing MIDI file to WAV and/or a piano-roll PNG and/or sheet music (`sheet`, default False:
    .musicxml + .svg, `lstmidi.render.render_score`), beside it or named after `out` (its suffix replaced).
    Every target is checked before anything is written (OutputExistsError unless `force`); sheet music
    without music21 and verovio installed (the `score` extra) is refused first too. Returns {kind: path}."""
    from .midi import read_score
    from .render import render_pianoroll_png, render_score, render_wav, score_paths
    from .sheet import score_libraries

    score = read_score(midi)
    base = Path(out) if out else Path(midi)
    targets = {"wav": base.with_suffix(".wav"), "png": base.with_suffix(".png"), **score_paths(base)}
    wanted = {"wav": wav, "png": png, "musicxml": sheet, "svg": sheet}
    refuse_overwrite([targets[kind] for kind, on in wanted.items() if on], force)
    if sheet:
        score_libraries()
    written = {}
    if wav:
        render_wav(score, targets["wav"], soundfont=soundfont, force=force)
        written["wav"] = str(targets["wav"])
    if png:
        written["png"] = render_pianoroll_png(score, targets["png"], title=Path(midi).name, force=force)
    if sheet:
        written.update(render_score(score, base, title=Path(midi).stem, force=force))
    return written


def demo(
    out: str | Path = "lstmidi-demo",
    *,
    minutes: float = 2.0,
    num: int = 3,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
):
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
    result = train(
        preset, None, out / "run", force=True, progress=progress, command=f"lstmidi demo --minutes {minutes}"
    )
    trained = generate_files(result.model_path, out / "trained.mid", num=num, seed=seed, force=True)
    print(f"demo finished in {time.time() - started:.0f} s", file=sys.stderr)
    return result, pretrained, trained


def evaluate(
    model: str | Path | None,
    data: list[str | Path] | None = None,
    *,
    num: int = 20,
    seconds: float | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    json_path: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    split: str = "test",
    **sampling,
) -> dict:
    """Measure a model file (None: the bundled pretrained model) against held-out music.

    The corpus under `data` (default: the bundled model's training corpora for the bundled model, else the
    bundled Bach chorales) is read with the model's data settings
    and split as in training. The held-out pieces are those of `split`: "test" (default; the validation
    split when the test split is empty), "valid", or "held-out" (both). Computed: the model's NLL on
    them, per step and per note; `num` pieces generated with `seed`, `seconds` long
    (default: the model's sample.seconds), without primer; the musical metrics (lstmidi.metrics) of the
    generated pieces and of the held-out pieces cut to their first `seconds`, with each metric's overlap
    area and KL divergence; the originality (lstmidi.originality) of both sets against the training split;
    the quality gate (lstmidi.quality: key fit, in-scale share, consonance, tonic endings, polyphony and the
    tell-apart score of the generated pieces against the held-out pieces' last `seconds` and a random-pitch
    control); for token models, the held-out NLL by token type. `sampling`: more options of
    `sampling.generate` for the generated pieces (e.g. programs=[0], temperature=0.9).
    Writes OUT/report.md with PNG plots and the generated MIDI files in OUT/generated/ (OUT default:
    `<model stem>-eval`), and the figures as JSON to `json_path` if given. Refuses a non-empty OUT or an
    existing `json_path` unless `force`. Returns the figures (as in the JSON). Progress goes to stderr.
    """
    from .corpus import SPLITS, atomic_write_text
    from .evaluation import held_out_nll, to_json, token_type_nll
    from .evaluation import write_report as write_evaluation
    from .metrics import DURATION_LABELS, compare_sets, mean_histograms
    from .midi import load_score
    from .modelfile import load_model
    from .originality import set_originality
    from .quality import first_seconds, gate, last_seconds
    from .render import write_midi
    from .sampling import generate

    started = time.time()
    say = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)  # noqa: E731
    path = model_path(model)
    out = Path(out) if out is not None else Path(f"{path.stem}-eval")
    if out.exists() and not out.is_dir():
        raise LstmidiError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out}: folder exists and is not empty (use --force to overwrite)")
    if json_path is not None:
        refuse_overwrite([json_path], force)
    from .options import check_options

    check_options({"num": num, "seconds": seconds, "seed": seed})  # before the model and the corpus are read
    loaded = load_model(path)
    seconds = seconds if seconds is not None else loaded.preset.sample.seconds
    d = loaded.preset.data
    data = model_data(data, model)
    where = ", ".join(map(str, data)) if data else "the bundled Bach chorales"
    corpus, paths = model_corpus(loaded, data, progress=progress)
    if split not in ("test", "valid", "held-out"):
        raise LstmidiError(f"--split {split!r}: use test, valid or held-out")
    if split == "test" and not corpus.pieces["test"]:
        split = "valid"
    if split == "held-out":
        corpus.pieces[split] = corpus.pieces["test"] + corpus.pieces["valid"]
        paths[split] = paths["test"] + paths["valid"]
    if not corpus.pieces[split]:
        raise LstmidiError(
            f"{where}: every usable file falls in the training split; evaluation needs held-out "
            "(test or validation) files: add files"
        )
    trained_on = loaded.config.get("corpus", {}).get("pieces")
    if trained_on and trained_on != corpus.summary["pieces"]:
        say(
            f"warning: {where} splits into {corpus.summary['pieces']} pieces, the model was trained on {trained_on}: "
            "the NLL is held-out only if the model never saw these files"
        )
    real = [load_score(p, d.tracks, d.drums) for p in paths[split]]
    say(f"held-out NLL on {len(real)} {split} pieces ...")
    notes = sum(s.note_num() for s in real)
    nll = held_out_nll(loaded, corpus.pieces[split], notes)
    stream = isinstance(loaded.encoding, TokenStream)  # event tokens: by token type, and miditok's grammar check
    if stream:
        nll["by_type"] = token_type_nll(loaded, corpus.pieces[split], notes)
    say(f"generating {num} pieces of {seconds:g} s (seed {seed}) ...")
    pieces = generate(loaded, seconds=seconds, num=num, seed=seed, include_primer=False, **sampling)
    generated = [p.score for p in pieces]
    endings = [last_seconds(s, seconds) for s in real]
    real = [first_seconds(s, seconds) for s in real]
    say(f"musical metrics, and originality against {len(paths['train'])} training pieces ...")
    index = training_index(loaded, paths["train"])
    results = {
        "model": str(path),
        "encoding": loaded.encoding.name,
        "data": where,
        "corpus": {s: len(corpus.pieces[s]) for s in SPLITS},
        "held_out": {"split": split, "pieces": len(real), "seconds": seconds},
        "generated": {
            "pieces": num,
            "seconds": seconds,
            "seed": seed,
            "sampling": {k: v for k, v in sampling.items() if v is not None},
            "music_seconds": [float(g.to("second").end()) for g in generated],
            "token_errors": sum(loaded.encoding.token_errors(p.frames) for p in pieces) if stream else None,
        },
        "nll": nll,
        "quality": gate(generated, endings, seed),
        "metrics": compare_sets(generated, real),
        "histograms": {
            "generated": mean_histograms(generated),
            "real": mean_histograms(real),
            "duration_bins": list(DURATION_LABELS),
        },
        "originality": {
            "training_pieces": index.pieces,
            "generated": set_originality(generated, index),
            "real": set_originality(real, index),
        },
    }
    for i, score in enumerate(generated, 1):
        write_midi(score, out / "generated" / f"generated-{i:02d}.mid", force=True)
    results["seconds"] = round(time.time() - started, 1)
    results["report"] = str(write_evaluation(results, out))
    if json_path is not None:
        atomic_write_text(Path(json_path), to_json(results))
    say(f"evaluation finished in {results['seconds']:.0f} s")
    return results
