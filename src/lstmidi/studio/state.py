"""The state of one studio server (its runs folder, a cache of loaded models and training-data indexes, the
training job) and what the Generate tab does with it: pieces through `lstmidi.api.generate_files`, and the
measures of a piece."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

from ..encodings.base import TokenStream
from ..errors import LstmidiError, MidiError
from .uploads import (
    BUNDLED,
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
        choices = [
            ("bundled pretrained model (default: chorales)", BUNDLED),
            ("bundled quartet model (instruments 40, 41, 42 or 0)", f"{BUNDLED}:quartets"),
        ]
        found = []
        for path in self.runs.rglob("*.lstmidi"):
            rel = path.relative_to(self.runs)
            if "checkpoints" in rel.parts or len(rel.parts) > 5 or any(p.startswith(".") for p in rel.parts):
                continue
            found.append(rel)
        for rel in sorted(found, key=lambda r: (r.parts[0] == "_studio", str(r))):
            label = (
                f"uploaded: {rel.name}"
                if rel.parts[0] == "_studio"
                else (f"run: {rel.parent}" if rel.name == "model.lstmidi" else f"run: {rel}")
            )
            choices.append((label, rel.as_posix()))
        return choices

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
