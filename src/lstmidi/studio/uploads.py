"""The studio's limits and uploads: safe file names, MIDI files and zip archives checked by content, with
size, count and compression-ratio limits before anything is extracted."""

from __future__ import annotations

import re
import stat
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LstmidiError, MidiError

# ---- limits -------------------------------------------------------------------------------------------
MAX_UPLOAD_MB = 64  # any single upload (Gradio refuses bigger ones before they reach us)
MAX_MIDI_BYTES = 16 * 2**20  # one MIDI file (= lstmidi.midi.Limits.max_bytes)
MAX_FILES = 200  # MIDI files per training run (uploaded, or found inside zips)
MAX_TOTAL_BYTES = 128 * 2**20  # all MIDI files of one training run, uncompressed
MAX_ZIP_MEMBERS = 2000  # entries in one zip archive
MAX_ZIP_RATIO = 100  # uncompressed / compressed size of any zip entry
MAX_PIECES = 4  # pieces per Generate request
MAX_SECONDS = 180  # length of a generated piece
MAX_ITERATIONS = 100  # Gibbs sweeps per Harmonise request (the command line allows 1000)
PROGRAMS = [("piano (0)", 0), ("violin (40)", 40), ("viola (41)", 41), ("cello (42)", 42), ("drums (-1)", -1)]
KEYS = ["any"] + [
    f"{t} {m}" for m in ("major", "minor") for t in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
]
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


def unique_path(folder: Path, name: str) -> Path:
    """folder/name, or folder/name-2, -3 ... when that exists."""
    path, stem, suffix, n = folder / name, Path(name).stem, Path(name).suffix, 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def upload_name(path: str | Path) -> str:
    """The name the user gave an uploaded file (Gradio keeps it as the temp file's basename), sanitised."""
    return safe_name(Path(path).name)


def read_limited(path: Path, limit: int, name: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (UploadError naming it otherwise)."""
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
    from ..midi import read_score_bytes

    try:
        return read_score_bytes(data, name).score
    except MidiError as err:
        if "not a MIDI file" in str(err) or "empty file" in str(err):
            raise UploadError(
                f"{name}: not a MIDI file — only MIDI files (.mid, any name: the content is "
                "checked), zip archives of MIDI files and .lstmidi models are accepted"
            ) from None
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
        if Path(name).suffix.lower() not in (".mid", ".midi", ".kar", ".rmi"):
            name += ".mid"  # the corpus reader searches folders by suffix; the content was checked already
        target = unique_path(self.folder, name)
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
        data = read_limited(path, MAX_MIDI_BYTES, name)
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
                    raise UploadError(
                        f"{name}: refused: {safe_name(info.filename)} is compressed "
                        f"{info.file_size / max(info.compress_size, 1):.0f}:1 (a zip bomb?)"
                    )
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
