"""The state of one studio server (its runs folder, a cache of loaded models and training-data indexes, the
training job) and what the Generate and Harmonise tabs do with it: pieces through `lstmidi.api.generate_files`,
the measures of a piece, and harmonisations through `lstmidi.api.harmonize_files`."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
import zipfile
from functools import lru_cache
from pathlib import Path

from ..encodings.base import TokenStream
from ..errors import LstmidiError, MidiError
from .uploads import (
    BUNDLED,
    MAX_ITERATIONS,
    MAX_MIDI_BYTES,
    MAX_PIECES,
    MAX_SECONDS,
    MAX_UPLOAD_MB,
    UploadError,
    check_midi_bytes,
    is_zip,
    read_limited,
    safe_name,
    unique_path,
    upload_name,
)


class Studio:
    """The state of one server: its runs folder, loaded models, the training job."""

    def __init__(self, runs: str | Path) -> None:
        self.runs = Path(runs).resolve()
        self.home = self.runs / "_studio"
        for sub in ("data", "models", "generated", "jobs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self._models: dict[str, tuple[float, object]] = {}
        self._indexes: dict[str, object] = {}
        self._lock = threading.Lock()
        self.job = None  # the training job (lstmidi.studio.jobs.TrainJob), one at a time
        self.server_folders = (
            True  # training on a folder of the server; off when the page is reachable from other machines
        )
        self.models_version = 0

    # model list -----------------------------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        """(label, value) for the model dropdowns: the bundled models, then every model file under RUNS."""
        return [
            ("bundled pretrained model (default: chorales)", BUNDLED),
            ("bundled quartet model (instruments 40, 41, 42 or 0)", f"{BUNDLED}:quartets"),
        ] + self._run_models()

    def _run_models(self) -> list[tuple[str, str]]:
        """(label, value) of every model file under RUNS (outside checkpoints/): runs first, then uploads."""
        found = []
        for path in self.runs.rglob("*.lstmidi"):
            rel = path.relative_to(self.runs)
            if "checkpoints" in rel.parts or len(rel.parts) > 5 or any(p.startswith(".") for p in rel.parts):
                continue
            found.append(rel)
        choices = []
        for rel in sorted(found, key=lambda r: (r.parts[0] == "_studio", str(r))):
            label = (
                f"uploaded: {rel.name}"
                if rel.parts[0] == "_studio"
                else (f"run: {rel.parent}" if rel.name == "model.lstmidi" else f"run: {rel}")
            )
            choices.append((label, rel.as_posix()))
        return choices

    def harmonize_choices(self) -> list[tuple[str, str]]:
        """(label, value) for the Harmonise tab's dropdown: the bundled chorale model (said to be missing when
        this installation lacks it), then the four-voice model files under RUNS."""
        from ..api import CHORALE, bundled_path

        missing = "" if bundled_path(CHORALE).is_file() else " — not installed"
        choices = [(f"bundled chorale model (four voices){missing}", f"{BUNDLED}:{CHORALE}")]
        return choices + [(label, value) for label, value in self._run_models() if is_four_voice(self.runs / value)]

    def harmonize_default(self) -> str:
        """The Harmonise tab's model: the bundled chorale model when installed, else the first four-voice model
        under RUNS, else the bundled one (whose absence the page explains)."""
        from ..api import CHORALE, bundled_path

        choices = self.harmonize_choices()
        if bundled_path(CHORALE).is_file() or len(choices) == 1:
            return choices[0][1]
        return choices[1][1]

    def model_path(self, choice: str | None) -> Path:
        """The file of a dropdown value; only the bundled model or a file inside RUNS."""
        from ..api import bundled_model

        if not choice or choice == BUNDLED:
            return bundled_model()
        if choice.startswith(f"{BUNDLED}:"):
            return bundled_model(choice.split(":", 1)[1])
        path = (self.runs / choice).resolve()
        if not path.is_relative_to(self.runs) or path.suffix != ".lstmidi" or not path.is_file():
            raise LstmidiError(f"{choice}: no such model in the runs folder; refresh the model list")
        return path

    def add_uploaded_model(self, upload: str | Path) -> str:
        """Keep an uploaded model file in RUNS/_studio/models after checking it; returns its dropdown value."""
        from ..modelfile import load_model

        path, name = Path(upload), upload_name(upload)
        data_limit = MAX_UPLOAD_MB * 2**20
        if path.stat().st_size > data_limit:
            raise UploadError(f"{name}: too large (the limit is {MAX_UPLOAD_MB} MB)")
        if not is_zip(path):
            raise UploadError(f"{name}: not an lstmidi model file (.lstmidi files are zip archives)")
        target = unique_path(self.home / "models", safe_name(Path(name).stem, "model") + ".lstmidi")
        shutil.copyfile(path, target)
        try:
            load_model(target)
        except LstmidiError as err:
            target.unlink()
            raise UploadError(str(err).replace(str(target), name)) from None
        except Exception as err:  # noqa: BLE001 — a damaged file must never take the page down
            target.unlink()
            raise UploadError(f"{name}: not a usable model file ({type(err).__name__}: {err})") from None
        self.models_version += 1
        return target.relative_to(self.runs).as_posix()

    def load(self, path: Path):
        """LoadedModel of `path`, cached (reloaded when the file changes)."""
        from ..modelfile import load_model

        key, mtime = str(path), path.stat().st_mtime
        with self._lock:
            hit = self._models.get(key)
            if hit and hit[0] == mtime:
                return hit[1]
        loaded = load_model(path)
        with self._lock:
            if len(self._models) >= 3:
                self._models.pop(next(iter(self._models)))
            self._models[key] = (mtime, loaded)
        return loaded

    def training_index(self, path: Path, loaded):
        """NgramIndex of the training split the model was trained on (None when that data is unknown):
        the bundled corpora for the bundled model, the data in the run's config.json for a run."""
        from ..api import model_corpus, model_data, training_index

        key = str(path)
        if key in self._indexes:
            return self._indexes[key]
        index = None
        data = model_data(None, path)  # a bundled model's own corpora, else None
        if data is None:
            config = path.parent / "config.json"
            data = json.loads(config.read_text()).get("data") if config.is_file() else None
            if data is None or any(not Path(d).exists() for d in data):
                data = False
            else:
                data = [Path(d) for d in data] or None  # [] = the bundled Bach chorales
        if data is not False:
            try:
                index = training_index(loaded, model_corpus(loaded, data, progress=False)[1]["train"])
            except LstmidiError:
                index = None
        self._indexes[key] = index
        return index


def generate_pieces(
    studio: Studio,
    *,
    model: str | None,
    model_upload: str | None,
    primer: str | None,
    primer_seconds: float | None,
    seconds: float,
    temperature: float,
    top_p: float,
    key: str | None,
    programs: list[int] | None,
    seed: int,
    num: int,
) -> dict:
    """Generate `num` pieces and write MIDI + WAV + piano roll for each into RUNS/_studio/generated/<id>/.
    Returns {"model": path, "folder": ..., "pieces": [{"midi", "wav", "png"}]} (`lstmidi.api.generate_files`)."""
    from ..api import generate_files
    from ..kinds import kind_of
    from ..options import check_options

    num = int(num)
    if not 1 <= num <= MAX_PIECES:
        raise LstmidiError(f"number of pieces: 1 to {MAX_PIECES}")
    if not 0 < float(seconds) <= MAX_SECONDS:
        raise LstmidiError(f"length: more than 0 and at most {MAX_SECONDS} seconds")
    options = {
        "seconds": float(seconds),
        "seed": int(seed or 0),
        "temperature": float(temperature),
        "top_p": float(top_p),
        "primer_seconds": float(primer_seconds) if primer_seconds else None,
    }
    if key and key != "any":
        options["key"] = key
    if programs:
        options["programs"] = [int(p) for p in programs]
    check_options({"num": num, **options})  # the same checks as the command line, before a model is loaded
    path = studio.model_path(studio.add_uploaded_model(model_upload) if model_upload else model)
    loaded = studio.load(path)
    folder = studio.home / "generated" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    primer_path = None
    if primer:
        name = upload_name(primer)
        data = read_limited(Path(primer), MAX_MIDI_BYTES, name)
        check_midi_bytes(data, name)
        primer_path = folder / "primer.mid"
        primer_path.write_bytes(data)
    options["primer"] = primer_path
    if "top_p" in kind_of(loaded.encoding).refused_options:
        del options["top_p"]  # the page's top-p slider is for note and token models; piano rolls draw each key alone
    if not isinstance(loaded.encoding, TokenStream) and ("key" in options or "programs" in options):
        raise LstmidiError(
            f"key and instruments need an event-token model (preset flagship, like the bundled "
            f"model); this model uses the {loaded.encoding.name!r} encoding: set them to any / none"
        )
    try:
        written = generate_files(loaded, folder / "piece.mid", num=num, **options)
    except MidiError as err:
        raise LstmidiError(str(err).replace(str(primer_path), upload_name(primer) if primer else "primer")) from None
    return {"model": str(path), "folder": str(folder), "pieces": written}


def piece_report(studio: Studio, model: str, midi: str | Path) -> str:
    """Markdown: the quality-gate measures (lstmidi.quality; beside the real and random-pitch figures of
    the model's own gate after training, when its card has them), the musical metrics (lstmidi.metrics)
    and originality (lstmidi.originality) of a piece."""
    from ..metrics import SCALARS, piece_metrics
    from ..midi import read_score
    from ..originality import piece_originality
    from ..quality import MEASURES, harmony

    score = read_score(midi)
    path = Path(model)
    loaded = studio.load(path)
    gate = loaded.config.get("metrics", {}).get("quality", {}).get("rows", {})
    h = harmony(score)
    lines = ["| measure | value |", "|---|---|", f"| key (Krumhansl–Schmuckler) | {h['key']} |"]
    for k, what in MEASURES.items():
        ref = f" (real {gate[k]['real']:.2f}, random pitches {gate[k]['random']:.2f})" if k in gate else ""
        lines.append(f"| {what} | {h[k]:.3g}{ref} |")
    lines += [f"| {SCALARS.get(k, k)} | {v:.3g} |" for k, v in piece_metrics(score).items()]
    index = studio.training_index(path, loaded)
    if index is None:
        lines.append("| originality | unknown: the model's training data is not available here |")
    else:
        o = piece_originality(score, index)
        lines.append(f"| longest run copied from the training data (notes) | {o['longest_copy']:.0f} |")
        share = "n/a (fewer than 8 notes)" if o["ngram8_share"] != o["ngram8_share"] else f"{o['ngram8_share']:.3f}"
        lines.append(f"| share of 8-note n-grams found in the training data | {share} |")
    return "\n".join(lines)


# ---- Harmonise ----------------------------------------------------------------------------------------


def is_four_voice(path: Path) -> bool:
    """Whether a model file is a four-voice model (one that `lstmidi.harmonize` takes: its encoding's kind
    resamples cells in place), read from its config.json alone (size-limited; no weights loaded). Cached by
    the file's size and time; a damaged or foreign file is not one."""
    try:
        info = path.stat()
    except OSError:
        return False
    return _four_voice(str(path), info.st_size, info.st_mtime_ns)


@lru_cache(maxsize=256)
def _four_voice(path: str, _size: int, _mtime: int) -> bool:
    from ..encodings import build_encoding
    from ..kinds import kind_of
    from ..modelfile import CONFIG, LIMITS

    try:
        with zipfile.ZipFile(path) as z:
            member = z.getinfo(CONFIG)
            if member.file_size > LIMITS.max_config_bytes:
                return False
            with z.open(member) as f:
                config = json.loads(f.read(LIMITS.max_config_bytes))
        return kind_of(build_encoding(config["encoding"])).gibbs
    except Exception:  # noqa: BLE001 — anything unreadable is simply not offered
        return False


@lru_cache(maxsize=1)
def held_out_chorales() -> tuple[str, ...]:
    """File names of the bundled Bach chorales in the test split of preset chorale (`lstmidi.corpus.split_of`
    with its fractions): the chorales the bundled chorale model never trained on, sorted."""
    from ..config import load_preset
    from ..corpus import bundled_corpus, find_midi_files, split_of

    data = load_preset("chorale").data
    files = find_midi_files([bundled_corpus("bach")])
    return tuple(rel for _, rel in files if split_of(rel, data.valid_fraction, data.test_fraction) == "test")


def held_out_chorale(name: str) -> Path:
    """The file of a held-out chorale named by `held_out_chorales` (nothing else: no path from the page)."""
    from ..corpus import bundled_corpus

    if name not in held_out_chorales():
        raise LstmidiError(f"{name}: not one of the held-out chorales; choose one from the list")
    return bundled_corpus("bach") / name


def harmonize_pieces(
    studio: Studio,
    *,
    model: str | None,
    melody: str | None,
    chorale: str | None,
    voices: list[str] | None,
    seed: int,
    num: int,
    temperature: float | None,
    iterations: int | None,
) -> dict:
    """Harmonise an uploaded melody (a MIDI file, checked by content) or a held-out chorale (its given voices:
    by default the soprano) with a four-voice model, `num` versions, each written as MIDI (tracks S, A, T, B)
    + WAV + piano roll into RUNS/_studio/generated/<id>/. `temperature` and `iterations` None or 0: the model's
    own. Returns {"model": path, "folder": ..., "source": the melody's name, "chorale": the chorale's name or None,
    "pieces": [{"midi", "wav", "png"}]} (`lstmidi.api.harmonize_files`); every problem is an LstmidiError that
    names no server path."""
    from ..api import CHORALE, bundled_path, harmonize_files
    from ..options import check_options

    num = int(num)
    if not 1 <= num <= MAX_PIECES:
        raise LstmidiError(f"number of versions: 1 to {MAX_PIECES}")
    voices = [v for v in ("S", "A", "T", "B") if v in (voices or [])]
    if not voices:
        raise LstmidiError("given voices: tick at least one of S, A, T, B (the voices taken from the melody)")
    if len(voices) == 4:
        raise LstmidiError("given voices: all four are ticked, so nothing is left to write; untick one or more")
    iterations = int(iterations) if iterations else None
    if iterations is not None and iterations > MAX_ITERATIONS:
        raise LstmidiError(f"iterations: at most {MAX_ITERATIONS} on this page (the command line allows more)")
    options = {"seed": int(seed or 0), "temperature": float(temperature) if temperature else None}
    options["iterations"] = iterations
    check_options({"num": num, **options})  # the same checks as the command line, before a model is loaded
    if melody:
        name = upload_name(melody)
        data = read_limited(Path(melody), MAX_MIDI_BYTES, name)
        check_midi_bytes(data, name)
    elif chorale:
        name, source = chorale, held_out_chorale(chorale)
    else:
        raise LstmidiError("upload a melody (a MIDI file) or choose one of the held-out chorales")
    if model in (None, "", f"{BUNDLED}:{CHORALE}") and not bundled_path(CHORALE).is_file():
        raise LstmidiError(
            "the bundled chorale model is not installed in this lstmidi yet: train one (Train tab, preset "
            "chorale) or upload a four-voice model, then choose it here"
        )
    path = studio.model_path(model or f"{BUNDLED}:{CHORALE}")
    shown = path.relative_to(studio.runs).as_posix() if path.is_relative_to(studio.runs) else path.name
    try:
        loaded = studio.load(path)
    except LstmidiError as err:
        raise LstmidiError(str(err).replace(str(path), shown)) from None
    folder = studio.home / "generated" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    if melody:
        source = folder / "melody.mid"
        source.write_bytes(data)
    try:
        out = folder / f"{Path(name).stem}-harmony.mid"  # e.g. tune-harmony.mid, bwv117.4-harmony.mid
        written = harmonize_files(loaded, source, out, num=num, voices=voices, **options)
    except LstmidiError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise LstmidiError(str(err).replace(str(source), name).replace(str(path), shown)) from None
    chorale = None if melody else name
    return {"model": str(path), "folder": str(folder), "source": name, "chorale": chorale, "pieces": written}


def harmony_report(midi: str | Path, chorale: str | None = None) -> str:
    """Markdown: the quality gate's harmony measures (`lstmidi.quality.harmony`) of a harmonisation, beside those
    of Bach's own harmonisation when the melody is the held-out chorale `chorale`."""
    from ..midi import read_score
    from ..quality import MEASURES, harmony

    ours = harmony(read_score(midi))
    bach = harmony(read_score(held_out_chorale(chorale))) if chorale else None
    lines = ["| measure | this version |" + (" Bach's own |" if bach else ""), "|---|---|" + ("---|" if bach else "")]
    lines.append(f"| key (Krumhansl–Schmuckler) | {ours['key']} |" + (f" {bach['key']} |" if bach else ""))
    for k, what in MEASURES.items():
        lines.append(f"| {what} | {ours[k]:.3g} |" + (f" {bach[k]:.3g} |" if bach else ""))
    return "\n".join(lines)
