"""Sheet music of a `symusic.Score`: laid out in plain Python (`score_layout`: parts, staves, clefs, voices,
grid, meter, tempo, key), written as MusicXML with music21 (`musicxml`) and engraved as one SVG with verovio
(`engrave`). `lstmidi.render.render_score` writes the files.

music21's own MIDI import is not used: it puts every track on one staff, keeps tempos such as 128.06 and
quantizes to 128th notes. music21 and verovio (the `score` extra) are imported only inside the functions
that need them; `score_layout` needs neither.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import symusic

from .errors import LstmidiError

__all__ = ["ScoreLayout", "Part", "Staff", "GM_PROGRAMS", "score_layout", "score_libraries", "musicxml", "engrave"]

SCORE_MISSING = "sheet music needs music21 and verovio, which are not installed: pip install 'lstmidi[score]'"
GRIDS = (4, 3)  # steps per quarter note, tried in this order: 16ths, then triplet 8ths (ties go to 16ths)
MIDDLE_C = 60  # a piano's notes below it go to the bass staff
PIANO_PROGRAMS = range(8)  # GM 0-7: pianos, harpsichord, clavinet -> a grand staff
TREBLE_FROM = 59  # mean pitch (MIDI) from which a one-staff part gets a treble clef, else a bass clef
VOICES = ("Soprano", "Alto", "Tenor", "Bass")
VOICE_CLEFS = ("treble", "treble", "treble8vb", "bass")
_VOICE_WORDS = {"soprano": 0, "sopran": 0, "alto": 1, "alt": 1, "tenor": 2, "bass": 3, "basso": 3}
_VOICE_NAME = re.compile(rf"({'|'.join(_VOICE_WORDS)})[\s._-]*(\d+|[iv]+)?\.?")  # "Soprano", "Alto 2", "Bass II"
_VOICE_LETTERS = {"s": 0, "a": 1, "t": 2, "b": 3}

GM_PROGRAMS = (  # General MIDI level 1 program names, 0-127
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica",
    "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1",
    "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs",
    "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)",
    "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause",
    "Gunshot",
)  # fmt: skip

Chord = tuple[int, int, tuple[int, ...]]  # (onset step, end step, pitches low to high)


@dataclass(frozen=True)
class Staff:
    """One staff: its clef ("treble", "treble8vb", "bass" or "percussion") and its voices, each a list of
    chords that do not overlap, in time order."""

    clef: str
    voices: tuple[tuple[Chord, ...], ...]


@dataclass(frozen=True)
class Part:
    """One track of the Score: its name (the voice, or the General MIDI program name), its program
    (-1 = drums) and its staves (two for a piano: treble and bass, split at middle C)."""

    name: str
    program: int
    staves: tuple[Staff, ...]


@dataclass(frozen=True)
class ScoreLayout:
    """What `render_score` engraves. Times are steps of the grid: `grid` steps per quarter note (4: 16th
    notes, 3: triplet 8ths). `meters`: (step, numerator, denominator), the first at step 0; `tempos`:
    (step, quarter notes per minute, a whole number), the first at step 0; `key`: (tonic pitch class,
    "major" | "minor", key-signature sharps, negative for flats); `end`: the end of the last bar, in
    steps; `chorale`: every part is a voice (Soprano, Alto, Tenor, Bass)."""

    parts: tuple[Part, ...]
    grid: int
    meters: tuple[tuple[int, int, int], ...]
    tempos: tuple[tuple[int, int], ...]
    key: tuple[int, str, int]
    end: int
    chorale: bool


def _choose_grid(times: np.ndarray) -> int:
    """The grid of `GRIDS` nearest to `times` (quarter notes): the one with the smallest mean distance."""
    if not len(times):
        return GRIDS[0]
    errors = [float(np.mean(np.abs(times * g - np.round(times * g)))) / g for g in GRIDS]
    return GRIDS[int(np.argmin(errors))]  # argmin takes the first on a tie: 16ths


def _voice_numbers(tracks: list) -> list[int | None]:
    """The voice (0 soprano .. 3 bass) of each pitched track, or None. A name that is a voice (Soprano, Alto,
    Tenor, Bass, maybe numbered: "Soprano 2"; not "Alto Sax") always counts; single letters S/A/T/B only when
    every track is named so; four unnamed tracks on one program are a chorale, voices by mean pitch from the
    top."""
    names = [str(t.name).strip().lower() for t in tracks]
    if len(tracks) >= 2 and all(n in _VOICE_LETTERS for n in names):
        return [_VOICE_LETTERS[n] for n in names]
    found = [_VOICE_NAME.fullmatch(n) for n in names]
    voices = [_VOICE_WORDS[m.group(1)] if m else None for m in found]
    if any(v is not None for v in voices) or len(tracks) != 4 or len({t.program for t in tracks}) != 1:
        return voices
    means = [float(np.mean([n.pitch for n in t.notes])) for t in tracks]
    order = sorted(range(4), key=lambda i: -means[i])
    return [order.index(i) for i in range(4)]


def _quantized(notes: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(onset, end, pitch) steps with the overlaps of one pitch removed: two notes of a pitch starting together
    keep the longer, an earlier one ends where the next begins."""
    kept: list[tuple[int, int, int]] = []
    last: dict[int, int] = {}  # pitch -> index in kept
    for on, end, pitch in sorted(notes, key=lambda n: (n[2], n[0], -n[1])):
        i = last.get(pitch)
        if i is not None and kept[i][0] == on:
            continue  # same onset, shorter (sorted longer first)
        if i is not None and kept[i][1] > on:
            kept[i] = (kept[i][0], on, pitch)
        last[pitch] = len(kept)
        kept.append((on, end, pitch))
    return sorted(kept)


def _voices(notes: list[tuple[int, int, int]]) -> tuple[tuple[Chord, ...], ...]:
    """Notes of one staff -> voices: notes with the same onset and end form a chord; each chord goes to the
    first voice free at its onset, higher chords first, so voice 1 carries the top line."""
    groups: dict[tuple[int, int], list[int]] = {}
    for on, end, pitch in notes:
        groups.setdefault((on, end), []).append(pitch)
    chords = sorted(((on, end, tuple(sorted(p))) for (on, end), p in groups.items()), key=lambda c: (c[0], -c[2][-1]))
    voices: list[list[Chord]] = []
    for chord in chords:
        free = next((v for v in voices if v[-1][1] <= chord[0]), None)
        if free is None:
            voices.append([chord])
        else:
            free.append(chord)
    return tuple(tuple(v) for v in voices) or ((),)


def _key(pitches: np.ndarray, durations: np.ndarray) -> tuple[int, str, int]:
    """(tonic pitch class, mode, sharps) of the key found by the quality gate's `find_key`; the signature
    with at most 6 sharps or 5 flats (F# major, not Gb)."""
    from .quality import find_key

    tonic, mode, _ = find_key(pitches, durations)
    major = (tonic + 3) % 12 if mode == "minor" else tonic  # the relative major carries the signature
    sharps = major * 7 % 12
    return tonic, mode, sharps - 12 if sharps > 6 else sharps


def _meters(score: symusic.Score, steps: Callable[[int], int], grid: int) -> tuple[tuple[int, int, int], ...]:
    """The data's time signatures as (step, numerator, denominator), each kept when it falls on a bar line of
    the one before; 4/4 at step 0 when the data has none there."""
    meters = [(0, 4, 4)]
    for ts in sorted(score.time_signatures, key=lambda t: t.time):
        num, den, at = int(ts.numerator), int(ts.denominator), steps(ts.time)
        start, pnum, pden = meters[-1]
        if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32)) or (num, den) == (pnum, pden):
            continue
        if at == start:
            meters[-1] = (at, num, den)
        elif (at - start) % (Fraction(4 * pnum, pden) * grid) == 0:
            meters.append((at, num, den))
    return tuple(meters)


def _bar_end(meters: tuple[tuple[int, int, int], ...], last: int, grid: int) -> int:
    """The first bar line at or after step `last` (at least one bar), in steps."""
    changes = {at: (num, den) for at, num, den in meters}
    position, bar = Fraction(0), Fraction(4)
    while position < last or position == 0:
        if position in changes:
            num, den = changes[position]
            bar = Fraction(4 * num, den) * grid
        position += bar
    return int(np.ceil(position))


def score_layout(score: symusic.Score) -> ScoreLayout:
    """Lay `score` out as sheet music (no music21 needed); see `ScoreLayout`.

    - One part per track with notes. Tracks named Soprano/Alto/Tenor/Bass (or S/A/T/B, or four unnamed
      tracks on one program, voices by pitch) are voices: one staff each, clefs treble, treble,
      treble-8 (tenor) and bass; when every part is a voice the piece is a chorale (`chorale`, four staves
      under one bracket). A piano track (GM programs 0-7) gets a grand staff split at middle C (notes below
      MIDI 60 on the bass staff); a drum track a percussion staff; any other track one staff, treble clef
      when its mean pitch is at least B3 (MIDI 59), else bass. Parts are named by voice, else by GM
      program name, numbered when several share a name ("Violin 1", "Violin 2").
    - The grid is 16th notes, or triplet 8ths when the note onsets and ends lie nearer to them; every
      onset and end is rounded to it and every note lasts at least one step.
    - The key (one for the piece) is `lstmidi.quality.find_key` of the pitched notes; the meters are the
      data's time signatures (default 4/4); the tempo marks are the data's tempos rounded to whole quarter
      notes per minute (default 120, MIDI's), one mark per change of the rounded value. Bar 1 starts at
      time 0 (an upbeat is not detected).
    """
    tpq = score.ticks_per_quarter
    tracks = [t for t in score.tracks if len(t.notes)]
    times = np.array([x for t in tracks for n in t.notes for x in (n.time, n.time + n.duration)], float) / tpq
    grid = _choose_grid(times)

    def steps(ticks: int) -> int:
        return int(round(ticks * grid / tpq))

    pitched = [t for t in tracks if not t.is_drum]
    voice_of = dict(zip(map(id, pitched), _voice_numbers(pitched)))
    plans: list[tuple[str, int, list[tuple[str, list]]]] = []  # (name, program, [(clef, notes)])
    for track in tracks:
        notes = _quantized(
            [(steps(n.time), max(steps(n.time + n.duration), steps(n.time) + 1), n.pitch) for n in track.notes]
        )
        voice = voice_of.get(id(track))
        if track.is_drum:
            plans.append(("Drums", -1, [("percussion", notes)]))
        elif voice is not None:
            plans.append((VOICES[voice], track.program, [(VOICE_CLEFS[voice], notes)]))
        elif track.program in PIANO_PROGRAMS:
            plans.append(
                (
                    GM_PROGRAMS[track.program],
                    track.program,
                    [
                        ("treble", [n for n in notes if n[2] >= MIDDLE_C]),
                        ("bass", [n for n in notes if n[2] < MIDDLE_C]),
                    ],
                )
            )
        else:
            clef = "treble" if np.mean([n[2] for n in notes]) >= TREBLE_FROM else "bass"
            plans.append((GM_PROGRAMS[track.program], track.program, [(clef, notes)]))
    counts = Counter(name for name, *_ in plans)
    seen: Counter = Counter()
    parts = []
    for name, program, staves in plans:
        seen[name] += 1
        label = f"{name} {seen[name]}" if counts[name] > 1 else name
        parts.append(Part(label, program, tuple(Staff(clef, _voices(notes)) for clef, notes in staves)))
    if not parts:  # no notes: one empty staff, so that the score still shows its bar of rest
        parts.append(Part(GM_PROGRAMS[0], 0, (Staff("treble", ((),)),)))

    notes = [n for t in pitched for n in t.notes]
    key = _key(np.array([n.pitch for n in notes]), np.array([n.duration / tpq for n in notes]))
    meters = _meters(score, steps, grid)
    last = max((c[1] for p in parts for s in p.staves for v in s.voices for c in v), default=1)
    tempos = [(0, 120)]
    for tempo in sorted(score.tempos, key=lambda t: t.time):
        qpm, at = max(1, int(round(float(tempo.qpm)))), steps(tempo.time)
        if at > 0 and at >= last:
            break  # after the music
        if at == tempos[-1][0]:
            tempos[-1] = (at, qpm)
        elif qpm != tempos[-1][1]:
            tempos.append((at, qpm))
        if len(tempos) > 1 and tempos[-1][1] == tempos[-2][1]:
            tempos.pop()
    return ScoreLayout(
        parts=tuple(parts),
        grid=grid,
        meters=meters,
        tempos=tuple(tempos),
        key=key,
        end=_bar_end(meters, last, grid),
        chorale=len(parts) > 1 and all(p.name.split()[0] in VOICES for p in parts),
    )


def score_libraries():
    """(music21, verovio), or LstmidiError naming the extra that installs them."""
    try:
        import music21
        import verovio
    except ImportError:
        raise LstmidiError(SCORE_MISSING) from None
    return music21, verovio


def _spellings(tonic: int, mode: str, sharps: int) -> list[str]:
    """music21 names of the 12 pitch classes in a key: the scale's own (minor: with the raised 6th and 7th),
    the others sharp in sharp keys and flat in flat keys (C major / A minor: C# Eb F# G# Bb)."""
    from music21 import key

    names = ["C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B"]
    if sharps > 0:
        names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    elif sharps < 0:
        names = ["C", "D-", "D", "E-", "E", "F", "G-", "G", "A-", "A", "B-", "B"]
    k = key.KeySignature(sharps).asKey(mode)
    scale = list(k.pitches[:-1])
    if mode == "minor":
        scale += [k.pitchFromDegree(6).transpose("A1"), k.pitchFromDegree(7).transpose("A1")]
    for p in scale:
        names[p.pitchClass] = p.name
    return names


# Where a drum sound sits on the percussion staff (GM key -> display pitch, cymbals with x heads)
_DRUM_DISPLAY = {35: "F4", 36: "F4", 41: "A4", 43: "A4", 45: "D5", 47: "D5", 48: "E5", 50: "E5", 51: "F5", 59: "F5"}
_DRUM_DISPLAY.update({k: "C5" for k in (37, 38, 39, 40)} | {k: "G5" for k in (42, 44, 46, 49, 52, 55, 57)})
_CYMBALS = {42, 44, 46, 49, 51, 52, 55, 57, 59}


def _music21_score(layout: ScoreLayout, title: str):
    """The music21 Score of `layout`, with measures, ties and beams (music21's makeNotation)."""
    from music21 import chord, clef, duration, instrument, key, metadata, meter, note, percussion, pitch, stream
    from music21 import layout as m21layout
    from music21 import tempo as m21tempo

    clefs = {"treble": clef.TrebleClef, "treble8vb": clef.Treble8vbClef, "bass": clef.BassClef}
    clefs["percussion"] = clef.PercussionClef
    tonic, mode, sharps = layout.key
    names = _spellings(tonic, mode, sharps)

    def quarters(steps: int) -> Fraction:
        return Fraction(steps, layout.grid)

    def pitched(midi: int):
        p = pitch.Pitch(names[midi % 12] + "4")
        p.octave += (midi - p.midi) // 12
        return note.Note(p)

    def drum(midi: int):
        hit = note.Unpitched(displayName=_DRUM_DISPLAY.get(midi, "C5"))
        if midi in _CYMBALS:
            hit.notehead = "x"
        return hit

    score = stream.Score()
    score.metadata = metadata.Metadata(title=title)
    staves, voice_numbers = [], []  # every staff; the first voice number of each staff in its part
    for part in layout.parts:
        group, first = [], 1
        for staff in part.staves:
            s = stream.PartStaff() if len(part.staves) > 1 else stream.Part()
            s.partName = part.name
            s.insert(0, instrument.Instrument(instrumentName=part.name))
            s.getInstrument().midiProgram = max(part.program, 0)
            s.insert(0, clefs[staff.clef]())
            drums = staff.clef == "percussion"
            if not drums:
                s.insert(0, key.KeySignature(sharps).asKey(mode))
            for at, num, den in layout.meters:
                s.insert(quarters(at), meter.TimeSignature(f"{num}/{den}"))
            if not staves:  # the tempo marks go above the top staff
                for at, qpm in layout.tempos:
                    s.insert(quarters(at), m21tempo.MetronomeMark(number=qpm, referent=duration.Duration(1)))
            make, together = (drum, percussion.PercussionChord) if drums else (pitched, chord.Chord)
            for number, chords in enumerate(staff.voices):
                voice, position = stream.Voice(), 0
                for on, end, pitches in (*chords, (layout.end, layout.end, ())):
                    if on > position:  # a rest; those of the lower voices are hidden
                        rest = note.Rest(quarterLength=quarters(on - position))
                        rest.style.hideObjectOnPrint = number > 0
                        voice.insert(quarters(position), rest)
                    if pitches:
                        sounds = [make(p) for p in pitches]
                        sound = together(sounds) if len(sounds) > 1 else sounds[0]
                        sound.quarterLength = quarters(end - on)
                        voice.insert(quarters(on), sound)
                    position = end
                s.insert(0, voice)
            staves.append(s)
            group.append(s)
            voice_numbers.append(first)
            first += len(staff.voices)
            score.insert(0, s)
        if len(group) > 1:
            score.insert(0, m21layout.StaffGroup(group, name=part.name, symbol="brace", barTogether=True))
    if layout.chorale:
        score.insert(0, m21layout.StaffGroup(staves, symbol="bracket", barTogether=True))
    score = score.makeNotation()
    for s, first in zip(score.parts, voice_numbers):  # MusicXML voices: 1, 2, ... through a part's staves
        for measure in s.getElementsByClass(stream.Measure):
            for number, voice in enumerate(measure.voices, first):
                voice.id = number
    return score


def musicxml(layout: ScoreLayout, title: str) -> str:
    """MusicXML text of `layout` (music21), headed by `title`."""
    score_libraries()
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(_music21_score(layout, title)).parse().decode("utf-8")


VEROVIO_OPTIONS = {  # an A4-wide page at 40% scale, as tall as the music
    "pageWidth": 2100,
    "pageHeight": 60000,  # verovio's largest: a long piece still gets more pages, stacked into the one SVG
    "adjustPageHeight": True,
    "scale": 40,
    "header": "auto",
    "footer": "none",
    "svgViewBox": True,
}


def engrave(musicxml: str) -> str:
    """Engrave MusicXML text with verovio -> one SVG document (verovio's pages stacked top to bottom)."""
    from importlib import resources

    _, verovio = score_libraries()
    verovio.enableLog(verovio.LOG_OFF)
    # verovio's default resource path (its fonts) is per thread, set by its import in the importing thread only:
    # a toolkit made in another thread (the studio's workers) finds no fonts and loads nothing. Give it the path.
    toolkit = verovio.toolkit(False)
    toolkit.setResourcePath(str(resources.files("verovio") / "data"))
    toolkit.setOptions(VEROVIO_OPTIONS)
    if not toolkit.loadData(musicxml) or toolkit.getPageCount() < 1:
        raise LstmidiError("verovio could not engrave the MusicXML")
    pages = [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]
    return pages[0] if len(pages) == 1 else _stack_svgs(pages)


def _stack_svgs(pages: list[str]) -> str:
    """One SVG holding verovio's page SVGs (each with a viewBox) one below the other."""
    sizes = [tuple(map(float, re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', page).groups())) for page in pages]
    inner, top = [], 0.0
    for page, (width, height) in zip(pages, sizes):
        inner.append(page.replace("<svg ", f'<svg x="0" y="{top:g}" width="{width:g}" height="{height:g}" ', 1))
        top += height
    width = max(w for w, _ in sizes)
    return (
        f'<svg viewBox="0 0 {width:g} {top:g}" version="1.1" xmlns="http://www.w3.org/2000/svg" '
        f'xmlns:xlink="http://www.w3.org/1999/xlink">\n' + "\n".join(inner) + "\n</svg>\n"
    )
