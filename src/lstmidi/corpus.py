"""A corpus: MIDI files found under folders, loaded in parallel, encoded, split and cached.

Every file ends in the per-file report as `loaded` (read as it is), `recovered` (read after repairs:
the reason says how, see lstmidi.midi) or `skipped` (the reason says why); loaded and recovered files
get their split and length. A file whose parsing crashes its worker process (native code) is skipped
as "parser crashed" and the others still load. The split is deterministic: a hash of the file's path
relative to the folder it was found in, so adding files never moves the others. Encoded arrays are
cached, keyed by the files' relative paths and contents (a hash of their bytes: no parsing, a few ms
for the bundled corpus) plus the encoding and data settings, so a second `prepare` is instant and any
change to a file, even one that keeps its size and modification time, is seen. A cache also lists a key
per file (its bytes, the encoding and the reading settings): when the files change, those that an earlier
cache in the same folder holds are taken from it, and only the added or changed ones are parsed and encoded.

The cache holds, per split, all pieces end to end in one .npy file plus their offsets; it is opened
memory-mapped, so a corpus's pieces are read-only views into the file (`Corpus.concatenated` gives the
whole split without a copy) and memory does not grow with the corpus. The first load returns the same
kind of pieces (it reopens what it wrote), unless the cache could not be written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .config import DataConfig
from .encodings import Encoding, build_encoding
from .errors import LstmidiError, MidiError, OutputExistsError
from .files import atomic_path, atomic_write_text, default_cache_dir  # atomic_write_text: also public here
from .midi import LIMITS, MIDI_SUFFIXES, load_score, read_score_lenient, select_tracks

SPLITS = ("train", "valid", "test")
CACHE_VERSION = 6  # bump when loading or encoding changes what a file turns into, or the cache's format
CHUNK = 16  # files per task sent to a worker process
PARSER_CRASHED = "parser crashed"  # the reason of a file whose worker process died reading it


def bundled_corpus(name: str = "bach") -> Path:
    """Folder of a corpus shipped inside the package (default: the Bach chorales)."""
    return Path(str(resources.files("lstmidi") / "corpora" / name))


@dataclass
class Corpus:
    """Encoded pieces by split, their names, and the per-file report."""

    pieces: dict[str, list[np.ndarray]]
    names: dict[str, list[str]]
    report: list[dict]
    manifest_hash: str
    encoding: Encoding | None = None  # fitted when the encoding learns from the corpus (bins, vocabulary)
    cached: bool = False
    summary: dict = field(default_factory=dict)
    # split -> (its pieces end to end along time, offsets): set when the pieces are views into one array
    flat: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    # per report entry: what its file turns into is keyed by (bytes, settings); later corpora reuse its array
    file_keys: list[str] = field(default_factory=list, repr=False)

    def total_steps(self, split: str) -> int:
        return int(sum(len(p) for p in self.pieces[split]))

    def concatenated(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`concatenate` of the pieces of `split`; from the cache this is the read-only memory map itself
        (no copy)."""
        return self.flat[split] if split in self.flat else concatenate(self.pieces[split])


def piece_offsets(pieces: list[np.ndarray]) -> np.ndarray:
    """(pieces + 1,) int64: where each piece starts when they are laid end to end, then the total."""
    return np.cumsum([0, *(len(p) for p in pieces)], dtype=np.int64)


def concatenate(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(the pieces end to end along time, `piece_offsets`): piece i is data[offsets[i]:offsets[i + 1]];
    no pieces give a (0,) uint8 array."""
    return (np.concatenate(pieces) if pieces else np.zeros((0,), np.uint8)), piece_offsets(pieces)


def find_midi_files(paths: list[str | Path]) -> list[tuple[Path, str]]:
    """(absolute path, name relative to the folder it was found in) for every MIDI file, sorted."""
    found: list[tuple[Path, str]] = []
    for root in map(Path, paths):
        if root.is_file():
            found.append((root.resolve(), root.name))
        elif root.is_dir():
            found += sorted(_midi_files_under(root.resolve()), key=lambda item: item[1].split("/"))
        else:
            raise LstmidiError(f"{root}: no such file or folder")
    if not found:
        raise LstmidiError(f"no MIDI files ({', '.join(MIDI_SUFFIXES)}) found in: {', '.join(map(str, paths))}")
    return found


def _midi_files_under(folder: Path, rel: str = "") -> list[tuple[Path, str]]:
    """(absolute path, name relative to the top folder) of the MIDI files in the resolved `folder` and its
    subfolders, as `rglob` finds them (folders behind symbolic links are not entered; a linked file is
    resolved), with one scandir per folder and no call per file."""
    found = []
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:  # unreadable, or gone since
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found += _midi_files_under(folder / entry.name, f"{rel}{entry.name}/")
        elif os.path.splitext(entry.name)[1].lower() in MIDI_SUFFIXES and entry.is_file():
            path = folder / entry.name
            found.append((path.resolve() if entry.is_symlink() else path, rel + entry.name))
    return found


def split_of(relpath: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split from a hash of the relative path."""
    u = int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "valid" if u < test_fraction + valid_fraction else "train"


@lru_cache(maxsize=4)
def _encoding_from_json(spec: str) -> Encoding:
    """One encoding per worker process (building one can be costly: miditok makes its vocabulary)."""
    return build_encoding(json.loads(spec))


def _load_one(args: tuple[str, str, dict]) -> tuple[np.ndarray | None, str]:
    """Worker: parse + encode one file -> (array, how it was recovered or '') or (None, why it was skipped)."""
    path, enc_json, data_dict = args
    try:
        score, note, _ = read_score_lenient(path)
        score = select_tracks(score, data_dict["tracks"], data_dict["drums"], source=path)
        array = _encoding_from_json(enc_json).encode(score)
    except MidiError as err:
        return None, str(err).split(": ", 1)[-1]
    except Exception as err:  # a bug or an unexpected file must not stop the whole corpus
        return None, f"{type(err).__name__}: {err}"
    if len(array) < 2:
        return None, "too short to train on (fewer than 2 steps)"
    return array, note


def map_files(fn: Callable, jobs: list, workers: int, progress: Callable[[int, int], None] | None = None) -> list:
    """[fn(job) for job in jobs] (fn must not raise), in `workers` processes when there are more than 32
    jobs, else in this process; None for a job whose worker process crashed (see _map_parallel)."""
    if workers > 1 and len(jobs) > 32:
        return _map_parallel(fn, jobs, workers, progress)
    results = []
    for job in jobs:
        results.append(fn(job))
        if progress:
            progress(len(results), len(jobs))
    return results


def _map_chunk(fn: Callable, jobs: list) -> list:
    return [fn(job) for job in jobs]


def _map_isolated(fn: Callable, job):
    """fn(job) in a process of its own: None if that process crashes."""
    # imported here (and in _map_parallel): a cached load starts no process and need not import them
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(1) as pool:
        try:
            return pool.submit(fn, job).result()
        except BrokenProcessPool:
            return None


def _map_parallel(fn: Callable, jobs: list, workers: int, progress: Callable[[int, int], None] | None) -> list:
    """fn over `jobs` in `workers` processes, CHUNK jobs per task, results in job order.

    When a worker dies (a segfault in native code), the pool breaks and every task still running
    fails with it: those jobs run again one per process, so only the job that crashes gets None; the
    jobs not yet started go to a fresh pool.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    results: list = [None] * len(jobs)
    todo = deque(range(i, min(i + CHUNK, len(jobs))) for i in range(0, len(jobs), CHUNK))
    suspects: list[int] = []
    done = 0

    def finish(i: int, result) -> None:
        nonlocal done
        results[i] = result
        done += 1
        if progress:
            progress(done, len(jobs))

    while todo:
        with ProcessPoolExecutor(workers) as pool:
            running: dict = {}
            broken = False
            while (todo or running) and not broken:
                while todo and len(running) < 2 * workers:  # a bounded window: a crash leaves few suspects
                    chunk = todo.popleft()
                    running[pool.submit(_map_chunk, fn, [jobs[i] for i in chunk])] = chunk
                ready, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in ready:
                    chunk = running.pop(future)
                    if future.exception() is None:
                        for i, result in zip(chunk, future.result()):
                            finish(i, result)
                    else:  # BrokenProcessPool: fn itself never raises
                        broken = True
                        suspects.extend(chunk)
            for future, chunk in running.items():
                if future.done() and future.exception() is None:
                    for i, result in zip(chunk, future.result()):
                        finish(i, result)
                else:
                    suspects.extend(chunk)
    for i in suspects:
        finish(i, _map_isolated(fn, jobs[i]))
    return results


def _manifest_hash(
    files: list[tuple[Path, str]], encoding: Encoding, data: DataConfig, digests: list[str] | None = None
) -> str:
    """The cache key: cache version, encoding and data settings (but not `workers`, which changes
    nothing), and every file's relative path and content digest (`digests`, else read here), in order."""
    h = hashlib.sha256()
    settings = [CACHE_VERSION, encoding.cache_key(), data.model_dump(exclude={"workers"})]
    h.update(json.dumps(settings, sort_keys=True).encode())
    digests = digests or [file_digest(path) for path, _ in files]
    for (_, rel), digest in zip(files, digests):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()[:20]


def _file_keys(digests: list[str], enc_json: str, data: DataConfig) -> list[str]:
    """Per-file cache keys: what one file turns into depends on its bytes, the (fitted) encoding and the
    reading settings (tracks, drums), not on its name, its split or the other files."""
    settings = json.dumps([CACHE_VERSION, enc_json, data.tracks, data.drums], sort_keys=True)
    common = hashlib.sha256(settings.encode()).hexdigest()
    return [hashlib.sha256(f"{common}\0{d}".encode()).hexdigest()[:24] for d in digests]


def _cached_files(cache_dir: Path, wanted: set[str]) -> dict[str, tuple[np.ndarray | None, str]]:
    """{file key: (array, recovery note) or (None, why it was skipped)} for the `wanted` files that the corpus
    caches in `cache_dir` hold (newest first; caches written before file keys existed are passed over).
    Arrays are read-only views into the cached splits; a file whose parser crashed is not taken."""
    found: dict[str, tuple[np.ndarray | None, str]] = {}
    try:
        metas = sorted(cache_dir.glob("corpus-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return found
    for meta_path in metas:
        if len(found) == len(wanted):
            break
        try:
            meta = json.loads(meta_path.read_text())
            keys, report = meta.get("file_keys") or [], meta["report"]
            if len(keys) != len(report) or not (wanted - found.keys()).intersection(keys):
                continue
            arrays_paths, _ = _cache_paths(cache_dir, meta_path.name.removeprefix("corpus-").removesuffix(".json"))
            data: dict[str, np.ndarray] = {}
            index = {s: 0 for s in SPLITS}
            for key, entry in zip(keys, report):
                if entry["status"] == "skipped":
                    if key in wanted and entry["reason"] != PARSER_CRASHED:
                        found.setdefault(key, (None, entry["reason"]))
                    continue
                split, k = entry["split"], index[entry["split"]]
                index[split] += 1
                if key in wanted and key not in found:
                    if split not in data:
                        data[split] = np.load(arrays_paths[split], mmap_mode="r").view(np.ndarray)
                    a, b = meta["offsets"][split][k : k + 2]
                    found[key] = (data[split][a:b], entry["reason"])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # a damaged cache is only not used
    return found


def file_digest(path: Path) -> str:
    """A hash of the file's bytes (BLAKE2b, 128 bits). A file over the reader's size limit is skipped
    unread whatever it holds, so its size stands for its content; an unreadable file gives its error."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > LIMITS.max_bytes:
            return f"{stat.S_IFMT(info.st_mode)} {info.st_size} bytes"  # never read: no waiting on a pipe
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError as err:
        return f"error {err.errno}"


def load_corpus(
    paths: list[str | Path] | None,
    encoding: Encoding,
    data: DataConfig | None = None,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Corpus:
    """Find, parse, encode and split the MIDI files under `paths` (default: the bundled Bach chorales).

    Raises LstmidiError if no file could be used; otherwise skipped files are only reported.
    `progress(done, total)` is called as files finish.
    """
    data = DataConfig() if data is None else data
    files = find_midi_files(list(paths) if paths else [bundled_corpus()])
    digests = [file_digest(path) for path, _ in files]
    key = _manifest_hash(files, encoding, data, digests)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = _read_cache(cache_dir, key, files)
    if cached is not None:
        return cached
    if encoding.needs_fit and not encoding.is_fitted:
        encoding = fit_encoding(encoding, files, data)

    # Files that an earlier corpus cache in this folder holds (same bytes, same settings) are taken from it:
    # after files are added or changed, only those are parsed and encoded.
    enc_json = json.dumps(encoding.to_dict(), sort_keys=True)
    file_keys = _file_keys(digests, enc_json, data)
    known = _cached_files(cache_dir, set(file_keys))
    results = [known.get(k) for k in file_keys]
    missing = [i for i, r in enumerate(results) if r is None]
    jobs = [(str(files[i][0]), enc_json, data.model_dump()) for i in missing]
    workers = data.workers or os.cpu_count() or 1
    have = len(files) - len(missing)
    report_progress = (lambda done, total: progress(have + done, have + total)) if progress and jobs else progress
    for i, r in zip(missing, map_files(_load_one, jobs, workers, report_progress)):
        results[i] = (None, PARSER_CRASHED) if r is None else r

    pieces = {s: [] for s in SPLITS}
    names = {s: [] for s in SPLITS}
    report = []
    for (path, rel), (array, reason) in zip(files, results):
        if array is None:
            report.append({"path": str(path), "name": rel, "status": "skipped", "reason": reason})
            continue
        split = split_of(rel, data.valid_fraction, data.test_fraction)
        pieces[split].append(array)
        names[split].append(rel)
        report.append(
            {
                "path": str(path),
                "name": rel,
                "status": "recovered" if reason else "loaded",
                "reason": reason,
                "split": split,
                "steps": len(array),
            }
        )
    if not pieces["train"]:
        raise LstmidiError(
            f"no usable training files among {len(files)} found "
            f"({sum(r['status'] == 'skipped' for r in report)} skipped; first reason: "
            f"{next((r['name'] + ': ' + r['reason'] for r in report if r['status'] == 'skipped'), 'none')})"
        )
    corpus = Corpus(pieces, names, report, key, encoding, file_keys=file_keys)
    corpus.summary = summarize(corpus)
    _write_cache(cache_dir, corpus)
    mapped = _read_cache(cache_dir, key, files)
    if mapped is not None:  # the same memory-mapped pieces a cached load gives
        corpus.pieces, corpus.flat = mapped.pieces, mapped.flat
    return corpus


def fit_encoding(encoding: Encoding, files: list[tuple[Path, str]], data: DataConfig) -> Encoding:
    """Fit `encoding` (bins, vocabulary) on the training split only, so held-out files stay unseen."""
    scores = []
    for path, rel in files:
        if split_of(rel, data.valid_fraction, data.test_fraction) != "train":
            continue
        try:
            scores.append(load_score(path, data.tracks, data.drums))
        except MidiError:
            continue  # reported when the corpus is encoded
    if not scores:
        raise LstmidiError(f"encoding {encoding.name!r} must be fitted, but no training file could be read")
    return encoding.fit(scores)


def summarize(corpus: Corpus) -> dict:
    """Counts of files by status (loaded, recovered, skipped; skipped also by kind of reason), pieces and
    steps by split, and the reason of every recovered and skipped file."""
    return {
        "files": len(corpus.report),
        **status_counts(corpus.report),
        "pieces": {s: len(corpus.pieces[s]) for s in SPLITS},
        "steps": {s: corpus.total_steps(s) for s in SPLITS},
        "recovered_files": {r["name"]: r["reason"] for r in corpus.report if r["status"] == "recovered"},
        "skipped_files": {r["name"]: r["reason"] for r in corpus.report if r["status"] == "skipped"},
    }


def count_line(summary: dict) -> str:
    """'8 loaded, 2 recovered, 1 skipped': the file counts of a summary."""
    return f"{summary['loaded']} loaded, {summary['recovered']} recovered, {summary['skipped']} skipped"


def status_counts(report: list[dict]) -> dict:
    """{'loaded': n, 'recovered': n, 'skipped': n, 'skipped_by_reason': {kind: n}} for per-file report entries;
    the kind of a reason is its text before any details in parentheses ("truncated MIDI file")."""
    statuses = Counter(r["status"] for r in report)
    kinds = Counter(r["reason"].split(" (", 1)[0] for r in report if r["status"] == "skipped")
    return {
        "loaded": statuses["loaded"],
        "recovered": statuses["recovered"],
        "skipped": statuses["skipped"],
        "skipped_by_reason": dict(kinds.most_common()),
    }


def write_report(corpus: Corpus, path: Path) -> None:
    """Write the summary and per-file report as JSON (atomically)."""
    atomic_write_text(Path(path), json.dumps({"summary": corpus.summary, "files": corpus.report}, indent=1))


def refuse_overwrite(paths, force: bool = False) -> None:
    """Raise before anything is written: OutputExistsError naming the files of `paths` that exist (unless
    `force`), LstmidiError for one that is a folder."""
    paths = [Path(p) for p in paths]
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise LstmidiError(f"{', '.join(folders)}: is a folder, not a file")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise OutputExistsError(f"{', '.join(existing)}: file exists (use --force to overwrite)")


def _cache_paths(cache_dir: Path, key: str) -> tuple[dict[str, Path], Path]:
    """The cache files of a key: one .npy per split, and the JSON (names, offsets, report, encoding)
    written last, so a cache is complete when its JSON exists."""
    return {s: cache_dir / f"corpus-{key}.{s}.npy" for s in SPLITS}, cache_dir / f"corpus-{key}.json"


def _write_cache(cache_dir: Path, corpus: Corpus) -> None:
    """Each split's pieces end to end in one .npy file (written piece by piece: no second copy in
    memory), then the JSON; each file is written to a temporary name and renamed. Pieces of one corpus
    share a dtype and all but their first (time) axis; if they do not, nothing is cached."""
    arrays_paths, meta_path = _cache_paths(cache_dir, corpus.manifest_hash)
    every = [p for s in SPLITS for p in corpus.pieces[s]]
    if not every or any(p.dtype != every[0].dtype or p.shape[1:] != every[0].shape[1:] for p in every):
        return
    dtype, inner = every[0].dtype, every[0].shape[1:]
    offsets = {}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for split, path in arrays_paths.items():
            pieces = corpus.pieces[split]
            offsets[split] = piece_offsets(pieces).tolist()
            with atomic_path(path) as tmp, tmp.open("wb") as f:  # (not flushed to disk: a cache need not be durable)
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
                np.lib.format.write_array_header_1_0(f, {**header, "shape": (offsets[split][-1], *inner)})
                for piece in pieces:
                    f.write(np.ascontiguousarray(piece, dtype).data)
        atomic_write_text(
            meta_path,
            json.dumps(
                {
                    "names": corpus.names,
                    "offsets": offsets,
                    "report": corpus.report,
                    "summary": corpus.summary,
                    "encoding": corpus.encoding.to_dict(),
                    "file_keys": corpus.file_keys,
                }
            ),
        )
    except OSError:
        pass  # a cache we cannot write only costs time next run


def _read_cache(cache_dir: Path, key: str, files: list[tuple[Path, str]]) -> Corpus | None:
    """The cached corpus of `key` with its pieces as views into the memory-mapped split files, or None
    (missing or damaged: it is rebuilt). The report's paths are those of `files` (the key holds only the
    paths relative to their folder, so the same files elsewhere share the cache)."""
    arrays_paths, meta_path = _cache_paths(cache_dir, key)
    try:
        meta = json.loads(meta_path.read_text())
        pieces, flat = {}, {}
        for split, path in arrays_paths.items():
            offsets = np.asarray(meta["offsets"][split], np.int64)
            if len(offsets) != len(meta["names"][split]) + 1:
                return None
            data = np.load(path, mmap_mode="r") if offsets[-1] else np.load(path)
            if len(data) != offsets[-1]:
                return None
            data = data.view(np.ndarray)  # a plain array over the map: slices of it stay plain arrays
            flat[split] = data, offsets
            pieces[split] = [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        report = meta["report"]
        if len(report) != len(files):
            return None
        for entry, (path, _) in zip(report, files):
            entry["path"] = str(path)
        encoding = build_encoding(meta["encoding"])
    except (OSError, ValueError, KeyError, TypeError, LstmidiError):
        return None  # a damaged cache is rebuilt
    return Corpus(pieces, meta["names"], report, key, encoding, cached=True, summary=meta["summary"], flat=flat)


def file_progress() -> Callable[[int, int], None]:
    """A `progress(done, total)` callback that shows a Rich progress bar while files are read."""
    from rich.progress import Progress

    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = Progress(transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task("reading MIDI files", total=total)
        state["bar"].update(state["task"], completed=done)
        if done == total:
            state.pop("bar").stop()

    return update
