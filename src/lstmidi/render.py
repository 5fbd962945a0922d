"""Turn a `symusic.Score` into files: MIDI, WAV audio, a piano-roll PNG and sheet music (MusicXML + SVG).

Works on any Score (ticks, any ticks-per-quarter), so every encoding can use it. No torch here, and no
network: audio uses a local SoundFont (found by `find_soundfont`) through symusic's synthesizer, and
falls back to a small built-in numpy synth when there is no SoundFont or the synthesizer fails, so audio
is never missing. Sheet music (`render_score`) needs music21 and verovio (the `score` extra), imported
only when it is made.

Every writer refuses to overwrite an existing file unless `force=True` (raising `OutputExistsError`),
creates missing parent folders, and writes to a temporary file in the target folder that is then moved
into place with `os.replace`, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
import wave
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import symusic

from .errors import LstmidiError, OutputExistsError
from .files import atomic_path, figure

__all__ = [
    "SOUNDFONT_ENV",
    "find_soundfont",
    "render_wav",
    "render_pianoroll_png",
    "write_midi",
    "score_layout",
    "render_score",
    "render_all",
]

SOUNDFONT_ENV = "LSTMIDI_SOUNDFONT"

# Searched in this order after the explicit argument and the env var. Globs are expanded and sorted so
# the choice is deterministic. Debian/Ubuntu first (fluid-soundfont-gm, timgm6mb-soundfont,
# musescore-general-soundfont), then Arch/Fedora/Homebrew/user folders.
_SYSTEM_SOUNDFONTS: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/*.sf2",
    "/usr/share/sounds/sf3/*.sf3",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/*.sf2",
    "/usr/share/soundfonts/*.sf3",
    "/usr/local/share/soundfonts/*.sf2",
    "/opt/homebrew/share/soundfonts/*.sf2",
    "~/.local/share/soundfonts/*.sf2",
    "~/.local/share/soundfonts/*.sf3",
)

_NO_SOUNDFONT_MESSAGE = (
    "lstmidi: no SoundFont found, so audio is rendered with the plain built-in synth. For realistic "
    "instruments install one (Debian/Ubuntu: `apt-get install fluid-soundfont-gm`, or the small "
    f"`timgm6mb-soundfont`) or point the {SOUNDFONT_ENV} environment variable (or --soundfont) at an .sf2/.sf3 file."
)

_warned_no_soundfont = False

# Below this peak amplitude (float audio in [-1, 1]) a render of a score with notes counts as silent.
_SILENCE_PEAK = 1e-4

# Built-in synth shape, in seconds.
_ATTACK_S = 0.005
_RELEASE_S = 0.15
_TAIL_S = 0.05


# --------------------------------------------------------------------------------------------------
# SoundFont lookup


def find_soundfont(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Find a local SoundFont (.sf2/.sf3) file; never downloads anything.

    Order: `explicit` (raises `LstmidiError` naming the path if it does not exist), then the
    `LSTMIDI_SOUNDFONT` environment variable (raises `LstmidiError` if set, non-empty and missing), then
    the standard system paths (Debian's `/usr/share/sounds/sf2/FluidR3_GM.sf2`, `default-GM.sf2`,
    `/usr/share/sounds/sf3/default-GM.sf3`, `TimGM6mb.sf2`, `/usr/share/soundfonts/*.sf2`, ...).

    Returns the path, or None when nothing is installed (default `explicit=None`).
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LstmidiError(f"SoundFont {str(path)!r} does not exist (given with --soundfont)")
        return path

    env = os.environ.get(SOUNDFONT_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise LstmidiError(
                f"SoundFont {str(path)!r} does not exist (set by the {SOUNDFONT_ENV} environment variable)"
            )
        return path

    for pattern in _SYSTEM_SOUNDFONTS:
        pattern = os.path.expanduser(pattern)
        candidates = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for candidate in candidates:
            if os.path.isfile(candidate):
                return Path(candidate)
    return None


# --------------------------------------------------------------------------------------------------
# Safe writing


def _check_target(path: Path, force: bool) -> None:
    """Raise if `path` exists and may not be overwritten (or is a folder)."""
    if path.is_dir():
        raise LstmidiError(f"output {str(path)!r} is a folder, not a file")
    if path.exists() and not force:
        raise OutputExistsError(f"output file {str(path)!r} already exists; use --force to overwrite it")


@contextmanager
def _atomic_target(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success move it onto `path`, else delete it."""
    _check_target(path, force)
    with atomic_path(path) as tmp:
        yield tmp
        # Re-check: another process may have created the file while we rendered.
        _check_target(path, force)


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser()


# --------------------------------------------------------------------------------------------------
# MIDI


def write_midi(score: symusic.Score, path: str | os.PathLike[str], *, force: bool = False) -> str:
    """Write `score` as a Standard MIDI File at `path` (any tpq; the Score's own tpq is kept).

    Refuses to overwrite an existing file unless `force=True` (default False; raises
    `OutputExistsError`). Writes atomically and creates parent folders. Returns the path as a string.
    """
    path = _as_path(path)
    if not len(score.tracks):  # symusic 0.5.8 writes a track-less score's tempos and time signatures
        score = score.copy()  # out of order (negative delta times: a file millions of seconds long)
        score.tracks.append(symusic.Track())
    with _atomic_target(path, force) as tmp:
        score.dump_midi(str(tmp))
    return str(path)


# --------------------------------------------------------------------------------------------------
# Audio


def _note_count(score: symusic.Score) -> int:
    return sum(len(track.notes) for track in score.tracks)


def _render_soundfont(score: symusic.Score, soundfont: Path, sample_rate: int, quality: int) -> np.ndarray:
    """Render with symusic's synthesizer; returns float32 audio of shape (channels, samples)."""
    synth = symusic.Synthesizer(str(soundfont), sample_rate=sample_rate, quality=quality)
    audio = np.asarray(synth.render(score, stereo=True), dtype=np.float32)  # (2, samples)
    if audio.ndim == 1:
        audio = audio[None, :]  # (1, samples)
    return audio


def _midi_to_hz(pitch: np.ndarray | int) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def _synth_builtin(score: symusic.Score, sample_rate: int) -> np.ndarray:
    """Plain additive synth: returns mono float32 audio of shape (samples,), peak-normalised to 0.9.

    Pitched notes: a sine fundamental plus odd harmonics at 1/n^2 (a soft triangle), a 5 ms attack, a
    gentle exponential decay while held and a 150 ms release after note-off. Drum-track notes: a short
    decaying noise burst. Velocity v maps to amplitude (v/127)^2 (the GM velocity curve).
    """
    sec = score.to("second")
    notes: list[tuple[float, float, int, int, bool]] = []  # (start s, duration s, pitch, velocity, drum)
    for track in sec.tracks:
        for note in track.notes:
            notes.append(
                (
                    float(note.time),
                    max(float(note.duration), 0.0),
                    int(note.pitch),
                    int(note.velocity),
                    bool(track.is_drum),
                )
            )
    end_s = max((start + dur for start, dur, *_ in notes), default=0.0)
    total = int(np.ceil((end_s + _RELEASE_S + _TAIL_S) * sample_rate)) + 1
    out = np.zeros(total, dtype=np.float64)  # (samples,)
    rng = np.random.default_rng(0)  # drum noise: the same score always gives the same audio
    attack_n = max(1, int(_ATTACK_S * sample_rate))
    release_n = max(1, int(_RELEASE_S * sample_rate))

    for start, dur, pitch, velocity, drum in notes:
        amp = (max(0, min(velocity, 127)) / 127.0) ** 2
        if amp == 0.0:
            continue
        i0 = int(round(start * sample_rate))
        if drum:
            n = int(0.12 * sample_rate)
            t = np.arange(n) / sample_rate  # (n,) seconds
            wave_ = rng.standard_normal(n) * np.exp(-t / 0.03) * 0.5
        else:
            hold_n = max(attack_n, int(round(dur * sample_rate)))
            n = hold_n + release_n
            t = np.arange(n) / sample_rate  # (n,) seconds
            f0 = float(_midi_to_hz(pitch))
            wave_ = np.zeros(n)
            for k, weight in ((1, 1.0), (3, 1 / 9), (5, 1 / 25), (7, 1 / 49)):
                if k * f0 < sample_rate / 2:  # no aliasing
                    wave_ += weight * np.sin(2 * np.pi * k * f0 * t)
            env = np.exp(-t / 1.5)  # held notes fade slowly, like a struck string
            env[:attack_n] *= np.linspace(0.0, 1.0, attack_n, endpoint=False)
            release_level = env[hold_n - 1]
            env[hold_n:] = release_level * np.linspace(1.0, 0.0, release_n)
            wave_ *= env
        i1 = min(total, i0 + len(wave_))
        if i1 > i0:
            out[i0:i1] += amp * wave_[: i1 - i0]

    peak = float(np.max(np.abs(out))) if total else 0.0
    if peak > 0:
        out *= 0.9 / peak
    return out.astype(np.float32)


def _write_wav_builtin(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM with the stdlib `wave` module."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def render_wav(
    score: symusic.Score,
    path: str | os.PathLike[str],
    *,
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    quality: int = 0,
    force: bool = False,
) -> str:
    """Render `score` to a 16-bit PCM WAV file at `path`; returns the engine used.

    Uses symusic's synthesizer with the SoundFont from `find_soundfont(soundfont)` (default None: env var
    `LSTMIDI_SOUNDFONT`, then system paths) at `sample_rate` Hz (default 44100; stereo) and synth
    `quality` (default 0). Without a SoundFont it warns once (naming `apt-get install
    fluid-soundfont-gm` and the env var) and uses a plain built-in synth (mono); it also falls back
    to the built-in synth, with a warning, if the synthesizer raises or returns silence for a score
    that has notes. The audio lasts until the last note ends plus the instrument's release.

    Refuses to overwrite an existing file unless `force=True` (default False). Returns
    `"soundfont:<path>"` or `"builtin"`.
    """
    global _warned_no_soundfont
    path = _as_path(path)
    if int(sample_rate) <= 0:
        raise LstmidiError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    _check_target(path, force)  # refuse before spending time on rendering
    sf = find_soundfont(soundfont)

    audio: np.ndarray | None = None
    engine = "builtin"
    if sf is None:
        if not _warned_no_soundfont:
            _warned_no_soundfont = True
            _warn(_NO_SOUNDFONT_MESSAGE)
    elif _note_count(score) > 0:
        try:
            audio = _render_soundfont(score, sf, sample_rate, quality)
        except Exception as exc:  # e.g. symusic 0.6.0: "Unable to convert function return value"
            _warn(
                f"lstmidi: the SoundFont synthesizer failed ({type(exc).__name__}: {exc}); "
                "using the built-in synth instead"
            )
            audio = None
        else:
            if audio.size == 0 or not np.all(np.isfinite(audio)) or float(np.max(np.abs(audio))) < _SILENCE_PEAK:
                _warn(
                    f"lstmidi: the SoundFont synthesizer returned silence for a score with "
                    f"{_note_count(score)} notes (SoundFont {str(sf)!r}); using the built-in synth instead"
                )
                audio = None
            else:
                engine = f"soundfont:{sf}"
    # A score without notes gives a short silent file from the built-in synth (symusic refuses it).

    with _atomic_target(path, force) as tmp:
        if audio is not None:
            symusic.dump_wav(str(tmp), np.asfortranarray(audio), sample_rate, True)
        else:
            _write_wav_builtin(tmp, _synth_builtin(score, sample_rate), sample_rate)
    return engine


# --------------------------------------------------------------------------------------------------
# Piano roll


def _pitch_name_c(pitch: int) -> str:
    """Name of a C key: MIDI 60 -> "C4"."""
    return f"C{pitch // 12 - 1}"


def _track_label(track: symusic.core.TrackSecond, index: int) -> str:
    name = str(track.name).strip()
    kind = "drums" if track.is_drum else f"program {track.program}"
    return f"{name} ({kind})" if name else f"track {index + 1} ({kind})"


def render_pianoroll_png(
    score: symusic.Score,
    path: str | os.PathLike[str],
    *,
    primer_seconds: float = 0.0,
    title: str | None = None,
    force: bool = False,
) -> str:
    """Draw `score` as a piano roll and save it as a PNG at `path`; returns the path as a string.

    x axis: time in seconds (tempo changes honoured); y axis: MIDI pitch, limited to the used range
    plus a margin, C keys labelled C2, C3, ... (MIDI 60 = C4). Notes are rectangles coloured by track,
    opacity growing with velocity. When `primer_seconds` > 0 (default 0.0 seconds) the primer part
    (0..primer_seconds) is shaded, a dashed line marks where generation starts, and the legend shows
    "primer" / "generated". `title` defaults to the file stem with the note count and duration.
    The figure is 8 to 24 inches wide at 100 dpi, growing with duration.

    Refuses to overwrite an existing file unless `force=True` (default False).
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    path = _as_path(path)
    primer_seconds = float(primer_seconds)
    if not np.isfinite(primer_seconds) or primer_seconds < 0:
        raise LstmidiError(f"primer_seconds must be >= 0 seconds, got {primer_seconds!r}")
    _check_target(path, force)

    sec = score.to("second")
    tracks = [(i, t) for i, t in enumerate(sec.tracks) if len(t.notes) > 0]
    n_notes = sum(len(t.notes) for _, t in tracks)
    end_s = max((float(t.end()) for _, t in tracks), default=0.0)
    duration = max(end_s, primer_seconds, 1.0)

    pitches = [int(n.pitch) for _, t in tracks for n in t.notes]
    if pitches:
        lo, hi = max(0, min(pitches) - 3), min(127, max(pitches) + 3)
    else:
        lo, hi = 48, 72
    if hi - lo < 12:  # at least an octave, so a single note does not fill the whole picture
        pad = (12 - (hi - lo)) // 2 + 1
        lo, hi = max(0, lo - pad), min(127, hi + pad)

    width = float(np.clip(6.0 + 0.5 * duration, 8.0, 24.0))  # inches
    height = float(np.clip(2.5 + 0.09 * (hi - lo + 1), 4.0, 9.0))
    fig, ax = figure((width, height))  # a Figure on the Agg canvas, not pyplot: safe in threads and servers

    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#ff7f0e",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
        "#bcbd22",
        "#7f7f7f",
    ]

    legend: list = []
    if primer_seconds > 0:
        ax.axvspan(0.0, primer_seconds, color="#999999", alpha=0.22, lw=0, zorder=0)
        ax.axvline(primer_seconds, color="#444444", ls="--", lw=1.2, zorder=3)
        legend.append(Patch(facecolor="#999999", alpha=0.35, label=f"primer (0–{primer_seconds:.1f} s)"))
        legend.append(Patch(facecolor="white", edgecolor="#444444", label="generated"))

    for k, (index, track) in enumerate(tracks):
        rgb = to_rgb(palette[k % len(palette)])
        starts = np.array([n.time for n in track.notes], dtype=float)  # (notes,) seconds
        durs = np.maximum(np.array([n.duration for n in track.notes], dtype=float), 0.02)  # (notes,)
        keys = np.array([n.pitch for n in track.notes], dtype=float)  # (notes,)
        vels = np.array([n.velocity for n in track.notes], dtype=float)  # (notes,)
        x0, x1, y0, y1 = starts, starts + durs, keys - 0.42, keys + 0.42
        verts = np.stack(
            [np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1
        )  # (notes, 4, 2)
        alpha = 0.3 + 0.7 * np.clip(vels, 0, 127) / 127.0  # (notes,)
        face = np.column_stack([np.tile(rgb, (len(alpha), 1)), alpha])  # (notes, 4) RGBA
        edge = np.column_stack([np.tile(rgb, (len(alpha), 1)) * 0.6, np.ones_like(alpha)])
        ax.add_collection(PolyCollection(verts, facecolors=face, edgecolors=edge, linewidths=0.5, zorder=2))
        legend.append(Patch(facecolor=rgb, label=_track_label(track, index)))

    ax.set_xlim(0.0, duration * 1.01)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    c_keys = [p for p in range(lo, hi + 1) if p % 12 == 0]
    ax.set_yticks(c_keys)
    ax.set_yticklabels([_pitch_name_c(p) for p in c_keys])
    for p in c_keys:  # a faint line under each C keeps octaves readable
        ax.axhline(p - 0.5, color="#cccccc", lw=0.6, zorder=1)
    ax.grid(axis="x", color="#e3e3e3", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if not pitches:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="#888888")
    if title is None:
        title = f"{path.stem} — {n_notes} notes, {end_s:.1f} s"
    ax.set_title(title)
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()

    with _atomic_target(path, force) as tmp:
        fig.savefig(str(tmp), format="png")
    return str(path)


# --------------------------------------------------------------------------------------------------
# Sheet music
#
# A Score is first laid out in plain Python (`score_layout`: parts, staves, clefs, voices, grid, meter,
# tempo, key), then written with music21 (MusicXML) and engraved with verovio (SVG). music21's own MIDI
# import is not used: it puts every track on one staff, keeps tempos such as 128.06 and quantizes to
# 128th notes.

SCORE_MISSING = "sheet music needs music21 and verovio, which are not installed: pip install 'lstmidi[score]'"
SCORE_SUFFIXES = (".musicxml", ".svg")
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
    _, verovio = score_libraries()
    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
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


def score_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The files `render_score` writes for `out`: {"musicxml": OUT.musicxml, "svg": OUT.svg} (suffix replaced)."""
    out = _as_path(out)
    return {suffix[1:]: out.with_suffix(suffix) for suffix in SCORE_SUFFIXES}


def render_score(
    source: symusic.Score | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Sheet music of `source` (a Score, or a MIDI file, read leniently): OUT.musicxml (music21) and OUT.svg
    (verovio; the whole piece in one SVG, an A4-wide page as tall as the music), laid out by `score_layout`
    (parts, staves and clefs, grid, key, meter and tempo: see there).

    `out` names the files, its suffix replaced (default None: beside the MIDI file; needed for a Score);
    `title` (default: OUT's stem) heads the page. Needs music21 and verovio (the `score` extra; without
    them an LstmidiError says what to install). Both targets are checked before any work (an existing
    one raises `OutputExistsError` unless `force=True`, default False), then both are written
    atomically. Returns {"musicxml": path, "svg": path}.
    """
    if out is None:
        if isinstance(source, symusic.Score):
            raise LstmidiError("render_score: give `out` (where to write) for a Score")
        out = source
    targets = score_paths(out)
    for target in targets.values():
        _check_target(target, force)
    score_libraries()
    if not isinstance(source, symusic.Score):
        from .midi import read_score

        source = read_score(source)
    stream = _music21_score(score_layout(source), targets["musicxml"].stem if title is None else title)
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    musicxml = GeneralObjectExporter(stream).parse().decode("utf-8")
    svg = engrave(musicxml)
    for kind, text in (("musicxml", musicxml), ("svg", svg)):
        with _atomic_target(targets[kind], force) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return {kind: str(path) for kind, path in targets.items()}


# --------------------------------------------------------------------------------------------------
# Everything at once


def render_all(
    score: symusic.Score,
    midi_path: str | os.PathLike[str],
    *,
    wav: bool = True,
    png: bool = True,
    sheet: bool = False,
    primer_seconds: float = 0.0,
    soundfont: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Write `midi_path` and, beside it with the same stem, `.wav` audio, a `.png` piano roll and sheet music
    (`.musicxml` + `.svg`, `render_score`).

    `wav` and `png` (default True) and `sheet` (default False) choose the extra files; `primer_seconds` (default
    0.0 seconds) marks the primer in the piano roll; `soundfont` (default None) is passed to `find_soundfont`.
    Every target is checked first (and the SoundFont resolved, and music21/verovio imported for `sheet`), so
    a refusal (`OutputExistsError` unless `force=True`), a missing SoundFont or missing sheet-music libraries
    write nothing. Returns {"midi": ..., "wav": ..., "png": ..., "musicxml": ..., "svg": ...} (only the kinds
    written).
    """
    midi = _as_path(midi_path)
    targets: dict[str, Path] = {"midi": midi}
    if wav:
        targets["wav"] = midi.with_suffix(".wav")
    if png:
        targets["png"] = midi.with_suffix(".png")
    if sheet:
        targets.update(score_paths(midi))
    if len(set(targets.values())) != len(targets):
        raise LstmidiError(f"MIDI path {str(midi)!r} must not end in .wav, .png, .musicxml or .svg")
    for target in targets.values():
        _check_target(target, force)
    sf = find_soundfont(soundfont) if wav else None
    if sheet:
        score_libraries()

    written: dict[str, str] = {"midi": write_midi(score, midi, force=force)}
    if wav:
        render_wav(score, targets["wav"], soundfont=sf, force=force)
        written["wav"] = str(targets["wav"])
    if png:
        written["png"] = render_pianoroll_png(score, targets["png"], primer_seconds=primer_seconds, force=force)
    if sheet:
        written.update(render_score(score, midi, force=force))
    return written
