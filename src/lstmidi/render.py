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
import warnings
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import symusic

from .errors import LstmidiError, OutputExistsError
from .files import atomic_path, figure
from .sheet import engrave, score_layout, score_libraries
from .sheet import musicxml as sheet_musicxml

__all__ = [
    "SOUNDFONT_ENV",
    "find_soundfont",
    "render_wav",
    "render_pianoroll_png",
    "write_midi",
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
# Sheet music (the layout and the engraving are in `lstmidi.sheet`)

SCORE_SUFFIXES = (".musicxml", ".svg")


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
    (verovio; the whole piece in one SVG, an A4-wide page as tall as the music), laid out by
    `lstmidi.sheet.score_layout` (parts, staves and clefs, grid, key, meter and tempo: see there).

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
    musicxml = sheet_musicxml(score_layout(source), targets["musicxml"].stem if title is None else title)
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
