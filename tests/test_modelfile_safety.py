"""Loading a model file never unpickles, and every kind of broken or foreign file gives a ModelFileError
naming the file and the problem; config errors name the field and what is allowed."""

import json
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


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A small but complete model file (untrained weights, two stored primers)."""
    import numpy as np

    preset = load_preset("musicgenerator", ["model.hidden=8", "model.layers=1"])
    encoding = build_encoding(preset.encoding)
    model = build_model(preset.model, encoding.sizes)
    path = tmp_path_factory.mktemp("good") / "good.lstmidi"
    save_model(path, encoding=encoding, model=model, preset=preset, metrics={"valid_loss": 1.0}, command="test",
               primers=np.zeros((2, 4, 88), np.uint8))
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
    "truncated to half": (lambda g, t: _write(t / "x.lstmidi", g.read_bytes()[: g.stat().st_size // 2]),
                          r"not an lstmidi model file \(not a zip archive, or truncated\)"),
    "truncated to 100 bytes": (lambda g, t: _write(t / "x.lstmidi", g.read_bytes()[:100]), r"not a zip archive, or truncated"),
    "empty file": (lambda g, t: _write(t / "x.lstmidi", b""), r"not a zip archive, or truncated"),
    "text file": (lambda g, t: _write(t / "x.lstmidi", b"hello, I am a text file\n" * 20), r"not a zip archive"),
    "MIDI file": (lambda g, t: _write(t / "x.lstmidi", _midi_bytes(t)), r"not a zip archive"),
    "random zip": (lambda g, t: _zip(t / "x.lstmidi", {"readme.txt": b"hi", "data.bin": b"\0" * 10}),
                   r"not a complete lstmidi model file \(missing config.json, weights.safetensors\)"),
    "missing weights file": (lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.pop("weights.safetensors")),
                             r"missing weights.safetensors"),
    "config.json not JSON": (lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"config.json": b"{nope"})),
                             r"config.json is not valid JSON"),
    "config.json a list": (lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"config.json": b"[1, 2]"})),
                           r"config.json holds a list, not an object"),
    "other format": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.update(format="something-else"))),
                     r"not an lstmidi model file \(format 'something-else'\)"),
    "unknown format version": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.update(format_version=99))),
                               r"format version 99 is not supported by this lstmidi \(reads version 1\); upgrade"),
    "missing encoding key": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c.pop("encoding"))),
                             r"damaged model file \(config.json lacks encoding\)"),
    "missing model and preset keys": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: [c.pop("model"), c.pop("preset")])),
                                      r"config.json lacks model, preset"),
    "unknown model name": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c["model"].update(name="nosuch"))),
                           r"invalid configuration in model file \(model: unknown model 'nosuch'"),
    "model size changed in config": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_config(lambda c: c["model"].update(hidden=9))),
                                     r"weights do not match the model in the file \(.*has shape \(\d+, 8\), the model needs \(\d+, 9\)"),
    "wrong tensor shape": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.update({_first_tensor(w): torch.zeros(3, 3)}))),
                           r"weights do not match the model in the file \(\S+ has shape \(3, 3\), the model needs"),
    "missing tensor": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.pop(_first_tensor(w)))),
                       r"weights do not match the model in the file \(missing \S+\)"),
    "extra tensor": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.update(sneaky=torch.zeros(1)))),
                     r"weights do not match the model in the file \(unexpected sneaky\)"),
    "integer tensor": (lambda g, t: rewrite(g, t / "x.lstmidi", edit_weights(lambda w: w.update({k: v.to(torch.int64) for k, v in list(w.items())[:1]}))),
                       r"is torch.int64, not a floating-point tensor"),
    "weights not safetensors": (lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"weights.safetensors": b"\x00" * 64})),
                                r"damaged model file \(weights.safetensors: "),
    "primers without tensor": (lambda g, t: rewrite(g, t / "x.lstmidi", lambda f: f.update({"primers.safetensors": st_save({"x": torch.zeros(1)})})),
                               r"damaged model file \(primers.safetensors: KeyError\('primers'\)\)"),
    "flipped byte in weights (CRC)": (lambda g, t: _flip_member_byte(g, t / "x.lstmidi", "weights.safetensors"),
                                      r"damaged model file \("),
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
        path = rewrite(good, tmp_path / f"evil-{member}.lstmidi", lambda f, m=member: f.update({m: evil_pickle(target)}))
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
    with pytest.raises(LstmidiError, match=r"train.augment.transposee: unknown key 'transposee' in section "
                                           r"'train.augment' \(valid keys: transpose, stretch\)"):
        load_preset("musicgenerator", ["train.augment.transposee=2"])
    with pytest.raises(LstmidiError, match=r"trainn: unknown key 'trainn' \(valid keys: name, description, data, "
                                           r"encoding, model, train, sample\)"):
        load_preset("musicgenerator", ["trainn.lr=1"])
    with pytest.raises(LstmidiError, match=r"model 'rollnet': invalid configuration\n  hiddn: unknown key 'hiddn' "
                                           r"\(valid keys: hidden, layers, dropout, output\)"):
        load_preset("musicgenerator", ["model.hiddn=3"])
    with pytest.raises(LstmidiError, match=r"encoding 'pianoroll': invalid configuration\n  stepz: unknown key 'stepz' "
                                           r"\(valid keys: timing, steps_per_quarter,"):
        load_preset("musicgenerator", ["encoding.stepz=3"])


def test_out_of_range_value_names_the_field_and_the_constraint():
    with pytest.raises(LstmidiError, match=r"train.lr: Input should be greater than 0 \(got -1\)"):
        load_preset("musicgenerator", ["train.lr=-1"])
    with pytest.raises(LstmidiError, match=r"train.augment.transpose: Input should be less than or equal to 12 \(got 13\)"):
        load_preset("musicgenerator", ["train.augment.transpose=13"])
    with pytest.raises(LstmidiError, match=r"train.checkpoint_every_steps: Input should be greater than or equal to 0 \(got -5\)"):
        load_preset("musicgenerator", ["train.checkpoint_every_steps=-5"])


def test_config_errors_reach_the_cli_without_a_traceback(monkeypatch, capsys, tmp_path):
    from conftest import run_main

    code, err = run_main(["train", tmp_path, "--out", tmp_path / "run", "--set", "train.lrr=1"], monkeypatch, capsys)
    assert code == 1 and "valid keys: epochs" in err and "Traceback" not in err
