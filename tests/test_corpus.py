import numpy as np
import pytest

from lstmidi.config import DataConfig
from lstmidi.corpus import bundled_corpus, find_midi_files, load_corpus, split_of
from lstmidi.encodings import build_encoding
from lstmidi.errors import LstmidiError

ROLL = build_encoding({"name": "pianoroll"})


def test_split_is_deterministic_and_close_to_the_fractions():
    names = [f"folder/piece{i}.mid" for i in range(4000)]
    splits = [split_of(n, 0.1, 0.1) for n in names]
    assert splits == [split_of(n, 0.1, 0.1) for n in names]
    assert 0.08 < splits.count("valid") / 4000 < 0.12 and 0.08 < splits.count("test") / 4000 < 0.12


def test_split_does_not_depend_on_where_the_folder_lives(tmp_path):
    from conftest import write_corpus

    write_corpus(tmp_path / "a" / "data", n=12)
    write_corpus(tmp_path / "b" / "elsewhere", n=12)
    one = load_corpus([tmp_path / "a" / "data"], ROLL, cache_dir=tmp_path / "c1")
    two = load_corpus([tmp_path / "b" / "elsewhere"], ROLL, cache_dir=tmp_path / "c2")
    assert one.names == two.names


def test_second_load_comes_from_cache_with_identical_arrays(corpus_dir, tmp_path):
    first = load_corpus([corpus_dir], ROLL, cache_dir=tmp_path / "cache")
    second = load_corpus([corpus_dir], ROLL, cache_dir=tmp_path / "cache")
    assert not first.cached and second.cached
    for split in first.pieces:
        assert len(first.pieces[split]) == len(second.pieces[split])
        for a, b in zip(first.pieces[split], second.pieces[split]):
            np.testing.assert_array_equal(a, b)
    # different settings must not reuse it
    other = load_corpus([corpus_dir], build_encoding({"name": "pianoroll", "onsets": True}), cache_dir=tmp_path / "cache")
    assert not other.cached and other.pieces["train"][0].shape[1] == 176


def test_parallel_and_serial_loading_agree(tmp_path):
    from conftest import write_corpus

    write_corpus(tmp_path / "many", n=40)
    serial = load_corpus([tmp_path / "many"], ROLL, DataConfig(workers=1), cache_dir=tmp_path / "c1")
    parallel = load_corpus([tmp_path / "many"], ROLL, DataConfig(workers=2), cache_dir=tmp_path / "c2")
    assert serial.names == parallel.names
    assert all(np.array_equal(a, b) for a, b in zip(serial.pieces["train"], parallel.pieces["train"]))


def test_no_usable_files_is_an_error(tmp_path):
    (tmp_path / "x.mid").write_text("nope")
    with pytest.raises(LstmidiError, match=r"no usable training files among 1 found .*x\.mid: not a MIDI file"):
        load_corpus([tmp_path], ROLL, cache_dir=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LstmidiError, match="no MIDI files"):
        find_midi_files([tmp_path / "empty"])


def test_bundled_bach_chorales_load(tmp_path):
    files = find_midi_files([bundled_corpus()])
    assert len(files) > 300
    corpus = load_corpus(None, ROLL, cache_dir=tmp_path / "cache")
    assert corpus.summary["loaded"] == len(files) and corpus.summary["skipped"] == 0
    assert corpus.summary["pieces"]["valid"] > 20
    lengths = [len(p) for p in corpus.pieces["train"]]
    assert 32 < np.median(lengths) < 1000  # chorales: tens of bars of 16th-note frames
