import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmidi.config import DataConfig
from lstmidi.corpus import SPLITS, bundled_corpus, find_midi_files, load_corpus, split_of
from lstmidi.encodings import build_encoding
from lstmidi.errors import LstmidiError
from lstmidi.midi import load_score

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
    other = load_corpus(
        [corpus_dir], build_encoding({"name": "pianoroll", "onsets": True}), cache_dir=tmp_path / "cache"
    )
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


def test_find_midi_files_walks_folders_in_path_order(tmp_path):
    """Sorted by path part (a/b before a-c), MIDI suffixes in any case, names relative to the folder given;
    a linked file is found under its own name and resolved, a linked folder is not entered, a dangling
    link and other files are left out."""
    root = tmp_path / "music"
    for name in ("a/b/x.mid", "a-c/y.MIDI", "Z/q.kar", "top.mid", "real/r.mid", "a/notes.txt", ".mid"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (root / "linked").symlink_to(root / "real")
    (root / "link.midi").symlink_to(root / "top.mid")
    (root / "dangling.mid").symlink_to(root / "nowhere.mid")
    found = find_midi_files([root])
    assert [name for _, name in found] == ["Z/q.kar", "a/b/x.mid", "a-c/y.MIDI", "link.midi", "real/r.mid", "top.mid"]
    assert dict((name, path) for path, name in found)["link.midi"] == (root / "top.mid").resolve()
    assert all(path.is_absolute() and path == path.resolve() for path, _ in found)
    assert find_midi_files([root / "a" / "b" / "x.mid"]) == [((root / "a/b/x.mid").resolve(), "x.mid")]


def test_bundled_bach_chorales_load(tmp_path):
    files = find_midi_files([bundled_corpus()])
    assert len(files) > 300
    corpus = load_corpus(None, ROLL, cache_dir=tmp_path / "cache")
    assert corpus.summary["loaded"] + corpus.summary["recovered"] == len(files) and corpus.summary["skipped"] == 0
    # two chorales have notes that never get their note-off (symusic drops them; mido counts them)
    how = "read by the fallback reader: {} without note-off ended at the end of the track"
    assert corpus.summary["recovered_files"] == {
        "bwv299.mid": how.format("2 notes"),
        "bwv315.mid": how.format("1 note"),
    }
    assert corpus.summary["pieces"]["valid"] > 20
    lengths = [len(p) for p in corpus.pieces["train"]]
    assert 32 < np.median(lengths) < 1000  # chorales: tens of bars of 16th-note frames


def piece_of(corpus, name: str) -> np.ndarray:
    """The encoded piece of the file called `name`, whatever its split."""
    for split in SPLITS:
        if name in corpus.names[split]:
            return corpus.pieces[split][corpus.names[split].index(name)]
    raise KeyError(name)


def memory_mapped(array: np.ndarray) -> bool:
    """Whether `array` is (a view into) a memory-mapped file."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


def test_cache_is_keyed_on_content_not_on_size_and_time(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    first = load_corpus([corpus_dir], ROLL, cache_dir=cache)
    assert not first.cached and load_corpus([corpus_dir], ROLL, cache_dir=cache).cached
    target, other = corpus_dir / "piece00.mid", corpus_dir / "piece05.mid"
    assert target.stat().st_size == other.stat().st_size and target.read_bytes() != other.read_bytes()
    before = target.stat()
    target.write_bytes(other.read_bytes())  # same size; then the old modification time put back
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    changed = load_corpus([corpus_dir], ROLL, cache_dir=cache)
    assert not changed.cached and changed.manifest_hash != first.manifest_hash
    np.testing.assert_array_equal(piece_of(changed, "piece00.mid"), piece_of(first, "piece05.mid"))
    assert load_corpus([corpus_dir], ROLL, cache_dir=cache).cached


def test_cache_is_rebuilt_when_files_or_settings_change(corpus_dir, tmp_path):
    from conftest import chorale_like

    cache = tmp_path / "cache"
    first = load_corpus([corpus_dir], ROLL, DataConfig(workers=1), cache_dir=cache)
    assert load_corpus([corpus_dir], ROLL, DataConfig(workers=2), cache_dir=cache).cached  # workers change nothing
    chorale_like(99).dump_midi(corpus_dir / "added.mid")
    added = load_corpus([corpus_dir], ROLL, cache_dir=cache)
    assert not added.cached and added.summary["files"] == first.summary["files"] + 1
    assert piece_of(added, "added.mid").shape[1] == 88
    (corpus_dir / "added.mid").rename(corpus_dir / "renamed.mid")
    renamed = load_corpus([corpus_dir], ROLL, cache_dir=cache)
    assert not renamed.cached and "renamed.mid" in [r["name"] for r in renamed.report]
    (corpus_dir / "renamed.mid").unlink()
    assert load_corpus([corpus_dir], ROLL, cache_dir=cache).cached  # back to the first files: the first cache
    finer = load_corpus([corpus_dir], build_encoding({"name": "pianoroll", "steps_per_quarter": 1}), cache_dir=cache)
    assert not finer.cached and finer.total_steps("train") * 4 == pytest.approx(first.total_steps("train"), rel=0.05)
    split = load_corpus([corpus_dir], ROLL, DataConfig(valid_fraction=0.5, test_fraction=0.0), cache_dir=cache)
    assert not split.cached and split.summary["pieces"]["test"] == 0 and split.summary["pieces"]["valid"] > 0
    assert split.manifest_hash != first.manifest_hash


def test_pieces_are_memory_mapped_views_equal_to_fresh_encodings(corpus_dir, tmp_path):
    first = load_corpus([corpus_dir], ROLL, cache_dir=tmp_path / "cache")
    second = load_corpus([corpus_dir], ROLL, cache_dir=tmp_path / "cache")
    assert second.cached and not first.cached
    for corpus in (first, second):  # the first load reopens what it wrote: both behave the same
        for split in SPLITS:
            data, offsets = corpus.concatenated(split)
            assert memory_mapped(data) and not data.flags.writeable
            assert len(offsets) == len(corpus.pieces[split]) + 1 and offsets[-1] == len(data)
            for name, piece, start in zip(corpus.names[split], corpus.pieces[split], offsets):
                assert memory_mapped(piece) and np.shares_memory(piece, data)
                assert piece.dtype == np.uint8 and piece.shape[1] == 88
                np.testing.assert_array_equal(piece, ROLL.encode(load_score(corpus_dir / name)))
                np.testing.assert_array_equal(data[start : start + len(piece)], piece)


@pytest.mark.parametrize("spec", [{"name": "pseudonotes"}, {"name": "notes"}])
def test_cache_keeps_dtype_and_shape_of_every_kind_of_piece(corpus_dir, tmp_path, spec):
    first = load_corpus([corpus_dir], build_encoding(spec), cache_dir=tmp_path / "cache")
    second = load_corpus([corpus_dir], build_encoding(spec), cache_dir=tmp_path / "cache")
    assert second.cached
    for split in SPLITS:
        for a, b in zip(first.pieces[split], second.pieces[split]):
            assert a.dtype == b.dtype and a.shape == b.shape and memory_mapped(b)
            np.testing.assert_array_equal(a, b)


def test_empty_splits_are_cached(corpus_dir, tmp_path):
    data = DataConfig(valid_fraction=0.0, test_fraction=0.0)
    load_corpus([corpus_dir], ROLL, data, cache_dir=tmp_path / "cache")
    corpus = load_corpus([corpus_dir], ROLL, data, cache_dir=tmp_path / "cache")
    assert corpus.cached and len(corpus.pieces["train"]) == 10
    for split in ("valid", "test"):
        assert corpus.pieces[split] == [] and corpus.names[split] == [] and corpus.total_steps(split) == 0
        flat, offsets = corpus.concatenated(split)
        assert flat.shape == (0, 88) and list(offsets) == [0]


def test_cache_of_moved_files_reports_their_new_paths_and_damage_is_rebuilt(corpus_dir, tmp_path):
    cache = tmp_path / "cache"
    load_corpus([corpus_dir], ROLL, cache_dir=cache)
    moved = corpus_dir.rename(tmp_path / "moved")
    corpus = load_corpus([moved], ROLL, cache_dir=cache)
    assert corpus.cached and all(r["path"] == str(moved / r["name"]) for r in corpus.report)
    for npy in cache.glob("*.train.npy"):
        npy.write_bytes(npy.read_bytes()[:-10])  # a cut file: rebuilt, not trusted
    rebuilt = load_corpus([moved], ROLL, cache_dir=cache)
    assert not rebuilt.cached and rebuilt.summary == corpus.summary


def test_training_windows_read_the_memory_map_without_a_copy(corpus_dir, tmp_path):
    from lstmidi.batches import WindowDataset

    corpus = load_corpus([corpus_dir], ROLL, cache_dir=tmp_path / "cache")
    mapped = WindowDataset(corpus.concatenated("train"), 16, 8)
    copied = WindowDataset([np.array(p) for p in corpus.pieces["train"]], 16, 8)
    assert memory_mapped(mapped.data) and not memory_mapped(copied.data)
    assert mapped.index == copied.index and len(mapped) > 4
    for i in range(len(mapped)):
        for a, b in zip(mapped[i], copied[i]):
            assert torch.equal(a, b)


def test_a_cached_event_token_corpus_loads_without_building_the_tokenizer(corpus_dir, tmp_path):
    """The cache key of the event encoding is its parameters and miditok's version, so a warm `prepare`
    neither builds the miditok tokenizer nor imports miditok; a cold one imports miditok without the
    PyTorch data module its package imports when it can (torch: 1-2 s), which can still be imported after."""
    import subprocess
    import sys

    code = (
        "import sys; from lstmidi.corpus import load_corpus; from lstmidi.encodings import build_encoding; "
        f"c = load_corpus([{str(corpus_dir)!r}], build_encoding({{'name': 'events', 'steps_per_quarter': STEPS}}), "
        f"cache_dir={str(tmp_path / 'cache')!r}); print(c.cached, 'miditok' in sys.modules, 'torch' in sys.modules); "
        "import miditok.pytorch_data"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code.replace("STEPS", str(s))], capture_output=True, text=True, check=True
        ).stdout.split()
        for s in (8, 8, 4)
    ]
    # another grid: encoded again
    assert runs == [["False", "True", "False"], ["True", "False", "False"], ["False", "True", "False"]]


def test_only_the_files_the_cache_lacks_are_parsed_and_encoded(corpus_dir, tmp_path, monkeypatch):
    import lstmidi.corpus as corpus_module
    from conftest import chorale_like

    parsed = []
    load_one = corpus_module._load_one
    monkeypatch.setattr(corpus_module, "_load_one", lambda job: parsed.append(Path(job[0]).name) or load_one(job))
    cache = tmp_path / "cache"
    (corpus_dir / "broken.mid").write_text("this is not MIDI")  # skipped, and remembered as skipped
    first = load_corpus([corpus_dir], ROLL, DataConfig(workers=1), cache_dir=cache)
    n = first.summary["files"]
    assert len(parsed) == n
    shutil.copy(next(corpus_dir.glob("*.mid")), corpus_dir / "copy.mid")  # the same bytes: nothing to encode
    chorale_like(99).dump_midi(corpus_dir / "added.mid")
    parsed.clear()
    added = load_corpus([corpus_dir], ROLL, DataConfig(workers=1), cache_dir=cache)
    assert parsed == ["added.mid"] and not added.cached and added.summary["files"] == n + 2
    parsed.clear()
    resplit = load_corpus([corpus_dir], ROLL, DataConfig(workers=1, valid_fraction=0.5), cache_dir=cache)
    assert (
        parsed == [] and resplit.summary["pieces"]["valid"] > added.summary["pieces"]["valid"]
    )  # a split needs no parsing
    fresh = load_corpus([corpus_dir], ROLL, DataConfig(workers=1, valid_fraction=0.5), cache_dir=tmp_path / "other")
    assert [{k: v for k, v in r.items() if k != "path"} for r in fresh.report] == [
        {k: v for k, v in r.items() if k != "path"} for r in resplit.report
    ]
    assert resplit.summary["skipped"] == 1
    for split in ("train", "valid", "test"):
        assert fresh.names[split] == resplit.names[split]
        for a, b in zip(fresh.pieces[split], resplit.pieces[split]):
            np.testing.assert_array_equal(a, b)
    parsed.clear()
    onsets = build_encoding({"name": "pianoroll", "onsets": True})
    load_corpus([corpus_dir], onsets, DataConfig(workers=1), cache_dir=cache)
    assert len(parsed) == n + 2  # another encoding: every file again
    for meta in cache.glob("corpus-*.json"):  # damaged caches are passed over: the files are parsed again
        meta.write_text("{not json")
    parsed.clear()
    again = load_corpus([corpus_dir], ROLL, DataConfig(workers=1, test_fraction=0.3), cache_dir=cache)
    assert len(parsed) == n + 2 and again.summary["files"] == n + 2
