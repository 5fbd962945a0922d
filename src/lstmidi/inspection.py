"""`lstmidi inspect`: how every MIDI file under some folders reads, and what it holds, without encoding.

Per file: `name` (relative to the folder it was found in), `path`, `status` (loaded / recovered /
skipped, decided as `prepare` decides it, with the same track and drum settings; only `prepare`'s
"too short to train on" needs the encoding and is not checked here), `reason` (how it was recovered
or why it was skipped; '' when loaded) and, for every file that could be parsed (also one skipped for
its tracks, e.g. drums only): `format` (0, 1 or 2), `tracks` (tracks with notes: one per MIDI track,
channel and program), `instruments` (GM programs of the pitched tracks), `drums` (any drum notes),
`notes`, `duration` (seconds), `tempo_changes` (tempo events after the start that change the tempo)
and `time_signature` (the first one, e.g. "3/4"; None if the file has none).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from symusic import Score

from .config import DataConfig
from .corpus import PARSER_CRASHED, count_line, find_midi_files, map_files, status_counts
from .errors import MidiError
from .midi import read_score_lenient, score_seconds, select_tracks

FIELDS = ("format", "tracks", "instruments", "drums", "notes", "duration", "tempo_changes", "time_signature")


def inspect_files(
    paths: list[str | Path], data: DataConfig | None = None, progress: Callable[[int, int], None] | None = None
) -> dict:
    """{'summary': {files, loaded, recovered, skipped, skipped_by_reason}, 'files': [per-file entries]} for
    the MIDI files under `paths` (see the module doc), read in `data.workers` processes (`data`: default
    DataConfig())."""
    data = DataConfig() if data is None else data
    files = find_midi_files(paths)
    jobs = [(str(path), name, data.tracks, data.drums) for path, name in files]
    results = map_files(inspect_file, jobs, data.workers or os.cpu_count() or 1, progress)
    entries = [_entry(job[0], job[1], "skipped", PARSER_CRASHED) if r is None else r for job, r in zip(jobs, results)]
    return {"summary": {"files": len(entries), **status_counts(entries)}, "files": entries}


def inspect_file(job: tuple[str, str, str | int, bool]) -> dict:
    """The entry of one file: job = (path, name, tracks, drums) as in DataConfig; never raises."""
    path, name, tracks, drums = job
    try:
        score, note, fmt = read_score_lenient(path)
    except MidiError as err:
        return _entry(path, name, "skipped", str(err).split(": ", 1)[-1])
    except Exception as err:  # a bug or an unexpected file must not stop the inspection
        return _entry(path, name, "skipped", f"{type(err).__name__}: {err}")
    entry = _entry(path, name, "recovered" if note else "loaded", note) | describe(score, fmt)
    try:
        select_tracks(score, tracks, drums, source=path)
    except MidiError as err:
        entry.update(status="skipped", reason=str(err).split(": ", 1)[-1])
    return entry


def describe(score: Score, fmt: int) -> dict:
    """The content fields of a tick Score read from a file of format `fmt` (see the module doc)."""
    changes, current = 0, None
    for tempo in score.tempos:
        if current is not None and tempo.mspq != current and tempo.time > 0:
            changes += 1
        current = tempo.mspq
    first = score.time_signatures[0] if len(score.time_signatures) else None
    return {
        "format": fmt,
        "tracks": sum(1 for t in score.tracks if len(t.notes)),
        "instruments": sorted({t.program for t in score.tracks if not t.is_drum and len(t.notes)}),
        "drums": any(t.is_drum and len(t.notes) for t in score.tracks),
        "notes": int(score.note_num()),
        "duration": round(score_seconds(score), 3),
        "tempo_changes": changes,
        "time_signature": f"{first.numerator}/{first.denominator}" if first else None,
    }


def _entry(path: str, name: str, status: str, reason: str) -> dict:
    return {"name": name, "path": path, "status": status, "reason": reason, **dict.fromkeys(FIELDS)}


def table(result: dict) -> str:
    """The inspection as text: one row per file, then the counts (skipped files by kind of reason)."""
    rows = [("file", "status", "fmt", "tracks", "programs", "drums", "notes", "seconds", "tempi", "time", "reason")]
    rows += [_row(e) for e in result["files"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    s = result["summary"]
    lines.append(f"{s['files']} files: {count_line(s)}")
    lines += [f"  {n} skipped: {kind}" for kind, n in s["skipped_by_reason"].items()]
    return "\n".join(line.rstrip() for line in lines)


def _row(e: dict) -> tuple[str, ...]:
    content = (
        ("",) * 8
        if e["format"] is None
        else (
            str(e["format"]),
            str(e["tracks"]),
            ",".join(map(str, e["instruments"])) or "-",
            "yes" if e["drums"] else "no",
            str(e["notes"]),
            f"{e['duration']:.1f}",
            str(e["tempo_changes"]),
            e["time_signature"] or "-",
        )
    )
    return (e["name"], e["status"], *content, e["reason"])
