"""Export the string quartets of music21's bundled corpus to multi-instrument MIDI files.

Usage (needs only music21 + symusic + the standard library):

    python -m lstmidi.corpora.quartets.regenerate [--out DIR]
    python src/lstmidi/corpora/quartets/regenerate.py [--out DIR]

DIR defaults to the folder holding this script. Takes a few minutes on one CPU core (music21 parsing
MusicXML). Reads music21's corpus from disk (``music21/corpus/{haydn,beethoven,mozart}/``, shipped in
the pip package); no network.

Selection rules, applied to ``music21.corpus.getComposer(c)`` for c in haydn, beethoven, mozart:

* Only score files (``.mxl``, ``.xml``, ``.krn``); when the same movement is there in several formats,
  the first of ``.mxl``, ``.xml``, ``.krn`` wins.
* Only string quartets: exactly four parts, named Violin I, Violin II, Viola and Cello (or Violoncello,
  "1st Violin", any case). Anything else (e.g. Mozart's piano sonata K. 545) is skipped.
* Each part becomes one MIDI track with its General MIDI program set from the part's name: violins 40,
  viola 41, cello 42. (music21 labels some of these files "String Ensemble 1", program 48.)
* Notes are taken from the score with its repeats written out (as music21's MIDI export does; a score
  whose repeat marks music21 cannot expand is kept as written, and the log says so), tied notes joined, velocity
  from music21's realised dynamics; tempo marks and time signatures from the first part. 480 ticks
  per quarter note.

Output: ``<composer>-<path with / as ->.mid`` (e.g. ``beethoven-opus18no1-movement1.mid``), written with
symusic; each file written atomically and re-read with ``symusic.Score``: it must hold four note
tracks with programs 40, 40, 41, 42. Exit status 1 on any failure.
"""

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import symusic
from music21 import corpus, meter, repeat, tempo

from lstmidi.corpora import output_folder, report_export

COMPOSERS = ("haydn", "beethoven", "mozart")
FORMAT_PREFERENCE = (".mxl", ".xml", ".krn")
ORDINAL = r"^(\d+(st|nd|rd|th)\s+)?"  # "1st Violin"
PROGRAMS = (
    (re.compile(ORDINAL + r"violin\b", re.IGNORECASE), 40),
    (re.compile(ORDINAL + r"viola\b", re.IGNORECASE), 41),
    (re.compile(ORDINAL + r"(violon)?cello\b", re.IGNORECASE), 42),
)


def program_of(part_name: str) -> int | None:
    return next((prog for pattern, prog in PROGRAMS if pattern.match(part_name.strip())), None)


def select_files():
    """Return ({output stem: path}, [(path, reason)] skipped)."""
    by_stem, skipped = {}, []
    for composer in COMPOSERS:
        root = None
        for path in sorted(Path(p) for p in corpus.getComposer(composer)):
            root = root or next(p for p in path.parents if p.name == composer)
            if path.suffix not in FORMAT_PREFERENCE:
                skipped.append((path, f"not a score ({path.suffix})"))
                continue
            stem = "-".join((composer, *path.relative_to(root).with_suffix("").parts))
            by_stem.setdefault(stem, []).append(path)
    chosen = {}
    for stem, paths in sorted(by_stem.items()):
        paths.sort(key=lambda p: FORMAT_PREFERENCE.index(p.suffix))
        chosen[stem] = paths[0]
        skipped += [(p, f"duplicate of {paths[0].name}") for p in paths[1:]]
    return chosen, skipped


def part_notes(part, tpq: int) -> list[tuple[int, int, int, int]]:
    """(start tick, duration ticks, pitch, velocity) of a part's notes, tied notes joined into one."""
    notes, open_ties = [], {}  # open_ties: pitch -> index in notes of the note a tie continues
    for el in part.flatten().notes:
        start, length = round(float(el.offset) * tpq), round(float(el.quarterLength) * tpq)
        velocity = max(1, min(127, round(el.volume.getRealized() * 127)))
        for n in el.notes if el.isChord else [el]:
            pitch, tie = n.pitch.midi, (n.tie or el.tie)
            kind = tie.type if tie is not None else None
            if kind in ("continue", "stop") and pitch in open_ties:
                i = open_ties[pitch]
                t, _, p, v = notes[i]
                notes[i] = (t, start + length - t, p, v)
                if kind == "stop":
                    del open_ties[pitch]
                continue
            notes.append((start, length, pitch, velocity))
            if kind == "start":
                open_ties[pitch] = len(notes) - 1
    return [n for n in notes if n[1] > 0 and 0 <= n[2] <= 127]


def export(src: Path, tmp: str) -> str | None:
    """Write src as MIDI to tmp, one track per instrument with its GM program; returns a reason to skip
    it, or None. Notes are read from music21's score directly: music21's own MIDI writer takes many
    minutes on a whole quartet (its tie stripping is slow on long parts)."""
    score = corpus.parse(src)
    names = [p.partName or "" for p in score.parts]
    programs = [program_of(n) for n in names]
    if len(names) != 4 or None in programs:
        return f"not a string quartet (parts: {', '.join(names) or 'none'})"
    try:
        score = score.expandRepeats()  # as music21's MIDI export does
    except repeat.ExpanderException as err:
        print(f"  {src.parent.name}/{src.name}: repeats left as written ({err})", flush=True)
    tpq = 480
    midi = symusic.Score(tpq)
    first = score.parts[0].flatten()
    for mark in first.getElementsByClass(tempo.MetronomeMark):
        midi.tempos.append(symusic.Tempo(round(float(mark.offset) * tpq), qpm=float(mark.getQuarterBPM() or 120)))
    if len(midi.tempos) == 0 or midi.tempos[0].time != 0:
        midi.tempos.insert(0, symusic.Tempo(0, qpm=120.0))
    for ts in first.getElementsByClass(meter.TimeSignature):
        midi.time_signatures.append(symusic.TimeSignature(round(float(ts.offset) * tpq), ts.numerator, ts.denominator))
    for part, name, program in zip(score.parts, names, programs):
        track = symusic.Track(name=name, program=program)
        for t, d, p, v in part_notes(part, tpq):
            track.notes.append(symusic.Note(t, d, p, v))
        midi.tracks.append(track)
    midi.dump_midi(tmp)
    return None


def main():
    out = output_folder(__doc__, __file__)

    start = time.monotonic()
    chosen, skipped = select_files()
    written, failed = [], []
    for i, (stem, src) in enumerate(chosen.items(), 1):
        dest = out / f"{stem}.mid"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".tmp.mid")
        os.close(fd)
        try:
            reason = export(src, tmp)
            if reason:
                skipped.append((src, reason))
                continue
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, dest)  # atomic: dest is either absent, old or complete
            written.append(dest)
        except Exception as exc:  # report and carry on with the rest
            failed.append((src, f"{type(exc).__name__}: {exc}"))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
            print(f"[{i}/{len(chosen)}] {stem}  ({time.monotonic() - start:.0f}s)", flush=True)

    notes = 0
    for dest in written:  # final check of what is on disk
        tracks = [t for t in symusic.Score(str(dest)).tracks if len(t.notes)]
        notes += sum(len(t.notes) for t in tracks)
        if sorted(t.program for t in tracks) != [40, 40, 41, 42]:
            failed.append((dest, f"programs {[t.program for t in tracks]}, expected 40, 40, 41, 42"))

    outcome = {"written": written, "skipped": skipped, "failed": failed}
    return report_export(out, outcome, start, details=f", {notes:,} notes", name=lambda p: f"{p.parent.name}/{p.name}")


if __name__ == "__main__":
    sys.exit(main())
