"""--max-copy: generation that resamples stretches copied from the training data."""

import numpy as np
import pytest

from conftest import TINY_FLAGSHIP, run_main, write_corpus
from lstmidi.config import load_preset
from lstmidi.modelfile import load_model
from lstmidi.nocopy import generate_without_copies
from lstmidi.originality import NgramIndex, longest_copy, note_symbols
from lstmidi.sampling import generate
from lstmidi.training import train

TINY = [*TINY_FLAGSHIP, "train.epochs=3"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("nocopy")
    write_corpus(root / "data", n=10, bars=4)
    result = train(
        load_preset("flagship", TINY), [root / "data"], root / "run", progress=False, cache_dir=root / "cache"
    )
    return load_model(result.model_path), root


def test_first_copy_finds_the_earliest_run_longer_than_the_limit():
    index = NgramIndex([np.array([1, 2, 3, 4, 5, 6])])
    assert index.first_copy(np.array([9, 9, 2, 3, 4, 9]), 3) == 2  # symbols 2, 3, 4 = a run of 4 notes
    assert index.first_copy(np.array([9, 9, 2, 3, 4, 9]), 4) is None
    assert index.first_copy(np.array([1, 2, 9, 3, 4, 5, 6]), 3) == 3


def test_copied_stretches_are_resampled(tiny):
    loaded, _ = tiny
    original = generate(loaded, seconds=8, num=1, seed=3)[0]
    index = NgramIndex.build([original.score])  # as if the model had written out a training piece
    assert longest_copy(original.score, index) == len(note_symbols(original.score)) + 1
    # sampled from the model's whole distribution (a tiny model's top-p nucleus of pitches is often one note)
    pieces, reports = generate_without_copies(loaded, index, 4, seconds=8, num=1, seed=3, top_p=1.0)
    assert reports[0].resampled >= 1
    assert reports[0].longest_copy == longest_copy(pieces[0].score, index) <= 4


def test_max_copy_from_the_command_line(tiny, tmp_path, monkeypatch, capsys):
    loaded, root = tiny
    args = [
        "generate",
        root / "run" / "model.lstmidi",
        "-o",
        tmp_path / "x.mid",
        "--seconds",
        "4",
        "--no-wav",
        "--no-png",
        "--max-copy",
        "3",
        "--copy-data",
        root / "data",
    ]
    monkeypatch.setenv("LSTMIDI_CACHE", str(root / "cache"))
    code, err = run_main(args, monkeypatch, capsys)
    assert code == 0
    assert "x.mid: longest run copied from the training data" in err
    copied = int(err.split("training data ")[1].split(" notes")[0])
    resampled = int(err.split("(")[1].split(" stretches")[0])
    assert copied <= 3 or resampled == 8  # within the limit, or it gave up after 8 tries and says so
    assert (tmp_path / "x.mid").is_file()
