"""End to end through the `lstmidi` command (Typer's runner, same process)."""

import json

import pytest

from conftest import TINY_CLI as TINY
from conftest import run, run_main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from conftest import write_corpus

    root = tmp_path_factory.mktemp("cli")
    write_corpus(root / "data", n=8)
    run(["train", root / "data", "--preset", "musicgenerator", "--out", root / "run", "--epochs", "1", *TINY])
    return root / "run" / "model.lstmidi"


def test_prepare_prints_summary_and_writes_report(tmp_path, corpus_dir):
    (corpus_dir / "broken.mid").write_bytes(b"MThd\x00\x00")
    out = run(["prepare", corpus_dir, "--out", tmp_path / "prep"]).output
    assert "11 files: 10 loaded, 0 recovered, 1 skipped" in out and "skipped broken.mid: truncated MIDI file" in out
    report = json.loads((tmp_path / "prep" / "report.json").read_text())
    assert report["summary"]["skipped_files"] == {"broken.mid": "truncated MIDI file (header shorter than 14 bytes)"}
    again = run(["prepare", corpus_dir, "--out", tmp_path / "prep2"]).output
    assert "(from cache)" in again


def test_generate_writes_midi_wav_png_and_refuses_to_overwrite(model_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "song.mid"
    run(["generate", model_file, "-o", out, "--seconds", "2", "--num", "2", "--seed", "3"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["song-1.mid", "song-1.png", "song-1.wav", "song-2.mid", "song-2.png", "song-2.wav"]
    before = (tmp_path / "song-1.mid").read_bytes()
    code, err = run_main(
        ["generate", model_file, "-o", out, "--seconds", "2", "--num", "2", "--seed", "4"], monkeypatch, capsys
    )
    assert code == 1 and "song-1.mid" in err and "use --force" in err
    assert (tmp_path / "song-1.mid").read_bytes() == before
    run(["generate", model_file, "-o", out, "--seconds", "2", "--num", "2", "--seed", "4", "--force"])
    assert (tmp_path / "song-1.mid").read_bytes() != before


def test_generate_options(model_file, tmp_path):
    from symusic import Score

    from lstmidi.midi import load_score
    from lstmidi.modelfile import load_model

    primer = model_file.parent / "../data/piece01.mid"
    for name, seed in (("a.mid", "1"), ("b.mid", "2")):
        run(
            [
                "generate",
                model_file,
                "-o",
                tmp_path / name,
                "--steps",
                "8",
                "--no-wav",
                "--no-png",
                "--seed",
                seed,
                "--mode",
                "threshold",
                "--threshold",
                "0.2",
                "--primer",
                primer,
            ]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mid", "b.mid"]

    def onsets(score):  # (seconds, pitch) of every note
        return sorted(
            (round(float(t), 3), int(p))
            for tr in score.to("second").tracks
            for t, p in zip(tr.notes.numpy()["time"], tr.notes.numpy()["pitch"])
        )

    a, b = onsets(Score(tmp_path / "a.mid")), onsets(Score(tmp_path / "b.mid"))
    assert a == b  # --mode threshold draws nothing at random: the seed makes no difference
    enc = load_model(model_file).encoding
    frames = enc.encode(load_score(primer))
    primer_notes = onsets(enc.decode(frames))  # the primer as the model's piano roll holds it
    end = len(frames) * enc.seconds_per_step
    assert primer_notes and [n for n in a if n[0] < end - 1e-6] == primer_notes  # the piece continues the primer


def test_render_command(model_file, tmp_path):
    run(["generate", model_file, "-o", tmp_path / "g.mid", "--no-wav", "--no-png", "--steps", "16"])
    out = run(["render", tmp_path / "g.mid"]).output
    assert "g.wav" in out and "g.png" in out
    assert (tmp_path / "g.wav").stat().st_size > 1000


def test_bad_input_gets_clear_errors(model_file, tmp_path, monkeypatch, capsys):
    code, err = run_main(["train", "--preset", "nosuch"], monkeypatch, capsys)
    assert code == 1 and "unknown preset 'nosuch'" in err and "musicgenerator" in err
    code, err = run_main(["train", tmp_path, "--set", "model.hidden=-3"], monkeypatch, capsys)
    assert code == 1 and "hidden" in err
    code, err = run_main(["train", tmp_path / "nothing", "--out", tmp_path / "r"], monkeypatch, capsys)
    assert code == 1 and "no such file or folder" in err
    code, err = run_main(["generate", tmp_path / "none.lstmidi"], monkeypatch, capsys)
    assert code == 1 and "model file not found" in err
    code, err = run_main(
        ["generate", model_file, "-o", tmp_path / "x.mid", "--primer", tmp_path / "nope.mid"], monkeypatch, capsys
    )
    assert code == 1 and "nope.mid: file not found" in err


def test_presets_are_valid():
    from lstmidi.config import load_preset, preset_names

    assert {"midinet", "musicgenerator"} <= set(preset_names())
    for name in preset_names():
        load_preset(name)


def test_set_reaches_nested_sections_and_names_bad_keys():
    from lstmidi.config import load_preset
    from lstmidi.errors import LstmidiError

    assert load_preset("musicgenerator", ["train.augment.transpose=6"]).train.augment.transpose == 6
    with pytest.raises(LstmidiError, match="train.lr.x=1.*'lr' is a value, not a section"):
        load_preset("musicgenerator", ["train.lr.x=1"])
    with pytest.raises(LstmidiError, match="train.augment.spin"):
        load_preset("musicgenerator", ["train.augment.spin=1"])


def test_programs_with_merged_tracks_is_refused():
    from lstmidi.config import load_preset
    from lstmidi.errors import LstmidiError

    assert load_preset("flagship", ["encoding.programs=true"]).data.tracks == "all"
    with pytest.raises(LstmidiError, match="encoding.programs=true keeps instruments apart.*set data.tracks=all"):
        load_preset("flagship", ["encoding.programs=true", "data.tracks=merge"])


def test_flagship_is_the_default_preset_and_default_still_names_it(capsys):
    from lstmidi.api import DEFAULT_PRESET, training_preset
    from lstmidi.config import load_preset, preset_names

    assert DEFAULT_PRESET == "flagship" and "flagship" in preset_names() and "default" not in preset_names()
    chosen = training_preset(None, overrides=["train.epochs=2"])
    assert chosen.name == "flagship" and chosen.encoding["name"] == "events" and chosen.train.epochs == 2
    old = load_preset("default", ["train.epochs=2"])  # scripts written for 0.1
    assert "now named 'flagship'" in capsys.readouterr().err
    assert old.model_dump() == chosen.model_dump()


def test_fine_tuning_preset_is_the_models_own_with_overrides(model_file):
    from lstmidi.api import training_preset
    from lstmidi.config import load_preset
    from lstmidi.errors import LstmidiError
    from lstmidi.modelfile import load_model

    loaded = load_model(model_file)
    tuned = training_preset(None, init=model_file, overrides=["train.epochs=3", "train.lr=0.5"])
    assert tuned.encoding == loaded.preset.encoding and tuned.model == loaded.preset.model
    assert (tuned.train.epochs, tuned.train.lr) == (3, 0.5)
    assert (
        training_preset(None, init=loaded, overrides=["train.epochs=3", "train.lr=0.5"]) == tuned
    )  # a loaded model too
    assert (
        training_preset("midinet", init=model_file).model_dump() == load_preset("midinet").model_dump()
    )  # a preset wins
    with pytest.raises(LstmidiError, match="(?s)model.lstmidi.*train.nosuch"):
        training_preset(None, init=model_file, overrides=["train.nosuch=1"])


NOTE_PRESETS = {
    "tutorial": ["--set", "model.hidden=16", "--set", "train.window=8", "--set", "train.primer_steps=8"],
    "dl4music": ["--set", "model.hidden=8", "--set", "train.window=8", "--set", "train.primer_steps=8"],
    "seq2seq": [
        "--set",
        "model.hidden=16",
        "--set",
        "model.context=4",
        "--set",
        "train.window=4",
        "--set",
        "train.primer_steps=8",
        "--set",
        "train.sample_every=1",
    ],
}


@pytest.mark.parametrize("preset", list(NOTE_PRESETS))
def test_note_presets_train_and_generate_from_the_command_line(preset, tmp_path, corpus_dir):
    run(["train", corpus_dir, "--preset", preset, "--out", tmp_path / "run", "--epochs", "1", *NOTE_PRESETS[preset]])
    model = tmp_path / "run" / "model.lstmidi"
    out = run(
        [
            "generate",
            model,
            "-o",
            tmp_path / "g.mid",
            "--seconds",
            "3",
            "--primer",
            corpus_dir / "piece01.mid",
            "--primer-seconds",
            "2",
            "--top-p",
            "0.9",
        ]
    ).output
    assert "g.mid" in out and (tmp_path / "g.wav").stat().st_size > 1000 and (tmp_path / "g.png").is_file()
    assert (tmp_path / "run" / "distributions.png").is_file()
    if preset == "seq2seq":
        assert (tmp_path / "run" / "samples" / "epoch-001.png").is_file()


def test_train_rates_its_model_with_the_quality_gate(tmp_path, corpus_dir):
    from lstmidi.modelfile import load_model

    def train(name: str, pieces: int):
        args = ["--preset", "musicgenerator", "--out", tmp_path / name, "--epochs", "1", *TINY]
        out = run(["train", corpus_dir, *args, "--set", f"train.quality_pieces={pieces}"]).output
        return out, load_model(tmp_path / name / "model.lstmidi")

    out, loaded = train("run", 3)
    assert next(s for s in out.splitlines() if s.startswith("threads: "))  # the thread choice is logged
    q = loaded.config["metrics"]["quality"]
    assert q["pieces"] == 3 and q["rows"]["in_scale"]["real"] == 1.0  # the corpus's chords are diatonic
    line = next(s for s in out.splitlines() if s.startswith("quality: "))
    assert f"in_scale {q['rows']['in_scale']['generated']:.2f} (real 1.00, random" in line and "gate " in line
    # one epoch of a 16-unit model: its pitches are no better than random ones, and the user is told
    assert q["near_random"] and "warning: the pitch content of the generated pieces is closer to random" in out
    assert "Quality gate after training (3 pieces" in loaded.card
    assert "| share of notes in the key's scale |" in loaded.card
    out, loaded = train("off", 0)
    assert "quality:" not in out and "quality" not in loaded.config["metrics"]
    # the most keys any training frame holds becomes the model's --max-notes, the most common its usual_notes
    from lstmidi.api import model_corpus

    corpus, _ = model_corpus(loaded, [corpus_dir], progress=False)
    assert loaded.preset.sample.max_notes == max(int(p.sum(1).max()) for p in corpus.pieces["train"]) > 1
    held = [int(k) for p in corpus.pieces["train"] for k in p.sum(1) if k]  # keys held in each non-empty frame
    assert loaded.preset.sample.usual_notes == max(set(held), key=lambda k: (held.count(k), -k))


def test_demo_trains_and_writes_three_pieces(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = run(["demo", "--minutes", "0.05"]).output
    files = sorted(p.name for p in (tmp_path / "lstmidi-demo").iterdir())
    for part in ("pretrained", "trained"):
        assert [f for f in files if f.startswith(part)] == [
            f"{part}-{i}.{ext}" for i in (1, 2, 3) for ext in ("mid", "png", "wav")
        ]
    assert "validation loss" in out and "listen:" in out
    code, err = run_main(["demo", "--minutes", "0.05"], monkeypatch, capsys)
    assert code == 1 and "--force" in err  # refuses to replace the demo folder


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lstmidi", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Usage: python -m lstmidi" in out.stdout and "generate" in out.stdout


EXIT_SCRIPT = """
import atexit, sys, threading, time
from lstmidi.cli import run


class Teardown:
    def __del__(self):
        print("teardown", flush=True)


keep = Teardown()  # cleared, and so announced, only by Python's own slow shutdown
atexit.register(print, "atexit handler ran")
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
print("before", end="")  # unflushed output
sys.argv = ["lstmidi", *sys.argv[1:]]
run()
"""


@pytest.mark.parametrize("args, code", [(["--help"], 0), (["inspect", "missing.mid"], 1)])
def test_the_command_exits_promptly_after_finishing_its_work(args, code, tmp_path):
    """`run()` (the `lstmidi` command) waits for the other threads, runs the atexit handlers, flushes
    the output and keeps the exit code, but skips the teardown of every object (0.4 s with torch)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == code, out.stderr
    assert out.stdout.startswith("before") and "thread finished" in out.stdout
    assert "atexit handler ran" in out.stdout and "teardown" not in out.stdout
    if code:
        assert "error: missing.mid: no such file" in out.stderr
