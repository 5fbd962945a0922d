"""Every door of the command line refuses bad input the same way: exit code 1, one `error:` line that
names the file or option and the reason, no traceback, nothing written or changed. One table row per
case (model files, generation options, presets, outputs), run through `main()` in this process."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from conftest import run, run_main, write_corpus
from lstmidi.api import bundled_model
from lstmidi.config import load_preset
from lstmidi.encodings import build_encoding
from lstmidi.modelfile import save_model
from lstmidi.models import build_model
from modelbytes import deep_config, huge_config, members, nan_model_weights, zip_with_bomb


def tiny_model(path: Path, preset: str, sets: list[str]) -> Path:
    """An untrained model file (built, not trained: milliseconds)."""
    p = load_preset(preset, sets)
    encoding = build_encoding(p.encoding)
    save_model(
        path, encoding=encoding, model=build_model(p.model, encoding.sizes), preset=p, metrics={}, command="test"
    )
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    roll = tiny_model(root / "roll.lstmidi", "musicgenerator", ["model.hidden=8", "model.layers=1"])
    files = members(roll)
    write_corpus(root / "data", n=4)
    (root / "malformed.yaml").write_text("data: [unclosed\n  tracks: all\n")
    (root / "list.yaml").write_text("- data\n- model\n")
    (root / "latin1.yaml").write_bytes("description: caf\xe9\n".encode("latin-1"))
    return {
        "roll": roll,
        "tokens": tiny_model(
            root / "tokens.lstmidi", "flagship", ["model.hidden=8", "model.layers=1", "model.embed=8"]
        ),
        "bomb": zip_with_bomb(
            root / "bomb.lstmidi", {"weights.safetensors": files["weights.safetensors"]}, "config.json", 1024
        ),
        "weights bomb": zip_with_bomb(
            root / "wbomb.lstmidi", {"config.json": files["config.json"]}, "weights.safetensors", 1024
        ),
        "huge": huge_config(roll, root / "huge.lstmidi"),
        "deep": deep_config(roll, root / "deep.lstmidi"),
        "nan weights": nan_model_weights(roll, root / "nan.lstmidi"),
        "data": root / "data",
        **{name: root / f"{name}.yaml" for name in ("malformed", "list", "latin1")},
    }


def gen(model: str, *options) -> list:
    """`generate MODEL -o out.mid` with the given options (MODEL: a key of `inputs`, or 'bundled')."""
    return ["generate", model, "-o", "out.mid", "--no-wav", "--no-png", *options]


PRELOAD = "preload"  # marks the cases that must fail before any model is loaded

# name -> (arguments, regex the error line must match after 'error: ', flags)
CASES = {
    # 1. model files
    "zip bomb (config.json 1 GB)": (gen("bomb"), r"\S+bomb.lstmidi: refused: config.json would unpack to 1,024 MB", ()),
    "zip bomb (weights 1 GB)": (
        gen("weights bomb"),
        r"\S+wbomb.lstmidi: refused: weights.safetensors is compressed 1,0\d\d:1",
        (),
    ),
    "110 MB config.json": (gen("huge"), r"\S+huge.lstmidi: refused: config.json would unpack to 11\d MB", ()),
    "config.json nested 200,000 deep": (
        gen("deep"),
        r"\S+deep.lstmidi: refused: config.json is nested 200,001 levels deep",
        (),
    ),
    "NaN weights": (
        gen("nan weights", "--steps", "8"),
        r"\S+nan.lstmidi: damaged model file \(weights.safetensors: \S+ holds NaN",
        (),
    ),
    # 2. length
    "--seconds 1e9": (
        gen("bundled", "--seconds", "1e9"),
        r"--seconds 1e\+09: a length above 0 and at most 3600 seconds",
        (PRELOAD,),
    ),
    "--seconds inf": (gen("bundled", "--seconds", "inf"), r"--seconds inf: a length above 0", (PRELOAD,)),
    "--seconds -1": (gen("bundled", "--seconds", "-1"), r"--seconds -1: a length above 0", (PRELOAD,)),
    "--seconds nan": (gen("roll", "--seconds", "nan"), r"--seconds nan: a length above 0", (PRELOAD,)),
    "--seconds 0": (gen("roll", "--seconds", "0"), r"--seconds 0: a length above 0", (PRELOAD,)),
    "--bars nan": (gen("roll", "--bars", "nan"), r"--seconds nan: a length above 0", (PRELOAD,)),
    "--steps 1e11": (
        gen("bundled", "--steps", "100000000000"),
        r"--steps 100000000000: 1 to 250,000 steps",
        (PRELOAD,),
    ),
    "--steps 0": (gen("roll", "--steps", "0"), r"--steps 0: 1 to 250,000 steps", (PRELOAD,)),
    "--num 0": (gen("roll", "--num", "0"), r"--num 0: pieces: 1 to 256", (PRELOAD,)),
    "--primer-seconds -3": (
        gen("roll", "--primer-seconds", "-3"),
        r"--primer-seconds -3: 0 \(no primer\) or more",
        (PRELOAD,),
    ),
    # 3. sampling
    "--temperature nan": (
        gen("bundled", "--temperature", "nan"),
        r"--temperature nan: a finite number above 0",
        (PRELOAD,),
    ),
    "--temperature -1 (piano roll)": (
        gen("roll", "--temperature", "-1"),
        r"--temperature -1: a finite number above 0",
        (PRELOAD,),
    ),
    "--temperature -1 (tokens)": (
        gen("tokens", "--temperature", "-1"),
        r"--temperature -1: a finite number above 0",
        (PRELOAD,),
    ),
    "--temperature 0": (
        gen("bundled", "--temperature", "0"),
        r"--temperature 0: a finite number above 0 .*--greedy",
        (PRELOAD,),
    ),
    "--top-k 0": (gen("bundled", "--top-k", "0"), r"--top-k 0: a whole number of at least 1", (PRELOAD,)),
    "--top-p 2 (tokens)": (
        gen("tokens", "--top-p", "2"),
        r"--top-p 2: a probability mass above 0 and at most 1",
        (PRELOAD,),
    ),
    "--top-p 2 (piano roll)": (
        gen("roll", "--top-p", "2"),
        r"--top-p 2: a probability mass above 0 and at most 1",
        (PRELOAD,),
    ),
    "--top-p 0": (gen("bundled", "--top-p", "0"), r"--top-p 0: a probability mass above 0", (PRELOAD,)),
    "--top-p 0.9 on a piano roll": (
        gen("roll", "--top-p", "0.9"),
        r"--top-p: for note and token models; this piano-roll model",
        (),
    ),
    "--threshold on a token model": (gen("tokens", "--threshold", "0.3"), r"--threshold: for piano-roll models", ()),
    "--threshold 2": (
        gen("roll", "--mode", "threshold", "--threshold", "2"),
        r"--threshold 2: a probability between 0 and 1",
        (PRELOAD,),
    ),
    "--mode foo": (gen("roll", "--mode", "foo"), r"--mode 'foo': choose bernoulli or threshold", (PRELOAD,)),
    "--beam 0": (gen("tokens", "--beam", "0"), r"--beam 0: 1 to 64 beams", (PRELOAD,)),
    "--repetition-penalty 0.5": (
        gen("tokens", "--repetition-penalty", "0.5"),
        r"--repetition-penalty 0.5: a finite number of at least 1",
        (PRELOAD,),
    ),
    "--max-repeat 0": (gen("tokens", "--max-repeat", "0"), r"--max-repeat 0: a whole number of at least 1", (PRELOAD,)),
    "--key 'H major'": (gen("tokens", "--key", "H major"), r"--key: unknown key 'H major'", (PRELOAD,)),
    "--programs 999": (
        gen("bundled", "--programs", "999"),
        r"--programs 999: 999 is not a General MIDI program; use 0..127",
        (PRELOAD,),
    ),
    "--programs 0,32,48 (bundled)": (
        gen("bundled", "--programs", "0,32,48"),
        r"--programs 0,32,48: quartets.lstmidi does not know 32, 48; it knows 0, 6, 40-42, 52, 54, 68$",
        (),
    ),
    "--programs=-1 without drums": (
        gen("bundled", "--programs=-1"),
        r"--programs -1: quartets.lstmidi does not know -1 \(drums: the model was trained without data.drums=true\)",
        (),
    ),
    "--pitch-range outside the model's pitches": (
        gen("tokens", "--pitch-range", "0-10"),
        r"--pitch-range 0-10: no pitch left that this model can write \(its pitches: 21-108\)",
        (),
    ),
    "--key and --pitch-range without a common pitch": (
        gen("tokens", "--pitch-range", "61-61", "--key", "C major"),
        r"--pitch-range 61-61 and --key C major: no pitch left",
        (),
    ),
    "constraints that leave no token": (
        gen("bundled", "--seconds", "3", "--pitch-range", "60-61", "--key", "C major", "--max-repeat", "1"),
        r"the sampling options together leave no token the model may write next",
        (),
    ),
    "--programs on a piano roll": (gen("roll", "--programs", "0"), r"--programs needs an event-token model", ()),
    "--max-notes on an event model": (gen("tokens", "--max-notes", "3"), r"--max-notes: for piano-roll models", ()),
    "--max-notes 0": (gen("roll", "--max-notes", "0"), r"--max-notes 0: a whole number of keys, at least 1", ()),
    "--fill on an event model": (gen("tokens", "--fill", "0.3"), r"--fill: for piano-roll models", ()),
    "--fill on an untrained model": (
        gen("roll", "--fill", "0.3"),
        r"--fill 0.3: this model does not know how many keys its frames usually hold: give --max-notes",
        (),
    ),
    "--fill 11": (gen("roll", "--fill", "11"), r"--fill 11: nats per key, from 0 \(off\) to 10", (PRELOAD,)),
    # 4. presets
    "preset YAML malformed": (
        ["train", "data", "--out", "run", "--preset", "malformed"],
        r"\S+malformed.yaml: not valid YAML \(expected ',' or '\]', but got ':' at line 2, column 9\)",
        (),
    ),
    "preset YAML a list": (
        ["train", "data", "--out", "run", "--preset", "list"],
        r"\S+list.yaml: a preset is a mapping of sections .*, not a list",
        (),
    ),
    "preset YAML not UTF-8": (
        ["train", "data", "--out", "run", "--preset", "latin1"],
        r"\S+latin1.yaml: not a UTF-8 text file \(byte 16: 0xe9\)",
        (),
    ),
    "--set value not YAML": (
        ["train", "data", "--out", "run", "--set", "train.lr=["],
        r"--set 'train.lr=\[': the value is not valid YAML",
        (),
    ),
    "data.drums on a piano roll": (
        ["train", "data", "--out", "run", "--preset", "musicgenerator", "--set", "data.drums=true"],
        r"musicgenerator.yaml: data.drums=true, but the 'pianoroll' encoding has no drums",
        (),
    ),
    "encoding.drums without data.drums": (
        ["train", "data", "--out", "run", "--preset", "flagship", "--set", "encoding.drums=true"],
        r"flagship.yaml: encoding.drums=true, but data.drums=false drops drum tracks",
        (),
    ),
    # 5. outputs
    "inspect --json onto a file": (
        ["inspect", "data", "--json", "mine.json"],
        r"mine.json: file exists \(use --force to overwrite\)",
        (),
    ),
    "prepare --out onto a report": (
        ["prepare", "data", "--out", "prep"],
        r"prep/report.json: file exists \(use --force to overwrite\)",
        (),
    ),
    "generate onto a file": (
        gen("roll", "--steps", "8"),
        r"out.mid: file exists \(use --force to overwrite\)",
        (PRELOAD,),
    ),
    "train on nothing": (
        ["train", "/nonexistent-lstmidi-data", "--out", "run"],
        r"/nonexistent-lstmidi-data: no such file or folder",
        (),
    ),
}


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "cache" not in p.parts
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_cleanly(case, inputs, tmp_path, monkeypatch, capsys):
    args, message, flags = CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.json").write_text('{"mine": 1}')
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "report.json").write_text('{"mine": 2}')
    (tmp_path / "out.mid").write_bytes(b"mine") if case == "generate onto a file" else None
    args = [str(bundled_model("quartets")) if a == "bundled" else str(inputs[a]) if a in inputs else a for a in args]
    if PRELOAD in flags:  # checked before any model is loaded

        def forbidden(*a, **k):
            raise AssertionError("a model was loaded before the options were checked")

        monkeypatch.setattr("lstmidi.modelfile.load_model", forbidden)
    before = tree(tmp_path)
    code, err = run_main(args, monkeypatch, capsys)
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0].removeprefix("error: ")), lines[0]
    assert tree(tmp_path) == before  # nothing written or changed


def test_max_notes_caps_the_keys_held_at_once(inputs, tmp_path, monkeypatch):
    """The untrained piano roll holds about half of its keys at once; --max-notes 3 holds at most 3."""
    from lstmidi.metrics import note_arrays
    from lstmidi.midi import read_score

    monkeypatch.chdir(tmp_path)
    for cap, name in ((None, "free.mid"), (3, "capped.mid")):
        extra = ["--max-notes", str(cap)] if cap else []
        run([*gen(str(inputs["roll"]))[:2], "-o", name, "--no-wav", "--no-png", "--steps", "16", *extra])
        onsets, durations, _ = note_arrays(read_score(tmp_path / name))
        most = max(int(((onsets <= t) & (onsets + durations > t)).sum()) for t in onsets)
        assert (most <= 3) == (cap is not None), (name, most)


def test_force_overwrites_and_output_folders(inputs, tmp_path, monkeypatch):
    """--force is the way to overwrite; -o FOLDER writes into the folder (existing, or ending in '/')."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.json").write_text("{}")
    run(["inspect", inputs["data"], "--json", "mine.json", "--force"])
    assert json.loads((tmp_path / "mine.json").read_text())["summary"]["files"] == 4
    run(["prepare", inputs["data"], "--out", "prep"])
    run(["prepare", inputs["data"], "--out", "prep", "--force"])
    (tmp_path / "songs").mkdir()
    out = run(
        gen(str(inputs["roll"]), "--steps", "8")[:2] + ["-o", "songs", "--no-wav", "--no-png", "--steps", "8"]
    ).output
    assert (tmp_path / "songs" / "generated.mid").is_file() and not (tmp_path / "songs.mid").exists()
    assert "songs/generated.mid" in out
    run([*gen(str(inputs["roll"]))[:2], "-o", "new/", "--no-wav", "--no-png", "--steps", "8", "--num", "2"])
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["generated-1.mid", "generated-2.mid"]


def test_a_failed_train_leaves_nothing_that_blocks_the_retry(inputs, tmp_path, monkeypatch, capsys):
    from conftest import TINY_CLI

    monkeypatch.chdir(tmp_path)
    code, err = run_main(["train", "/nonexistent-lstmidi-data", "--out", "run"], monkeypatch, capsys)
    assert code == 1 and not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("an earlier run")
    code, err = run_main(["train", "/nonexistent-lstmidi-data", "--out", "mine"], monkeypatch, capsys)
    assert code == 1 and "run folder exists" in err and (tmp_path / "mine" / "keep.txt").read_text() == "an earlier run"
    (tmp_path / "empty").mkdir()
    code, err = run_main(["train", "/nonexistent-lstmidi-data", "--out", "empty"], monkeypatch, capsys)
    assert code == 1 and (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())  # kept: it was there
    run(["train", inputs["data"], "--preset", "musicgenerator", "--out", "run", "--epochs", "1", *TINY_CLI])
    assert (tmp_path / "run" / "model.lstmidi").is_file()


def test_a_bad_preset_fails_before_torch_is_imported(inputs, tmp_path):
    import subprocess
    import sys

    for args in (["--preset", str(inputs["malformed"])], ["--set", "train.lr=-1"], ["--set", "train.lrr=1"]):
        code = (
            "import sys\nfrom lstmidi.cli import main\nsys.argv = ['lstmidi', 'train', 'data', '--out', 'run', "
            "*sys.argv[1:]]\n"
            "try:\n    main()\nfinally:\n    print('torch' in sys.modules, 'lightning' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert out.returncode == 1 and out.stderr.startswith("error: "), out.stderr
        assert out.stdout.strip() == "False False", args
        assert not (tmp_path / "run").exists()


def test_programs_minus_one_generates_drums_on_a_drum_model(tmp_path, monkeypatch):
    """A flagship model with data.drums=true (untrained here): --programs=-1 writes a drums-only piece."""
    from lstmidi.midi import read_score

    model = tiny_model(
        tmp_path / "drums.lstmidi", "flagship", ["data.drums=true", "model.hidden=8", "model.layers=1", "model.embed=8"]
    )
    monkeypatch.chdir(tmp_path)
    run(gen(str(model), "--steps", "200", "--seed", "1", "--programs=-1", "--num", "4"))  # an untrained model
    scores = [read_score(tmp_path / f"out-{i}.mid") for i in range(1, 5)]  # may end a piece before any note
    assert sum(s.note_num() for s in scores) > 0
    assert all(t.is_drum for s in scores for t in s.tracks if len(t.notes))
