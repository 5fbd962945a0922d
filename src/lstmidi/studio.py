"""lstmidi studio: a web page (Gradio) to generate, listen, look and train — a thin layer over the public API.

`lstmidi serve` calls `serve()`. Gradio is imported only inside `build_app()`/`serve()`, so the rest of
lstmidi never depends on it (install it with the `studio` extra).

The runs folder (`--runs`, default ./lstmidi-runs) holds everything the page writes:
    RUNS/<run>/                     training runs (the `lstmidi train` run folder: model.lstmidi, loss.png, ...)
    RUNS/_studio/data/<run>/        the MIDI files uploaded for that run (sanitised names)
    RUNS/_studio/models/            uploaded model files
    RUNS/_studio/generated/<id>/    generated pieces: MIDI, WAV, piano roll, MusicXML, sheet-music SVG
    RUNS/_studio/jobs/<run>.*       the training job: its log, progress (JSON) and live loss curve
Every model file under RUNS (outside checkpoints/) is offered in Generate beside the bundled model.

Safety: uploads are limited in size and count; names are reduced to a safe basename; files are checked
by content (MIDI: an MThd header that lstmidi's reader finds; zip archives: size, count and compression
ratio limits before anything is extracted, only MIDI members kept; models: a zip that `load_model`
accepts); one training job at a time (a child process, so it can be cancelled); generation requests are
queued one at a time; errors become a message in the page (the traceback, if any, goes to the server log);
the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LstmidiError, MidiError

# ---- limits -------------------------------------------------------------------------------------------
MAX_UPLOAD_MB = 64                 # any single upload (Gradio refuses bigger ones before they reach us)
MAX_MIDI_BYTES = 16 * 2**20        # one MIDI file (= lstmidi.midi.Limits.max_bytes)
MAX_FILES = 200                    # MIDI files per training run (uploaded, or found inside zips)
MAX_TOTAL_BYTES = 128 * 2**20      # all MIDI files of one training run, uncompressed
MAX_ZIP_MEMBERS = 2000             # entries in one zip archive
MAX_ZIP_RATIO = 100                # uncompressed / compressed size of any zip entry
MAX_PIECES = 4                     # pieces per Generate request
MAX_SECONDS = 180                  # length of a generated piece
SHEET_PAGES = 3                    # sheet-music pages shown per piece
PROGRAMS = [("piano (0)", 0), ("violin (40)", 40), ("viola (41)", 41), ("cello (42)", 42), ("drums (-1)", -1)]
KEYS = ["any"] + [f"{t} {m}" for m in ("major", "minor")
                  for t in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")]
BUNDLED = "bundled"
RESERVED = {"_studio", "checkpoints", "logs"}


class UploadError(LstmidiError):
    """An upload that is refused (wrong kind of content, too large, too many files, a zip bomb)."""


# ---- file names and uploads ---------------------------------------------------------------------------

def safe_name(name: str, default: str = "file", max_len: int = 80) -> str:
    """A harmless file name from an untrusted one: its last path component (either slash), NFKC-normalised,
    only letters, digits, '.', '-', '_' (others become '_'), no leading dots, at most `max_len` characters."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", str(name)))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    base = re.sub(r"_+", "_", base).strip("_ ")
    if len(base) > max_len:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: max_len - len(ext) - 1] + "." + ext) if dot and len(ext) <= 8 else base[:max_len]
    return base if base and base not in (".", "..") else default


def run_name(text: str | None, preset: str) -> str:
    """The run folder name asked for (sanitised), or PRESET-YYYYmmdd-HHMMSS."""
    name = safe_name(text or "", default="", max_len=60).removesuffix(".lstmidi")
    if not name:
        name = f"{safe_name(Path(preset).stem)}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name in RESERVED:
        raise LstmidiError(f"{name!r} is reserved; choose another run name")
    return name


def _unique(folder: Path, name: str) -> Path:
    path, stem, suffix, n = folder / name, Path(name).stem, Path(name).suffix, 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def upload_name(path: str | Path) -> str:
    """The name the user gave an uploaded file (Gradio keeps it as the temp file's basename), sanitised."""
    return safe_name(Path(path).name)


def _read_limited(path: Path, limit: int, name: str) -> bytes:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise UploadError(f"{name}: not a regular file")
    if info.st_size > limit:
        raise UploadError(f"{name}: too large ({info.st_size / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB)")
    with path.open("rb") as f:
        return f.read(limit + 1)


def check_midi_bytes(data: bytes, name: str):
    """The tick Score of MIDI bytes, read as lstmidi reads files (by content, leniently); UploadError when
    the bytes are not MIDI at all, MidiError when they are MIDI that cannot be used."""
    from .midi import read_score_bytes

    try:
        return read_score_bytes(data, name).score
    except MidiError as err:
        if "not a MIDI file" in str(err) or "empty file" in str(err):
            raise UploadError(f"{name}: not a MIDI file — only MIDI files (.mid, any name: the content is "
                              "checked), zip archives of MIDI files and .lstmidi models are accepted") from None
        raise


def is_zip(data_or_path: bytes | Path) -> bool:
    if isinstance(data_or_path, bytes):
        head = data_or_path[:4]
    else:
        with Path(data_or_path).open("rb") as f:
            head = f.read(4)
    return head in (b"PK\x03\x04", b"PK\x05\x06")


@dataclass
class Staged:
    """MIDI files copied into a folder for training, and what was left out of the archives."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, name: str, data: bytes) -> None:
        if len(self.files) >= MAX_FILES:
            raise UploadError(f"too many MIDI files (the limit is {MAX_FILES} per run)")
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise UploadError(f"the MIDI files are too large together (the limit is {MAX_TOTAL_BYTES / 2**20:g} MB)")
        if not Path(name).suffix.lower() in (".mid", ".midi", ".kar", ".rmi"):
            name += ".mid"  # the corpus reader searches folders by suffix; the content was checked already
        target = _unique(self.folder, name)
        target.write_bytes(data)
        self.files.append(target)


def stage_uploads(uploads: list[str | Path], folder: Path) -> Staged:
    """Copy uploaded MIDI files and the MIDI files inside uploaded zip archives into `folder` (created),
    checking every limit; raises UploadError naming the file. Non-MIDI entries of a zip are skipped and
    listed in `ignored`; a non-MIDI upload is refused."""
    if len(uploads) > MAX_FILES:
        raise UploadError(f"too many files ({len(uploads)}; the limit is {MAX_FILES} per run)")
    folder.mkdir(parents=True, exist_ok=True)
    staged = Staged(folder)
    for upload in uploads:
        path, name = Path(upload), upload_name(upload)
        if is_zip(path):
            _stage_zip(path, name, staged)
            continue
        data = _read_limited(path, MAX_MIDI_BYTES, name)
        check_midi_bytes(data, name)
        staged.add(name, data)
    if not staged.files:
        raise UploadError("no MIDI files among the uploads")
    return staged


def _stage_zip(path: Path, name: str, staged: Staged) -> None:
    """The MIDI members of a zip archive, refusing zip bombs before extracting anything."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise UploadError(f"{name}: too many entries ({len(infos)}; the limit is {MAX_ZIP_MEMBERS})")
            if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
                raise UploadError(f"{name}: refused: it would unpack to more than {MAX_TOTAL_BYTES / 2**20:g} MB")
            for info in infos:
                if info.file_size > 1024 and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                    raise UploadError(f"{name}: refused: {safe_name(info.filename)} is compressed "
                                      f"{info.file_size / max(info.compress_size, 1):.0f}:1 (a zip bomb?)")
            found = 0
            for info in infos:
                member = "_".join(safe_name(p) for p in re.split(r"[\\/]", info.filename) if p not in ("", ".", ".."))
                if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
                    continue
                if info.flag_bits & 0x1:
                    staged.ignored.append(f"{name}/{member}: encrypted")
                    continue
                if info.file_size > MAX_MIDI_BYTES:
                    staged.ignored.append(f"{name}/{member}: too large")
                    continue
                with zf.open(info) as f:
                    data = f.read(MAX_MIDI_BYTES + 1)  # never more than the limit, whatever the header says
                if len(data) > MAX_MIDI_BYTES or len(data) > info.file_size:
                    raise UploadError(f"{name}: refused: {member} unpacks larger than its header says")
                try:
                    check_midi_bytes(data, member)
                except UploadError:
                    staged.ignored.append(f"{name}/{member}: not MIDI")
                    continue
                except MidiError:
                    pass  # MIDI that the corpus report will show as skipped, with the reason
                staged.add(member or "member.mid", data)
                found += 1
            if not found:
                raise UploadError(f"{name}: no MIDI files in this zip archive")
    except zipfile.BadZipFile as err:
        raise UploadError(f"{name}: damaged zip archive ({err})") from None
    except (RuntimeError, NotImplementedError, EOFError, OSError) as err:  # unsupported compression, ...
        raise UploadError(f"{name}: cannot read this zip archive ({err})") from None


# ---- models ---------------------------------------------------------------------------------------------

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
        self.job: TrainJob | None = None
        self.server_folders = True  # training on a folder of the server; off when the page is reachable from other machines
        self.models_version = 0

    # model list -----------------------------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        """(label, value) for the model dropdowns: the bundled model, then every model file under RUNS."""
        choices = [("bundled pretrained model (default)", BUNDLED)]
        found = []
        for path in self.runs.rglob("*.lstmidi"):
            rel = path.relative_to(self.runs)
            if "checkpoints" in rel.parts or len(rel.parts) > 5 or any(p.startswith(".") for p in rel.parts):
                continue
            found.append(rel)
        for rel in sorted(found, key=lambda r: (r.parts[0] == "_studio", str(r))):
            label = f"uploaded: {rel.name}" if rel.parts[0] == "_studio" else (
                f"run: {rel.parent}" if rel.name == "model.lstmidi" else f"run: {rel}")
            choices.append((label, rel.as_posix()))
        return choices

    def model_path(self, choice: str | None) -> Path:
        """The file of a dropdown value; only the bundled model or a file inside RUNS."""
        from .api import bundled_model

        if not choice or choice == BUNDLED:
            return bundled_model()
        path = (self.runs / choice).resolve()
        if not path.is_relative_to(self.runs) or path.suffix != ".lstmidi" or not path.is_file():
            raise LstmidiError(f"{choice}: no such model in the runs folder; refresh the model list")
        return path

    def add_uploaded_model(self, upload: str | Path) -> str:
        """Keep an uploaded model file in RUNS/_studio/models after checking it; returns its dropdown value."""
        from .modelfile import load_model

        path, name = Path(upload), upload_name(upload)
        data_limit = MAX_UPLOAD_MB * 2**20
        if path.stat().st_size > data_limit:
            raise UploadError(f"{name}: too large (the limit is {MAX_UPLOAD_MB} MB)")
        if not is_zip(path):
            raise UploadError(f"{name}: not an lstmidi model file (.lstmidi files are zip archives)")
        target = _unique(self.home / "models", safe_name(Path(name).stem, "model") + ".lstmidi")
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
        from .modelfile import load_model

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
        from .api import bundled_model, model_corpus, model_data, training_index

        key = str(path)
        if key in self._indexes:
            return self._indexes[key]
        index = None
        if path == bundled_model():
            data = model_data(None, bundled=True)
        else:
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


# ---- generation -----------------------------------------------------------------------------------------

def generate_pieces(studio: Studio, *, model: str | None, model_upload: str | None, primer: str | None,
                    primer_seconds: float | None, seconds: float, temperature: float, top_p: float,
                    key: str | None, programs: list[int] | None, seed: int, num: int) -> dict:
    """Generate `num` pieces and write MIDI + WAV + piano roll for each into RUNS/_studio/generated/<id>/.
    Returns {"model": path, "folder": ..., "pieces": [{"midi", "wav", "png", "primer_seconds"}]}."""
    from .render import render_all
    from .sampling import generate

    from .options import check_options

    num = int(num)
    if not 1 <= num <= MAX_PIECES:
        raise LstmidiError(f"number of pieces: 1 to {MAX_PIECES}")
    if not 0 < float(seconds) <= MAX_SECONDS:
        raise LstmidiError(f"length: more than 0 and at most {MAX_SECONDS} seconds")
    options = {"seconds": float(seconds), "num": num, "seed": int(seed or 0), "temperature": float(temperature),
               "top_p": float(top_p), "primer_seconds": float(primer_seconds) if primer_seconds else None}
    if key and key != "any":
        options["key"] = key
    if programs:
        options["programs"] = [int(p) for p in programs]
    check_options(options)  # the same checks as the command line, before a model is loaded
    path = studio.model_path(studio.add_uploaded_model(model_upload) if model_upload else model)
    loaded = studio.load(path)
    folder = studio.home / "generated" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    primer_path = None
    if primer:
        name = upload_name(primer)
        data = _read_limited(Path(primer), MAX_MIDI_BYTES, name)
        check_midi_bytes(data, name)
        primer_path = folder / "primer.mid"
        primer_path.write_bytes(data)
    event_model = hasattr(loaded.encoding, "eos")
    options["primer"] = primer_path
    if loaded.encoding.kind == "multihot":
        del options["top_p"]  # the page's top-p slider is for note and token models; piano rolls draw each key alone
    if not event_model and ("key" in options or "programs" in options):
        raise LstmidiError(f"key and instruments need an event-token model (preset default, like the bundled "
                           f"model); this model uses the {loaded.encoding.name!r} encoding: set them to any / none")
    try:
        pieces = generate(loaded, **options)
    except MidiError as err:
        raise LstmidiError(str(err).replace(str(primer_path), upload_name(primer) if primer else "primer")) from None
    written = []
    for i, piece in enumerate(pieces, 1):
        files = render_all(piece.score, folder / f"piece-{i}.mid", primer_seconds=piece.primer_seconds)
        written.append({**files, "primer_seconds": piece.primer_seconds})
    return {"model": str(path), "folder": str(folder), "pieces": written}


def sheet_music(midi: str | Path, pages: int = SHEET_PAGES) -> tuple[list[Path], Path]:
    """MusicXML (music21) and SVG pages (verovio) of a MIDI file, beside it: ([page SVGs], MusicXML path).
    Raises whatever music21 or verovio raise."""
    import music21
    import verovio

    midi = Path(midi)
    xml = midi.with_suffix(".musicxml")
    music21.converter.parse(str(midi), format="midi", quantizePost=True).write("musicxml", fp=str(xml))
    toolkit = verovio.toolkit()
    toolkit.setOptions({"pageWidth": 2100, "pageHeight": 2970, "scale": 40, "adjustPageHeight": True,
                        "footer": "none", "header": "none"})
    if not toolkit.loadFile(str(xml)):
        raise LstmidiError("verovio could not read the MusicXML")
    svgs = []
    for page in range(1, min(toolkit.getPageCount(), pages) + 1):
        svg = midi.with_name(f"{midi.stem}-sheet-{page}.svg")
        svg.write_text(toolkit.renderToSVG(page))
        svgs.append(svg)
    if not svgs:
        raise LstmidiError("verovio produced no page")
    return svgs, xml


def piece_report(studio: Studio, model: str, midi: str | Path) -> str:
    """Markdown: the quality-gate measures (lstmidi.quality; beside the real and random-pitch figures of
    the model's own gate after training, when its card has them), the musical metrics (lstmidi.metrics)
    and originality (lstmidi.originality) of a piece."""
    from .metrics import SCALARS, piece_metrics
    from .midi import read_score
    from .originality import piece_originality
    from .quality import MEASURES, harmony

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


# ---- training -------------------------------------------------------------------------------------------

@dataclass
class TrainJob:
    name: str
    run_dir: Path
    process: subprocess.Popen
    progress: Path
    log: Path
    curve: Path
    started: float = field(default_factory=time.time)
    status: str = "running"          # running / finished / failed / cancelled
    ended: float | None = None
    message: str = ""
    plotted: int = -1                # progress points in the last loss-curve picture

    def read(self) -> dict:
        try:
            return json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return {}


def start_training(studio: Studio, *, uploads: list[str] | None, folder: str | None, preset: str,
                   init: str | None, epochs: int | None, max_minutes: float | None, settings: str | None,
                   name: str | None) -> tuple[TrainJob, dict]:
    """Check the request, stage the data, and start `lstmidi.training.train` in a child process.
    Returns the job and the corpus inspection (lstmidi.inspection) of its data."""
    from .config import apply_overrides, load_preset, validate_preset
    from .inspection import inspect_files

    if studio.job is not None and studio.job.status == "running":
        raise LstmidiError(f"a training run ({studio.job.name}) is in progress: one at a time; wait or cancel it")
    overrides = [line.strip() for line in (settings or "").splitlines() if line.strip() and not line.strip().startswith("#")]
    if epochs:
        overrides.append(f"train.epochs={int(epochs)}")
    if max_minutes:
        overrides.append(f"train.max_minutes={float(max_minutes)}")
    init_path = studio.model_path(init) if init and init != "none" else None
    if init_path is not None:
        chosen = validate_preset(apply_overrides(studio.load(init_path).preset.model_dump(), overrides), where=init_path.name)
    else:
        if preset not in _preset_names():
            raise LstmidiError(f"{preset!r}: unknown preset; choose one of {', '.join(_preset_names())}")
        chosen = load_preset(preset, overrides)
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
    spec = {"preset": chosen.model_dump(), "data": [str(d) for d in data], "out": str(run_dir),
            "init": str(init_path) if init_path else None, "progress": str(jobs / f"{name}.json"),
            "command": f"lstmidi serve (studio): train {name}"}
    spec_path = jobs / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    log = jobs / f"{name}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "lstmidi.studio", "train-job", str(spec_path)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    studio.job = TrainJob(name, run_dir, process, Path(spec["progress"]), log, jobs / f"{name}-loss.png")
    return studio.job, inspection


def _preset_names() -> list[str]:
    from .config import preset_names

    return preset_names()


def _training_data(studio: Studio, uploads: list[str] | None, folder: str | None, name: str) -> list[Path]:
    if uploads:
        return [stage_uploads(uploads, _unique(studio.home / "data", name)).folder]
    if folder and folder.strip():
        if not studio.server_folders:
            raise LstmidiError("training on a server folder is only offered when the studio listens on localhost; upload the files")
        path = Path(folder.strip()).expanduser()
        if not path.is_dir():
            raise LstmidiError(f"{folder}: no such folder on the server")
        return [path.resolve()]
    raise LstmidiError("upload MIDI files (or a zip of them) or give a folder on the server")


def inspect_uploads(studio: Studio, uploads: list[str] | None, folder: str | None, preset: str) -> dict:
    """The corpus inspection of uploads (staged into a scratch folder) or a server folder, before training."""
    from .config import DataConfig, load_preset
    from .inspection import inspect_files

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
        rows.append([e["name"], e["status"], e["tracks"] if e["tracks"] is not None else "",
                     ",".join(map(str, e["instruments"] or [])), e["notes"] if e["notes"] is not None else "",
                     f"{e['duration']:.1f}" if e["duration"] is not None else "", e["reason"]])
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
        lines.append(f"epoch {progress.get('epoch', 0)} of {progress['epochs']}, batch {progress.get('batch', 0)} "
                     f"of {progress.get('batches', '?')}" + (f", loss {progress['loss']:.4f}" if progress.get("loss") is not None else ""))
    elif job.status == "running":
        lines.append("starting: loading the libraries, reading the corpus, building the model …")
    if job.status == "finished":
        lines.append(f"model: `{Path(progress.get('model', '')).relative_to(studio.runs) if progress.get('model') else ''}` — "
                     "now in Generate's model list" + (f"; {progress['summary']}" if progress.get("summary") else ""))
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    steps = progress.get("steps", [])
    if steps:
        ax.plot([s for s, _ in steps], [v for _, v in steps], lw=1, alpha=0.6, label="training loss (batch)")
    hist = progress.get("history", [])
    if hist:
        ax.plot([h["step"] for h in hist], [h["train_loss"] for h in hist], "o-", label="training loss (epoch)")
        if any("val_loss" in h for h in hist):
            ax.plot([h["step"] for h in hist if "val_loss" in h], [h["val_loss"] for h in hist if "val_loss" in h],
                    "s-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel(progress.get("unit", "loss"))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def train_job(spec_path: str | Path) -> int:
    """The child process of a training job: `lstmidi.training.train` with progress written to a JSON file
    (status, epoch, batch, loss, per-step losses, epoch history; at the end the model or the error)."""
    import lightning as L

    from . import training
    from .config import validate_preset

    spec = json.loads(Path(spec_path).read_text())
    progress_path = Path(spec["progress"])
    state: dict = {"status": "running", "steps": [], "history": [], "started": time.time()}
    last_write = [0.0]

    def write(force: bool = False) -> None:
        if force or time.time() - last_write[0] > 0.5:
            state["seconds"] = round(time.time() - state["started"], 1)
            _write_json(progress_path, state)
            last_write[0] = time.time()

    class Progress(L.Callback):  # reports to the page through the progress file
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
            state.update(epoch=trainer.current_epoch + 1, epochs=trainer.max_epochs, batch=batch_idx + 1,
                         batches=trainer.num_training_batches, loss=value)
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
        result = training.train(preset, spec["data"] or None, spec["out"], init=spec.get("init"),
                                command=spec.get("command"), progress=False, callbacks=[Progress()])
        m = result.metrics
        state.update(status="finished", model=str(result.model_path), unit=m.get("unit", "loss"),
                     summary=f"validation loss {m['valid_loss']:.3f} {m.get('unit', '')} after {result.epochs} "
                             f"epochs in {result.seconds:.0f} s")
        write(force=True)
        return 0
    except LstmidiError as err:
        state.update(status="failed", error=str(err))
    except Exception as err:  # noqa: BLE001 — reported in the page; the traceback goes to the job's log
        traceback.print_exc()
        state.update(status="failed", error=f"{type(err).__name__}: {err}")
    write(force=True)
    return 1


# ---- the page -------------------------------------------------------------------------------------------

def _page_errors(fn):
    """Run a handler; LstmidiError (and any other exception) becomes a message in the page, not a traceback."""
    import functools

    import gradio as gr

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except LstmidiError as err:
            raise gr.Error(str(err), duration=None) from None
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            raise gr.Error(f"unexpected error: {type(err).__name__}: {err}", duration=None) from None

    return wrapped


def _file_url(path: str | Path) -> str:
    return "gradio_api/file=" + str(Path(path).resolve())


CSS = """
.sheet-music { max-height: 520px; overflow: auto; background: white; border: 1px solid #ddd; padding: 4px; }
.sheet-music img { width: 100%; display: block; }
"""


def build_app(studio: Studio):
    """The Gradio Blocks of the studio."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from .config import preset_names

    with gr.Blocks(title="lstmidi studio", analytics_enabled=False) as app:
        gr.Markdown("# lstmidi studio\nGenerate music with an LSTM model, listen to it, look at it — or train "
                    "one on your own MIDI files.")
        models_seen = gr.State(studio.models_version)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        model = gr.Dropdown(studio.model_choices(), value=BUNDLED, label="model", elem_id="gen-model")
                        model_upload = gr.File(label="…or upload a model (.lstmidi)", type="filepath", elem_id="gen-model-upload", height=130)
                        primer = gr.File(label="primer MIDI to continue (optional)", type="filepath", elem_id="gen-primer", height=130)
                        primer_seconds = gr.Number(0, label="use the primer's first seconds (0: all of it)", minimum=0, elem_id="gen-primer-seconds")
                    with gr.Column(scale=1):
                        seconds = gr.Slider(5, MAX_SECONDS, value=20, step=1, label="length (seconds of new music)", elem_id="gen-seconds")
                        temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="temperature (> 1 bolder, < 1 safer)", elem_id="gen-temperature")
                        top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.01, label="top-p (event models)", elem_id="gen-top-p")
                        key = gr.Dropdown(KEYS, value="any", label="key (event models)", elem_id="gen-key")
                        programs = gr.CheckboxGroup(PROGRAMS, label="instruments (none ticked: the model's choice)", elem_id="gen-programs")
                        with gr.Row():
                            seed = gr.Number(0, precision=0, label="seed", elem_id="gen-seed")
                            num = gr.Slider(1, MAX_PIECES, value=1, step=1, label="pieces", elem_id="gen-num")
                generate_button = gr.Button("Generate", variant="primary", elem_id="gen-button")
                gen_status = gr.Markdown(elem_id="gen-status")
                slots = []
                for i in range(1, MAX_PIECES + 1):
                    with gr.Column(visible=False, elem_id=f"piece-{i}") as box:
                        gr.Markdown(f"### Piece {i}")
                        audio = gr.Audio(type="filepath", interactive=False, label=f"piece {i}", elem_id=f"piece-{i}-audio",
                                         waveform_options=gr.WaveformOptions(show_recording_waveform=False), buttons=["download"])  # the browser's player
                        with gr.Row():
                            roll = gr.Image(type="filepath", interactive=False, label="piano roll (primer shaded)", elem_id=f"piece-{i}-roll", buttons=["download", "fullscreen"])
                            files = gr.File(file_count="multiple", interactive=False, label="downloads", elem_id=f"piece-{i}-files")
                        sheet = gr.HTML(elem_id=f"piece-{i}-sheet")
                        metrics = gr.Markdown(elem_id=f"piece-{i}-metrics")
                    slots.append((box, audio, roll, files, sheet, metrics))
                result_state = gr.State(None)

            with gr.Tab("Train", id="train"):
                gr.Markdown("Upload MIDI files (or a zip of them), or name a folder on this server; the corpus report "
                            "shows how every file reads. Then train: a new model from a preset, or fine-tune a model.")
                with gr.Row():
                    with gr.Column():
                        train_files = gr.File(file_count="multiple", type="filepath", label="MIDI files or zip archives",
                                              elem_id="train-files")
                        train_folder = gr.Textbox(label="…or a folder on the server", placeholder="/path/to/midi",
                                                  elem_id="train-folder")
                        check_button = gr.Button("Check files", elem_id="train-check")
                    with gr.Column():
                        preset = gr.Dropdown(preset_names(), value="musicgenerator", label="preset", elem_id="train-preset")
                        init = gr.Dropdown([("none: train a new model", "none")] + studio.model_choices(), value="none",
                                           label="fine-tune from (keeps the model's preset and tokenizer)", elem_id="train-init")
                        with gr.Row():
                            epochs = gr.Number(5, precision=0, minimum=1, label="epochs", elem_id="train-epochs")
                            max_minutes = gr.Number(10, minimum=0, label="at most minutes", elem_id="train-minutes")
                        settings = gr.Textbox(lines=3, label="more settings (one section.key=value per line)",
                                              placeholder="model.hidden=128\ntrain.lr=0.001", elem_id="train-settings")
                        name = gr.Textbox(label="run name (empty: preset and time)", elem_id="train-name")
                with gr.Row():
                    start_button = gr.Button("Start training", variant="primary", elem_id="train-start")
                    cancel_button = gr.Button("Cancel training", variant="stop", elem_id="train-cancel")
                report_summary = gr.Markdown(elem_id="train-report-summary")
                report = gr.Dataframe(headers=REPORT_HEADERS, interactive=False, label="corpus report (per file)",
                                      elem_id="train-report", wrap=True)
                train_status = gr.Markdown("No training run yet.", elem_id="train-status")
                curve = gr.Image(type="filepath", interactive=False, label="loss curve", elem_id="train-curve", buttons=["download"])
                timer = gr.Timer(1.0)

        # ---- Generate ----
        @_page_errors
        def on_generate(model_v, upload_v, primer_v, primer_s, seconds_v, temp_v, top_p_v, key_v, programs_v, seed_v, num_v):
            started = time.time()
            result = generate_pieces(studio, model=model_v, model_upload=upload_v, primer=primer_v,
                                     primer_seconds=primer_s, seconds=seconds_v, temperature=temp_v, top_p=top_p_v,
                                     key=key_v, programs=programs_v, seed=seed_v, num=num_v)
            pieces = result["pieces"]
            out = [(f"{len(pieces)} piece{'s' if len(pieces) > 1 else ''} from `{Path(result['model']).name}` "
                    f"in {time.time() - started:.1f} s; sheet music and measures follow.")]
            for i, (box, *_rest) in enumerate(slots):
                if i < len(pieces):
                    p = pieces[i]
                    out += [gr.Column(visible=True), p["wav"], p["png"], [p["midi"], p["wav"]],
                            "<p><i>sheet music: rendering …</i></p>", ""]
                else:
                    out += [gr.Column(visible=False), None, None, None, "", ""]
            return out + [result]

        @_page_errors
        def on_details(result):
            if not result:
                return [gr.skip()] * (3 * MAX_PIECES + 1)
            out = []
            for i in range(MAX_PIECES):
                if i >= len(result["pieces"]):
                    out += [gr.skip(), gr.skip(), gr.skip()]
                    continue
                midi = result["pieces"][i]["midi"]
                downloads = gr.skip()
                try:
                    svgs, xml = sheet_music(midi)
                    downloads = [midi, result["pieces"][i]["wav"], str(xml)]
                    html = "<div class='sheet-music'>" + "".join(
                        f"<img alt='sheet music page {k}' src='{_file_url(s)}'>" for k, s in enumerate(svgs, 1)) + "</div>"
                except Exception as err:  # noqa: BLE001 — music21/verovio fail on some pieces: say so, keep the rest
                    html = (f"<p class='sheet-error'><b>Sheet music could not be rendered for this piece</b> "
                            f"({type(err).__name__}: {str(err)[:200]}). The MIDI, audio and piano roll are fine.</p>")
                try:
                    metrics_md = piece_report(studio, result["model"], midi)
                except Exception as err:  # noqa: BLE001
                    traceback.print_exc()
                    metrics_md = f"measures could not be computed: {type(err).__name__}: {err}"
                out += [html, metrics_md, downloads]
            return out + [gr.skip()]

        gen_inputs = [model, model_upload, primer, primer_seconds, seconds, temperature, top_p, key, programs, seed, num]
        gen_outputs = [gen_status] + [c for slot in slots for c in slot] + [result_state]
        detail_outputs = [c for slot in slots for c in (slot[4], slot[5], slot[3])] + [gen_status]
        generate_button.click(on_generate, gen_inputs, gen_outputs, concurrency_limit=1, concurrency_id="generate",
                              api_name=False).then(
            on_details, result_state, detail_outputs, concurrency_limit=1, concurrency_id="details", api_name=False,
            show_progress="hidden")

        @_page_errors
        def on_primer(path):
            if not path:
                return ""
            name = upload_name(path)
            score = check_midi_bytes(_read_limited(Path(path), MAX_MIDI_BYTES, name), name)
            from .midi import score_seconds

            return f"primer `{name}`: {score.note_num()} notes, {score_seconds(score):.1f} s"

        primer.upload(on_primer, primer, gen_status, api_name=False)

        @_page_errors
        def on_model_upload(path):
            if not path:
                return gr.skip(), gr.skip(), gr.skip()
            value = studio.add_uploaded_model(path)
            choices = studio.model_choices()
            return gr.Dropdown(choices=choices, value=value), None, f"model `{upload_name(path)}` added to the list"

        model_upload.upload(on_model_upload, model_upload, [model, model_upload, gen_status], api_name=False)

        # ---- Train ----
        @_page_errors
        def on_check(files_v, folder_v, preset_v):
            if not files_v and not (folder_v or "").strip():
                return "", None
            result = inspect_uploads(studio, files_v, folder_v, preset_v)
            from .corpus import count_line

            s = result["summary"]
            return f"**corpus report**: {s['files']} files: {count_line(s)}", report_rows(result)

        train_files.upload(on_check, [train_files, train_folder, preset], [report_summary, report], api_name=False)
        check_button.click(on_check, [train_files, train_folder, preset], [report_summary, report], api_name=False)

        @_page_errors
        def on_start(files_v, folder_v, preset_v, init_v, epochs_v, minutes_v, settings_v, name_v):
            job, inspection = start_training(studio, uploads=files_v, folder=folder_v, preset=preset_v, init=init_v,
                                             epochs=epochs_v, max_minutes=minutes_v, settings=settings_v, name=name_v)
            from .corpus import count_line

            s = inspection["summary"]
            return (f"**corpus report**: {s['files']} files: {count_line(s)}", report_rows(inspection),
                    f"**Run `{job.name}`: starting** …")

        start_button.click(on_start, [train_files, train_folder, preset, init, epochs, max_minutes, settings, name],
                           [report_summary, report, train_status], concurrency_limit=1, concurrency_id="train",
                           api_name=False)
        cancel_button.click(_page_errors(lambda: cancel_job(studio)), None, train_status, api_name=False)

        def on_tick(seen, current_model, current_init):
            text, picture, _done = poll_job(studio)
            if seen != studio.models_version:
                choices = studio.model_choices()
                values = {v for _, v in choices}
                return (text, picture if picture else gr.skip(), studio.models_version,
                        gr.Dropdown(choices=choices, value=current_model if current_model in values else BUNDLED),
                        gr.Dropdown(choices=[("none: train a new model", "none")] + choices,
                                    value=current_init if current_init in values else "none"))
            return text, picture if picture else gr.skip(), seen, gr.skip(), gr.skip()

        timer.tick(on_tick, [models_seen, model, init], [train_status, curve, models_seen, model, init],
                   show_progress="hidden", concurrency_limit=None, api_name=False)
    return app


def serve(host: str = "127.0.0.1", port: int = 7860, runs: str | Path = "lstmidi-runs") -> None:
    """Start the studio on http://HOST:PORT (blocks until interrupted)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise LstmidiError("lstmidi serve needs Gradio: pip install 'lstmidi[studio]'") from None
    studio = Studio(runs)
    studio.server_folders = host in ("127.0.0.1", "localhost", "::1")
    app = build_app(studio)
    app.queue(default_concurrency_limit=1, max_size=32)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # system fonts: nothing fetched from a CDN
    print(f"lstmidi studio: runs folder {studio.runs}", file=sys.stderr)
    try:
        app.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False,
                   max_file_size=f"{MAX_UPLOAD_MB}mb", allowed_paths=[str(studio.home / "generated"), str(studio.home / "jobs")],
                   theme=theme, css=CSS, footer_links=[], quiet=False)
    finally:
        if studio.job is not None and studio.job.status == "running":
            cancel_job(studio)


if __name__ == "__main__":  # python -m lstmidi.studio train-job SPEC.json: the child process of a training job
    if len(sys.argv) == 3 and sys.argv[1] == "train-job":
        sys.exit(train_job(sys.argv[2]))
    sys.exit("usage: python -m lstmidi.studio train-job SPEC.json (started by lstmidi serve)")
