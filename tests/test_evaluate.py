"""`lstmidi evaluate` end to end on a tiny model, the held-out NLL it reports, and its errors."""

import json
import math

import pytest

from conftest import TINY_CLI as TINY
from conftest import run, run_main, write_corpus
from lstmidi.corpus import load_corpus
from lstmidi.evaluation import held_out_nll
from lstmidi.metrics import SCALARS
from lstmidi.modelfile import load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("evaluate")
    os.environ["LSTMIDI_CACHE"] = str(root / "cache")
    write_corpus(root / "data", n=12)  # piece03 and piece10 fall in the test split, piece09 in validation
    run(["train", root / "data", "--preset", "musicgenerator", "--out", root / "run", "--epochs", "1", *TINY])
    return root / "run" / "model.lstmidi", root / "data"


def finite_numbers(x):
    if isinstance(x, dict):
        return all(finite_numbers(v) for v in x.values())
    if isinstance(x, list):
        return all(finite_numbers(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def test_evaluate_writes_report_plots_and_json(trained, tmp_path, monkeypatch, capsys):
    model, data = trained
    out, figures = tmp_path / "eval", tmp_path / "eval.json"
    printed = run(
        [
            "evaluate",
            model,
            "--data",
            data,
            "--num",
            "3",
            "--seconds",
            "4",
            "--seed",
            "1",
            "--out",
            out,
            "--json",
            figures,
        ]
    ).output
    assert "held-out NLL (2 test pieces)" in printed and "pitch_range" in printed and "report:" in printed
    report = (out / "report.md").read_text()
    for png in ("metrics.png", "histograms.png", "originality.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report
    assert sorted(p.name for p in (out / "generated").iterdir()) == [f"generated-0{i}.mid" for i in (1, 2, 3)]
    assert (
        "| test | 2 |" in report
        and "KL(real ‖ generated)" in report
        and "Originality against the 9 training pieces" in report
    )
    assert "## Quality gate" in report and "| share of notes in the key's scale |" in report
    assert "quality: in_scale" in printed and "| tell-apart accuracy" in printed

    r = json.loads(figures.read_text())
    assert {"nll", "metrics", "histograms", "originality", "held_out", "generated", "quality"} <= set(r)
    q = r["quality"]
    assert set(q["rows"]) == {
        "key_fit",
        "in_scale",
        "consonance",
        "tonic_ending",
        "max_sounding",
        "time_within_voices",
        "tell_apart",
    }
    assert len(q["keys"]["generated"]) == 3 and len(q["keys"]["real"]) == len(q["keys"]["random"]) == 2
    assert q["rows"]["in_scale"]["real"] == 1.0  # the test corpus's chords are diatonic
    assert r["corpus"] == {"train": 9, "valid": 1, "test": 2} and r["held_out"]["split"] == "test"
    assert r["nll"]["unit"] == "nats per frame" and r["nll"]["per_step"] > 0 and r["nll"]["notes"] == 2 * 64
    assert set(r["metrics"]) == set(SCALARS)
    for m in r["metrics"].values():
        assert 0 <= m["overlap_area"] <= 1.001 and m["kl_real_generated"] >= 0
        assert len(m["values"]["generated"]) == 3 and len(m["values"]["real"]) == 2
    assert len(r["histograms"]["real"]["pitch_class"]) == 12
    real = r["originality"]["real"]
    assert real["longest_copy"]["n"] == 2 and real["longest_copy"]["min"] >= 8  # chords of the same 5 shapes
    for key in ("nll", "metrics", "histograms"):
        assert finite_numbers(r[key]), key
    assert finite_numbers(r["originality"]["generated"]["longest_copy"])

    code, err = run_main(["evaluate", model, "--data", data, "--num", "1", "--out", out], monkeypatch, capsys)
    assert code == 1 and f"{out}: folder exists and is not empty (use --force" in err
    run(["evaluate", model, "--data", data, "--num", "1", "--seconds", "2", "--out", out, "--force"])


def test_held_out_nll_reproduces_the_validation_loss_and_counts_per_note(trained):
    model, data = trained
    loaded = load_model(model)
    corpus = load_corpus([data], loaded.encoding, loaded.preset.data)
    nll = held_out_nll(loaded, corpus.pieces["valid"], notes=64)
    assert nll["per_step"] == pytest.approx(loaded.config["metrics"]["valid_loss"], rel=1e-5)
    assert nll["steps"] == sum(len(p) - 1 for p in corpus.pieces["valid"])
    assert nll["per_note"] == pytest.approx(nll["per_step"] * nll["steps"] / 64)


def test_bad_input_gets_clear_errors(trained, tmp_path, monkeypatch, capsys):
    model, data = trained
    fake = tmp_path / "notes.lstmidi"
    fake.write_text("not a model")
    code, err = run_main(["evaluate", fake, "--data", data, "--out", tmp_path / "e1"], monkeypatch, capsys)
    assert code == 1 and f"{fake}: not an lstmidi model file" in err
    code, err = run_main(["evaluate", tmp_path / "none.lstmidi", "--out", tmp_path / "e2"], monkeypatch, capsys)
    assert code == 1 and "none.lstmidi: model file not found" in err
    (tmp_path / "empty").mkdir()
    code, err = run_main(
        ["evaluate", model, "--data", tmp_path / "empty", "--out", tmp_path / "e3"], monkeypatch, capsys
    )
    assert code == 1 and "no MIDI files" in err and str(tmp_path / "empty") in err
    one = tmp_path / "one"
    write_corpus(one, n=1)  # piece00 is a training file: nothing held out
    code, err = run_main(["evaluate", model, "--data", one, "--out", tmp_path / "e4"], monkeypatch, capsys)
    assert code == 1 and f"{one}: every usable file falls in the training split" in err
    code, err = run_main(
        ["evaluate", model, "--data", data, "--split", "train", "--out", tmp_path / "e5"], monkeypatch, capsys
    )
    assert code == 1 and "--split 'train': use test, valid or held-out" in err
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e4").exists() and not (tmp_path / "e5").exists()


@pytest.mark.parametrize("split, pieces", [("valid", 1), ("held-out", 3)])
def test_evaluate_on_other_held_out_splits(trained, tmp_path, split, pieces):
    model, data = trained
    run(
        [
            "evaluate",
            model,
            "--data",
            data,
            "--num",
            "2",
            "--seconds",
            "2",
            "--split",
            split,
            "--out",
            tmp_path / "e",
            "--json",
            tmp_path / "e.json",
        ]
    )
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["held_out"] == {"split": split, "pieces": pieces, "seconds": 2.0}
    assert r["nll"]["notes"] == pieces * 64 and len(r["quality"]["keys"]["real"]) == pieces
