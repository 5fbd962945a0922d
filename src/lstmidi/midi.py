"""Reading MIDI files: `load_score(path)` returns a symusic Score or raises `MidiError(path: reason)`.

Track handling (after parsing): `tracks="merge"` (default) merges all pitched tracks into one,
`tracks="all"` keeps every track as it is (for encodings that keep instruments apart),
`tracks="melody"` keeps only the pitched track with the most notes (ties: the lowest index; never a
drum track, whatever `drums` says), `tracks=N` keeps only track N; drum tracks are dropped unless
`drums=True`.
"""

from __future__ import annotations

from pathlib import Path

from symusic import Score, Track

from .errors import MidiError

MIDI_SUFFIXES = (".mid", ".midi", ".kar")


def chunk_problem(data: bytes) -> str | None:
    """Check the chunk structure of a standard MIDI file (symusic silently accepts a file cut short).

    Returns a reason ("truncated MIDI file (...)") or None when every announced track is complete.
    """
    if len(data) < 14:
        return "truncated MIDI file (header shorter than 14 bytes)"
    header_len = int.from_bytes(data[4:8], "big")
    n_tracks = int.from_bytes(data[10:12], "big")
    pos, found = 8 + header_len, 0
    while pos + 8 <= len(data) and found < n_tracks:
        length = int.from_bytes(data[pos + 4 : pos + 8], "big")
        if pos + 8 + length > len(data):
            return (f"truncated MIDI file (chunk {found + 1} of {n_tracks} announces {length} bytes, "
                    f"{len(data) - pos - 8} present)")
        found += data[pos : pos + 4] == b"MTrk"
        pos += 8 + length
    if found < n_tracks:
        return f"truncated MIDI file ({found} of {n_tracks} tracks present)"
    return None


def read_score(path: str | Path) -> Score:
    """Parse a file into a tick Score, or raise MidiError naming the file and the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MidiError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MidiError(f"{path}: is a folder, not a MIDI file") from None
    except OSError as err:
        raise MidiError(f"{path}: cannot read ({err.strerror})") from None
    if not data:
        raise MidiError(f"{path}: empty file (0 bytes)")
    if not (data.startswith(b"MThd") or data.startswith(b"RIFF")):
        raise MidiError(f"{path}: not a MIDI file (no MThd header)")
    if data.startswith(b"MThd"):
        problem = chunk_problem(data)
        if problem:
            raise MidiError(f"{path}: {problem}")
    try:
        return Score.from_midi(data)
    except Exception as err:  # symusic raises RuntimeError with a MiniMidi message
        text = str(err).removeprefix("MiniMidi: ").removesuffix(": iostream error")
        kind = "truncated MIDI file" if "EOF" in text or "less than" in text else "damaged MIDI file"
        raise MidiError(f"{path}: {kind} ({text})") from None


def select_tracks(score: Score, tracks: str | int = "merge", drums: bool = False, *, source: str = "score") -> Score:
    """Keep the wanted tracks of `score` (see module doc); raises MidiError if no notes remain."""
    all_tracks = list(score.tracks)
    if isinstance(tracks, int):
        if not 0 <= tracks < len(all_tracks):
            listing = ", ".join(f"{i}: {t.name or 'unnamed'} ({len(t.notes)} notes)" for i, t in enumerate(all_tracks))
            raise MidiError(f"{source}: no track {tracks} (tracks: {listing or 'none'})")
        chosen = [all_tracks[tracks]]
    elif tracks == "melody":
        pitched = [t for t in all_tracks if not t.is_drum and len(t.notes)]
        # max() returns the first of equal maxima, so ties go to the lowest track index
        chosen = [max(pitched, key=lambda t: len(t.notes))] if pitched else []
    else:
        chosen = [t for t in all_tracks if drums or not t.is_drum]
    chosen = [t for t in chosen if len(t.notes)]
    if not chosen:
        has_drums = any(t.is_drum and len(t.notes) for t in all_tracks)
        reason = "no notes"
        if has_drums and tracks == "melody":
            reason = "only drum notes (a melody track must be pitched)"
        elif has_drums and not drums:
            reason = "only drum notes (drums are off)"
        raise MidiError(f"{source}: {reason}")
    out = Score(score.ticks_per_quarter)
    out.tempos = score.tempos.copy()
    out.time_signatures = score.time_signatures.copy()
    out.key_signatures = score.key_signatures.copy()
    if tracks == "merge" and len(chosen) > 1:  # "all" keeps them apart
        pitched = [t for t in chosen if not t.is_drum]
        merged = Track(name="merged", program=pitched[0].program if pitched else 0, is_drum=not pitched)
        for t in pitched or chosen:
            merged.notes.extend(t.notes)
            merged.pedals.extend(t.pedals)
            merged.controls.extend(t.controls)
        merged.sort()
        out.tracks.append(merged)
        out.tracks.extend(t for t in chosen if t.is_drum and pitched)
    else:
        out.tracks.extend(t.copy() for t in chosen)
    return out


def load_score(path: str | Path, tracks: str | int = "merge", drums: bool = False) -> Score:
    """Read `path` and select tracks; raises MidiError('<path>: <reason>') for anything unusable."""
    return select_tracks(read_score(path), tracks, drums, source=str(path))
