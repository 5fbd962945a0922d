"""Export the Bach chorales of music21's bundled corpus to MIDI files.

Usage (either form; needs only music21 + symusic + the standard library):

    python -m lstmidi.corpora.bach.regenerate [--out DIR]
    python src/lstmidi/corpora/bach/regenerate.py [--out DIR]

DIR defaults to the folder holding this script. Takes about 1.5 minutes on one
CPU core (almost all of it music21 parsing MusicXML). Reads music21's corpus
from disk (``music21/corpus/bach/``, shipped in the pip package); no network.

Selection rules, applied to ``music21.corpus.getComposer('bach')``:

* Only score files: ``.mxl``, ``.xml`` and ``.krn``. Anything else (the
  Roman-numeral analyses ``choraleAnalyses/*.rntxt``) is skipped.
* One file per chorale: when music21 holds the same file name in several
  formats, the first of ``.mxl``, ``.xml``, ``.krn`` wins; the rest are skipped.
* Only the vocal parts are kept (part name starting with Soprano, Alto, Tenor
  or Bass), one MIDI track each, in score order. Instrumental parts that some
  cantata movements add (horns, trumpets, timpani, strings, continuo, ...) are
  dropped. Fewer than four vocal parts means not a chorale (``bwv846`` is the
  C major Prelude of the Well-Tempered Clavier): skipped.
* Lyrics are dropped (symusic would read them as an extra, note-less track).
* A file whose MIDI plays exactly the same notes as an already exported one
  is skipped. Plain names (``bwv190.7``) are processed before variant names
  with a ``-suffix`` (``bwv190.7-inst``), otherwise in sorted order, so the
  plain name is the one kept.

Output: ``<corpus file name>.mid`` (e.g. ``bwv1.6.mid``), written by music21's
default MIDI export (a conductor track with music21's tempo, then one track
per voice; repeats written out), each file written atomically. Every written
file is then re-read with ``symusic.Score`` and must contain notes. Exit
status 1 on any failure.
"""

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import symusic
from music21 import corpus

from lstmidi.corpora import output_folder, report_export

FORMAT_PREFERENCE = (".mxl", ".xml", ".krn")  # first one present wins
VOICE = re.compile(r"^(soprano|alto|tenor|bass)\b", re.IGNORECASE)
PROGRESS_EVERY = 50


def select_files():
    """Return ({stem: path} to export, [(path, reason)] skipped)."""
    by_stem, skipped = {}, []
    for path in sorted(Path(p) for p in corpus.getComposer("bach")):
        if path.suffix not in FORMAT_PREFERENCE:
            skipped.append((path, f"not a chorale score ({path.suffix} analysis file)"))
        else:
            by_stem.setdefault(path.stem, []).append(path)
    chosen = {}
    for stem in sorted(by_stem, key=lambda s: ("-" in s, s)):  # plain names first
        paths = sorted(by_stem[stem], key=lambda p: FORMAT_PREFERENCE.index(p.suffix))
        chosen[stem] = paths[0]
        skipped += [(p, f"duplicate of {paths[0].name}") for p in paths[1:]]
    return chosen, skipped


def load_voices(src):
    """Parse src and keep only its vocal parts, without lyrics. Returns (score, voices)."""
    score = corpus.parse(src)
    voices = [p for p in score.parts if VOICE.match(p.partName or "")]
    for part in score.parts:
        if part not in voices:
            score.remove(part)
    for note in score.recurse().notes:
        note.lyrics = []
    return score, voices


def notes_of(midi_path):
    """What a MIDI file plays: per track, (start tick, duration, pitch) of each note."""
    score = symusic.Score(str(midi_path))
    return tuple(tuple((n.time, n.duration, n.pitch) for n in t.notes) for t in score.tracks)


def main():
    out = output_folder(__doc__, __file__)

    start = time.monotonic()
    chosen, skipped = select_files()
    written, failed, seen, voice_counts = [], [], {}, {}
    for i, (stem, src) in enumerate(chosen.items(), 1):
        dest = out / f"{stem}.mid"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".tmp.mid")
        os.close(fd)
        try:
            score, voices = load_voices(src)
            if len(voices) < 4:
                skipped.append((src, f"not a chorale ({len(voices)} vocal parts)"))
                continue
            score.write("midi", fp=tmp)
            key = notes_of(tmp)
            if key in seen:
                skipped.append((src, f"same notes as {seen[key]}"))
                continue
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, dest)  # atomic: dest is either absent, old or complete
            seen[key] = dest.name
            written.append(dest)
            voice_counts[len(voices)] = voice_counts.get(len(voices), 0) + 1
        except Exception as exc:  # report and carry on with the rest
            failed.append((src, f"{type(exc).__name__}: {exc}"))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
            if i % PROGRESS_EVERY == 0 or i == len(chosen):
                print(f"[{i}/{len(chosen)}] {src.name}  ({time.monotonic() - start:.0f}s)", flush=True)

    for dest in written:  # final check of what is on disk
        if symusic.Score(str(dest)).note_num() == 0:
            failed.append((dest, "symusic reads 0 notes"))

    outcome = {"written": written, "skipped": skipped, "failed": failed}
    voices = dict(sorted(voice_counts.items()))
    return report_export(out, outcome, start, after=f"; files by number of voices: {voices}")


if __name__ == "__main__":
    sys.exit(main())
