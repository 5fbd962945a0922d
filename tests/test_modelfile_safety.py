"""Loading a model file never unpickles, and every kind of broken or foreign file gives a ModelFileError
naming the file and the problem; config errors name the field and what is allowed."""

import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from lstmidi.config import load_preset
from lstmidi.encodings import build_encoding
from lstmidi.errors import LstmidiError, ModelFileError
from lstmidi.modelfile import load_model, save_model
from lstmidi.models import build_model
from modelbytes import deep_config, huge_config, non_finite_weights, zip_with_bomb


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small but complete model file (untrained weights, two stored primers)."""
    import numpy as np

    preset = load_preset("musicgenerator", ["model.hidden=8", "model.layers=1"])
    encoding = build_encoding(preset.encoding)
    model = build_model(preset.model, encoding.sizes)
    path = tmp_path_factory.mktemp("good") / "good.lstmidi"
    save_model(
        path,
        encoding=encoding,
        model=model,
        preset=preset,
        metrics={"valid_loss": 1.0},
        command="test",
        primers=np.zeros((2, 4, 88), np.uint8),
    )
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def rewrite(good: Path, out: Path, change) -> Path:
    """Copy of the good model file with its members changed by change(dict name -> bytes)."""
    files = members(good)
    change(files)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out


def edit_config(edit):
    def change(files):
        config = json.loads(files["config.json"])
        edit(config)
        files["config.json"] = json.dumps(config).encode()

    return change


def edit_weights(edit):
    def change(files):
        weights = dict(st_load(files["weights.safetensors"]))
        edit(weights)
        files["weights.safetensors"] = st_save(weights)

    return change


class Evil:
    """A pickle payload that would create a file if anything unpickled it."""

    target = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def evil_pickle(target: Path) -> bytes:
    Evil.target = str(target)
    return pickle.dumps(Evil())


def _first_tensor(weights):
    return next(iter(weights))


CASES = {
    # name: (build(good, tmp_path) -> path, regex the message must match after the path)
    "truncated to half": (
        lambda g, t: _write(t / "x.lstmidi", g.read_bytes()[: g.stat().st_size // 2]),
        r"not an lstmidi model file \(not a zip archive, or truncated\)",
    ),
    "truncated to 100 bytes": (
        lambda g, t: _write(t / "x.lstmidi", g.read_bytes()[:100]),
        r"not a zip archive, or truncated",
    ),
    "empty file": (lambda g, t: _write(t / "x.lstmidi", b""), r"not a zip archive, or truncated"),
    "text file": (lambda g, t: _write(t / "x.lstmidi", b"hello, I am a text file\n" * 20), r"not a zip archive"),
    "MIDI file": (lambda g, t: _write(t / "x.lstmidi", _midi_bytes(t)), r"not a zip archive"),
    "random zip": (
        lambda g, t: _zip(t / "x.lstmidi", {"readme.txt": b"hi", "data.bin": b"\0" * 10}),
        r"not a complete lstmidi model file \(missing config.json, weights.safetensors\)",
    ),
    "missing weights file": (
        lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.pop("weights.safetensors")),
        r"missing weights.safetensors",
    ),
    "config.json not JSON": (
        lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"config.json": b"{nope"})),
        r"config.json is not valid JSON",
    ),
    "config.json a list": (
        lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"config.json": b"[1, 2]"})),
        r"config.json holds a list, not an object",
    ),
    "other format": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.update(format="something-else"))),
        r"not an lstmidi model file \(format 'something-else'\)",
    ),
    "unknown format version": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.update(format_version=99))),
        r"format version 99 is not supported by this lstmidi \(reads version 1\); upgrade",
    ),
    "missing encoding key": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.pop("encoding"))),
        r"damaged model file \(config.json lacks encoding\)",
    ),
    "missing model and preset keys": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: [c.pop("model"), c.pop("preset")])),
        r"config.json lacks model, preset",
    ),
    "unknown model name": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c["model"].update(name="nosuch"))),
        r"invalid configuration in model file \(model: unknown model 'nosuch'",
    ),
    "model size changed in config": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c["model"].update(hidden=9))),
        r"weights do not match the model in the file \(.*has shape \(\d+, 8\), the model needs \(\d+, 9\)",
    ),
    "wrong tensor shape": (
        lambda g, t: rewrite(
            g, t / "x.lstmidi", edit_weights(lambda w: w.update({_first_tensor(w): torch.zeros(3, 3)}))
        ),
        r"weights do not match the model in the file \(\S+ has shape \(3, 3\), the model needs",
    ),
    "missing tensor": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.pop(_first_tensor(w)))),
        r"weights do not match the model in the file \(missing \S+\)",
    ),
    "extra tensor": (
        lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.update(sneaky=torch.zeros(1)))),
        r"weights do not match the model in the file \(unexpected sneaky\)",
    ),
    "integer tensor": (
        lambda g, t: rewrite(
            g, t / "x.lstmidi", edit_weights(lambda w: w.update({k: v.to(torch.int64) for k, v in list(w.items())[:1]}))
        ),
        r"is torch.int64, not a floating-point tensor",
    ),
    "weights not safetensors": (
        lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"weights.safetensors": b"\x00" * 64})),
        r"damaged model file \(weights.safetensors: ",
    ),
    "primers without tensor": (
        lambda g, t: rewrite(
            g, t / "x.lstmidi", lambda f: f.update({"primers.safetensors": st_save({"x": torch.zeros(1)})})
        ),
        r"damaged model file \(primers.safetensors: KeyError\('primers'\)\)",
    ),
    "flipped byte in weights (CRC)": (
        lambda g, t: _flip_member_byte(g, t / "x.lstmidi", "weights.safetensors"),
        r"damaged model file \(",
    ),
    # hostile files (issue 14): refused before they are decompressed or parsed
    "zip bomb: config.json of 1 GB in 1 MB": (
        lambda g, t: zip_with_bomb(
            t / "x.lstmidi", {"weights.safetensors": members(g)["weights.safetensors"]}, "config.json", 1024
        ),
        r"refused: config.json would unpack to 1,024 MB \(the limit is 4 MB\)$",
    ),
    "zip bomb: weights of 1 GB in 1 MB": (
        lambda g, t: zip_with_bomb(
            t / "x.lstmidi", {"config.json": members(g)["config.json"]}, "weights.safetensors", 1024
        ),
        r"refused: weights.safetensors is compressed 1,0\d\d:1 \(the limit is 4:1 for members over 1 MB; a zip "
        r"bomb\?\)$",
    ),
    "zip bomb: primers of 64 MB": (
        lambda g, t: zip_with_bomb(
            t / "x.lstmidi",
            {k: v for k, v in members(g).items() if k != "primers.safetensors"},
            "primers.safetensors",
            64,
        ),
        r"refused: primers.safetensors is compressed 1,0\d\d:1",
    ),
    "config.json of 110 MB (valid JSON)": (
        lambda g, t: huge_config(g, t / "x.lstmidi"),
        r"refused: config.json would unpack to 11\d MB \(the limit is 4 MB\)$",
    ),
    "config.json nested 200,000 deep": (
        lambda g, t: deep_config(g, t / "x.lstmidi"),
        r"refused: config.json is nested 200,001 levels deep \(the limit is 32\)$",
    ),
    "config.json nested 33 deep": (
        lambda g, t: deep_config(g, t / "x.lstmidi", 32),
        r"refused: config.json is nested 33 levels deep",
    ),
    "10,000 zip entries": (
        lambda g, t: _zip(t / "x.lstmidi", {**members(g), **{f"f{i}": b"" for i in range(10_000)}}),
        r"refused: not an lstmidi model file \(10,004 zip entries, [\d,]+-byte directory; a model file has 4\)$",
    ),
    "NaN weight": (
        lambda g, t: non_finite_weights(g, t / "x.lstmidi"),
        r"damaged model file \(weights.safetensors: \S+ holds NaN or infinite values\)$",
    ),
    "infinite weight": (
        lambda g, t: non_finite_weights(g, t / "x.lstmidi", float("inf")),
        r"holds NaN or infinite values\)$",
    ),
    "integer too long for Python": (
        lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"config.json": b'{"a": ' + b"9" * 5000 + b"}"})),
        r"config.json is not valid JSON",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _midi_bytes(tmp_path: Path) -> bytes:
    from conftest import chorale_like

    chorale_like(1).dump_midi(tmp_path / "p.mid")
    return (tmp_path / "p.mid").read_bytes()


def _flip_member_byte(good: Path, out: Path, name: str) -> Path:
    """Change one byte inside a member's stored data (the zip's CRC check or inflate must catch it)."""
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo(name)
    header = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[header + info.compress_size // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_broken_or_foreign_files_give_a_model_file_error(case, good, tmp_path):
    build, message = CASES[case]
    path = build(good, tmp_path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text  # names the file
    assert re.search(message, text), text


def test_good_file_loads(good):
    loaded = load_model(good)
    assert loaded.primers.shape == (2, 4, 88)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileError, match=r"nothing.lstmidi: model file not found"):
        load_model(tmp_path / "nothing.lstmidi")
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model(tmp_path)


def test_loading_never_unpickles(good, tmp_path, monkeypatch):
    # a pickle smuggled in place of the weights (and of the primers) is rejected without being run
    target = tmp_path / "pwned.txt"
    for member in ("weights.safetensors", "primers.safetensors"):
        path = rewrite(
            good, tmp_path / f"evil-{member}.lstmidi", lambda f, m=member: f.update({m: evil_pickle(target)})
        )
        with pytest.raises(ModelFileError, match="damaged model file"):
            load_model(path)
    assert not target.exists()

    # and a good file loads with every unpickling entry point disabled
    def forbidden(*a, **k):
        raise AssertionError("load_model unpickled something")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_model(good)
    source = (Path(__file__).parent.parent / "src" / "lstmidi" / "modelfile.py").read_text()
    assert not re.search(r"import pickle|pickle\.|torch\.load\b|weights_only=False", source)


# -- configuration errors ---------------------------------------------------------------------------------


def test_unknown_preset_lists_the_presets():
    with pytest.raises(LstmidiError, match=r"unknown preset 'nosuch' \(presets: .*musicgenerator.*\)"):
        load_preset("nosuch")


def test_unknown_set_key_lists_the_valid_keys_of_its_section():
    with pytest.raises(LstmidiError) as info:
        load_preset("musicgenerator", ["train.lrr=1"])
    text = str(info.value)
    assert "train.lrr: unknown key 'lrr' in section 'train' (valid keys: epochs, batch_size, lr," in text
    with pytest.raises(
        LstmidiError,
        match=r"train.augment.transposee: unknown key 'transposee' in section "
        r"'train.augment' \(valid keys: transpose, stretch\)",
    ):
        load_preset("musicgenerator", ["train.augment.transposee=2"])
    with pytest.raises(
        LstmidiError,
        match=r"trainn: unknown key 'trainn' \(valid keys: name, description, data, "
        r"encoding, model, train, sample\)",
    ):
        load_preset("musicgenerator", ["trainn.lr=1"])
    with pytest.raises(
        LstmidiError,
        match=r"model 'rollnet': invalid configuration\n  hiddn: unknown key 'hiddn' "
        r"\(valid keys: members, hidden, layers, dropout, output, span, components\)",
    ):
        load_preset("musicgenerator", ["model.hiddn=3"])
    with pytest.raises(
        LstmidiError,
        match=r"encoding 'pianoroll': invalid configuration\n  stepz: unknown key 'stepz' "
        r"\(valid keys: timing, steps_per_quarter,",
    ):
        load_preset("musicgenerator", ["encoding.stepz=3"])


def test_out_of_range_value_names_the_field_and_the_constraint():
    with pytest.raises(LstmidiError, match=r"train.lr: Input should be greater than 0 \(got -1\)"):
        load_preset("musicgenerator", ["train.lr=-1"])
    with pytest.raises(
        LstmidiError, match=r"train.augment.transpose: Input should be less than or equal to 12 \(got 13\)"
    ):
        load_preset("musicgenerator", ["train.augment.transpose=13"])
    with pytest.raises(
        LstmidiError, match=r"train.checkpoint_every_steps: Input should be greater than or equal to 0 \(got -5\)"
    ):
        load_preset("musicgenerator", ["train.checkpoint_every_steps=-5"])


def test_config_errors_reach_the_cli_without_a_traceback(monkeypatch, capsys, tmp_path):
    from conftest import run_main

    code, err = run_main(["train", tmp_path, "--out", tmp_path / "run", "--set", "train.lrr=1"], monkeypatch, capsys)
    assert code == 1 and "valid keys: epochs" in err and "Traceback" not in err


# -- memory: a zip bomb is refused without decompressing it ---------------------------------------------------

MEMORY_LIMIT = 1536 * 2**20  # address space of the child: importing torch and lstmidi takes ~620 MB of it here

CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from lstmidi.errors import ModelFileError
from lstmidi.modelfile import load_model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_model(sys.argv[1])
    print("loaded")
except ModelFileError as err:
    print("refused:", err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, "MB")
"""


def test_zip_bombs_are_refused_cheaply_under_a_memory_limit(good, tmp_path):
    """2 GB of weights (or config.json) in a 2 MB file, loaded in a child whose address space is capped at
    1.5 GB: refused with the reason, and the peak memory grows by less than 50 MB (the old loader read every
    member whole: MemoryError, or 2.4 GB for 1 GB of config.json)."""
    import subprocess
    import sys

    files = members(good)
    bombs = [
        zip_with_bomb(tmp_path / "weights.lstmidi", {"config.json": files["config.json"]}, "weights.safetensors", 2048),
        zip_with_bomb(
            tmp_path / "config.lstmidi", {"weights.safetensors": files["weights.safetensors"]}, "config.json", 2048
        ),
    ]
    for bomb in bombs:
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(limit=MEMORY_LIMIT), str(bomb)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert out.returncode == 0, out.stderr
        refused, grown = out.stdout.strip().splitlines()
        assert refused.startswith(f"refused: {bomb}: refused: "), refused
        assert ("config.json would unpack to 2,048 MB" if bomb.stem == "config" else "compressed 1,0") in refused, (
            refused
        )
        assert int(grown.split()[0]) < 50, grown
