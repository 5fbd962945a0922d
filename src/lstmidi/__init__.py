"""lstmidi: train LSTM networks on folders of MIDI files and generate new music.

    from lstmidi import load_model, generate
    pieces = generate(load_model("run/model.lstmidi"), seconds=20, num=2, seed=1)

Names are imported on first use, so `import lstmidi` is cheap and generating never loads Lightning.
"""

from importlib import import_module

_API = {
    "demo": "api",
    "generate_files": "api",
    "prepare": "api",
    "render_file": "api",
    "load_preset": "config",
    "load_model": "modelfile",
    "save_model": "modelfile",
    "generate": "sampling",
    "train": "training",
    "LstmidiError": "errors",
    "MidiError": "errors",
    "ModelFileError": "errors",
    "OutputExistsError": "errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'lstmidi' has no attribute {name!r}")
    return getattr(import_module(f".{_API[name]}", __name__), name)
