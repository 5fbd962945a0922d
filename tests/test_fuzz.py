"""Fuzzing the MIDI reader: mutated MIDI bytes end as a sane Score or a MidiError, within a time limit;
never another exception, a crash (symusic segfaults on some of these, so this runs in-process on
purpose) or a hang. Default run: 2,000 inputs; `pytest -m slow tests/test_fuzz.py`: 50,000 more."""

import faulthandler
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from symusic import ControlChange, KeySignature, TimeSignature

from conftest import chorale_like, make_score
from lstmidi.corpus import bundled_corpus
from lstmidi.errors import MidiError, ModelFileError
from lstmidi.midi import LIMITS, read_score_bytes, select_tracks
from lstmidi.modelfile import load_model
from midibytes import MELODY, chunk, notes, piece, smf, tempo

WATCHDOG_SECONDS = 60  # a hang, even inside C++, ends the run with a traceback instead of waiting forever


def symusic_file() -> bytes:
    """Four tracks written by symusic: programs, drums, pedals and controls, tempo, time and key signatures."""
    score = chorale_like(3, bars=2)
    score.tracks.append(make_score([(0, 240, 36), (240, 240, 38)] * 4, drum=True).tracks[0])
    score.tracks.append(make_score([(i * 480, 480, 48 + i) for i in range(8)], program=32, pedals=[(0, 960)]).tracks[0])
    score.tracks[0].controls.append(ControlChange(100, 7, 100))
    score.time_signatures.append(TimeSignature(0, 3, 4))
    score.key_signatures.append(KeySignature(0, -3, 1))
    return score.dumps_midi()


SEEDS = [
    piece(),
    piece(fmt=2),
    smf([chunk(tempo(90) + notes(MELODY, step=120))], fmt=0),
    symusic_file(),
    (bundled_corpus() / "bwv250.mid").read_bytes(),
]

POSITION = st.integers(0, 2**14)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), POSITION, st.integers(0, 7)),
    st.tuples(st.just("truncate"), POSITION),
    st.tuples(st.just("insert"), POSITION, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("overwrite"), POSITION, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), POSITION, st.integers(1, 16)),
    st.tuples(st.just("chunk length"), st.integers(0, 8), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("junk"), st.binary(max_size=256), st.booleans()),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    if kind == "junk":  # random bytes, with or without a MIDI header in front
        junk, header = args
        return (b"MThd" + junk) if header else junk
    if not data:
        return data
    if kind == "chunk length":  # overwrite the length of the n-th chunk (MThd included)
        starts = [i for i in range(len(data) - 7) if data[i : i + 4] in (b"MThd", b"MTrk")]
        if not starts:
            return data
        at = starts[args[0] % len(starts)] + 4
        return data[:at] + args[1].to_bytes(4, "big") + data[at + 4 :]
    at = args[0] % len(data)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << args[1])]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + args[1] + data[at:]
    if kind == "overwrite":
        return data[:at] + args[1] + data[at + len(args[1]) :]
    return data[:at] + data[at + args[1] :]  # delete


@st.composite
def mutated_midi(draw) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for mutation in draw(st.lists(MUTATION, min_size=1, max_size=4)):
        data = mutate(data, mutation)
    return data


def read_or_fail_cleanly(data: bytes) -> None:
    """The property: a sane Score (also after track selection) or MidiError naming the source; a hang is
    ended by the watchdog (the time of each input is the benchmarks' business, not a test's)."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        score = read_score_bytes(data, "fuzzed").score
    except MidiError as err:
        assert str(err).startswith("fuzzed: ")
    else:
        assert score.ticks_per_quarter > 0 and score.end() / score.ticks_per_quarter <= LIMITS.max_quarters
        for track in score.tracks:
            if len(track.notes):
                n = track.notes.numpy()
                assert n["time"].min() >= 0 and n["duration"].min() >= 0
                assert 0 <= n["pitch"].min() and n["pitch"].max() <= 127
                assert 1 <= n["velocity"].min() and n["velocity"].max() <= 127
        assert all(t.mspq > 0 for t in score.tempos)
        assert all(ts.numerator > 0 and ts.denominator in (1, 2, 4, 8, 16, 32, 64) for ts in score.time_signatures)
        try:
            select_tracks(score, "merge", drums=True)
        except MidiError as err:
            assert "no notes" in str(err)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_mutations_change_the_bytes():
    """The fuzzer is not a no-op: each kind of mutation changes a seed."""
    for mutation in [
        ("flip", 20, 3),
        ("truncate", 30),
        ("insert", 5, b"\x99"),
        ("overwrite", 40, b"\xff\xff"),
        ("delete", 50, 3),
        ("chunk length", 1, 7),
        ("junk", b"abc", True),
    ]:
        assert mutate(SEEDS[0], mutation) != SEEDS[0], mutation


@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_midi())
def test_mutated_midi_reads_or_fails_cleanly(data):
    read_or_fail_cleanly(data)


@pytest.mark.slow
@settings(max_examples=50_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_midi())
def test_mutated_midi_reads_or_fails_cleanly_50000(data):
    read_or_fail_cleanly(data)


# -- model files: crafted hostile files and mutated bytes end as a model or a ModelFileError -------------------


def _good_model_bytes() -> bytes:
    """A small complete model file (untrained weights, stored primers), built once."""
    global _GOOD_MODEL
    if _GOOD_MODEL is None:
        import tempfile
        from pathlib import Path

        import numpy as np

        from lstmidi.config import load_preset
        from lstmidi.encodings import build_encoding
        from lstmidi.modelfile import save_model
        from lstmidi.models import build_model

        preset = load_preset("musicgenerator", ["model.hidden=8", "model.layers=1"])
        encoding = build_encoding(preset.encoding)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "good.lstmidi"
            save_model(
                path,
                encoding=encoding,
                model=build_model(preset.model, encoding.sizes),
                preset=preset,
                metrics={},
                command="test",
                primers=np.zeros((2, 4, 88), np.uint8),
            )
            _GOOD_MODEL = path.read_bytes()
    return _GOOD_MODEL


_GOOD_MODEL = None


def load_or_fail_cleanly(data: bytes, tmp_path) -> None:
    """The property for model files: a loaded model, or a ModelFileError naming the file, in time."""
    from lstmidi.errors import ModelFileError
    from lstmidi.modelfile import load_model

    path = tmp_path / "fuzzed.lstmidi"
    path.write_bytes(data)
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)  # a hang fails the run (speed: benchmarks/)
    try:
        load_model(path)
    except ModelFileError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_a_member_name_that_is_not_utf8_is_a_damaged_file(tmp_path):
    """A local header flagged UTF-8 (bit 11) whose name bytes are not UTF-8: zipfile raises
    UnicodeDecodeError while opening the member; the loader names the file (found by the fuzz test below)."""
    data = bytearray(_good_model_bytes())
    at = data.index(b"PK\x03\x04")  # the first member's local header
    data[at + 7] |= 0x08  # general-purpose flags (little-endian): bit 11, the name is UTF-8
    data[at + 30] = 0xC9  # its name's first byte: a UTF-8 lead byte without its continuation
    path = tmp_path / "bad-name.lstmidi"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}: damaged model file \('utf-8' codec"):
        load_model(path)


def test_crafted_model_files_are_refused(tmp_path):
    """Zip bombs, a 110 MB config.json, deep nesting and NaN weights: each refused (in time, one line)."""
    from lstmidi.errors import ModelFileError
    from lstmidi.modelfile import load_model
    from modelbytes import deep_config, huge_config, members, nan_model_weights, non_finite_weights, zip_with_bomb

    good = tmp_path / "good.lstmidi"
    good.write_bytes(_good_model_bytes())
    files = members(good)
    crafted = {
        "config bomb": zip_with_bomb(
            tmp_path / "a.lstmidi", {"weights.safetensors": files["weights.safetensors"]}, "config.json", 1024
        ),
        "weights bomb": zip_with_bomb(
            tmp_path / "b.lstmidi", {"config.json": files["config.json"]}, "weights.safetensors", 1024
        ),
        "huge config": huge_config(good, tmp_path / "c.lstmidi"),
        "deep config": deep_config(good, tmp_path / "d.lstmidi"),
        "NaN weight": non_finite_weights(good, tmp_path / "e.lstmidi"),
        "all NaN": nan_model_weights(good, tmp_path / "f.lstmidi"),
    }
    for name, path in crafted.items():
        faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)  # a hang fails the run (speed: benchmarks/)
        try:
            with pytest.raises(ModelFileError, match=r"refused|NaN or infinite") as info:
                load_model(path)
        finally:
            faulthandler.cancel_dump_traceback_later()
        assert str(info.value).startswith(f"{path}: "), name


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(MUTATION.filter(lambda m: m[0] != "junk"), min_size=1, max_size=3))
def test_mutated_model_files_load_or_fail_cleanly(tmp_path, mutations):
    data = _good_model_bytes()
    for mutation in mutations:
        data = mutate(data, mutation)
    load_or_fail_cleanly(data, tmp_path)
