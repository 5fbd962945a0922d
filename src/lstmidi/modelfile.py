"""The `.lstmidi` model file: one zip holding everything needed to generate, and nothing executable.

    config.json          format version, encoding (name + all parameters), model (name + spec),
                         the full preset (data, train, sample), metrics, corpus summary, library versions
    weights.safetensors  the model's tensors (safetensors: loading never unpickles)
    primers.safetensors  optional: short excerpts of held-out music used as default primers
    card.md              human-readable card: the exact training command and its metrics

`load_model(path)` needs nothing else: no data folder, no config file. Nothing else loads weights.
"""

from __future__ import annotations

import json
import platform
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .files import atomic_path
from .config import Preset
from .encodings import Encoding, build_encoding
from .errors import ModelFileError, OutputExistsError
from .models import build_model

FORMAT = "lstmidi-model"
FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in ("lstmidi", "torch", "symusic", "numpy", "lightning"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "unknown"
    return versions


@dataclass
class LoadedModel:
    """A model ready to generate: the network (eval mode), its encoding and everything it was saved with."""

    model: torch.nn.Module
    encoding: Encoding
    preset: Preset
    config: dict[str, Any]
    card: str
    primers: np.ndarray | None
    path: Path


def render_card(config: dict[str, Any]) -> str:
    m = config["metrics"]
    lines = [
        f"# lstmidi model: {config['preset_name'] or config['model']['name']}",
        "",
        f"Trained with:\n\n```\n{config['command']}\n```",
        "",
        f"- encoding: `{config['encoding']['name']}` {json.dumps({k: v for k, v in config['encoding'].items() if k != 'name'})}",
        f"- model: `{config['model']['name']}` {json.dumps({k: v for k, v in config['model'].items() if k != 'name'})}"
        f" ({config['parameters']:,} parameters)",
        f"- data: {json.dumps(config.get('corpus', {}))}",
        f"- epochs: {m.get('epochs')}, training time: {m.get('train_seconds')} s",
        f"- validation loss: {_fmt(m.get('valid_loss'))} {m.get('unit', '')}"
        + "".join(f", {k.removeprefix('valid_').replace('_', ' ')} {_fmt(v)}" for k, v in m.items()
                  if k.startswith("valid_") and k != "valid_loss"),
        "- baselines on the same validation split: "
        + (", ".join(f"{k} {_fmt(v)}" for k, v in m.get("baselines", {}).items()) or "none"),
        f"- final training loss: {_fmt(m.get('final_train_loss'))}",
        *_quality_lines(m.get("quality")),
        f"- libraries: {json.dumps(config['versions'])}",
        f"- created: {config['created']}",
    ]
    return "\n".join(lines) + "\n"


def _quality_lines(q: dict | None) -> list[str]:
    if not q:
        return []
    from .quality import gate_table

    return ["", f"Quality gate after training ({q['pieces']} pieces of {q['seconds']:g} s against the validation "
            f"pieces and a random-pitch control; see `lstmidi evaluate`): **{'passed' if q['passed'] else 'not passed'}**",
            "", *gate_table(q), ""]


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def save_model(path: str | Path, *, encoding: Encoding, model: torch.nn.Module, preset: Preset,
               metrics: dict[str, Any], command: str, primers: np.ndarray | None = None,
               corpus_summary: dict | None = None, history: list | None = None, force: bool = False) -> Path:
    """Write a `.lstmidi` file atomically (temp file + rename); refuses to overwrite unless `force`."""
    import datetime

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: file exists (use --force to overwrite)")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset_name": preset.name,
        "encoding": encoding.to_dict(),
        "model": dict(preset.model),
        "preset": preset.model_dump(),
        "metrics": metrics,
        "history": history or [],
        "corpus": corpus_summary or {},
        "command": command,
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config, indent=1))
        z.writestr("weights.safetensors", st_save(weights))
        if primers is not None:
            z.writestr("primers.safetensors", st_save({"primers": torch.from_numpy(np.ascontiguousarray(primers))}))
        z.writestr("card.md", render_card(config))
    return path


def load_model(path: str | Path) -> LoadedModel:
    """Read a `.lstmidi` file; raises ModelFileError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = {"config.json", "weights.safetensors"} - names
            if missing:
                raise ModelFileError(f"{path}: not a complete lstmidi model file (missing {', '.join(sorted(missing))})")
            config = json.loads(z.read("config.json"))
            weights_bytes = z.read("weights.safetensors")
            primer_bytes = z.read("primers.safetensors") if "primers.safetensors" in names else None
            card = z.read("card.md").decode() if "card.md" in names else ""
    except zipfile.BadZipFile as err:
        if "CRC" in str(err):  # a member's bytes were changed after it was written
            raise ModelFileError(f"{path}: damaged model file ({err})") from None
        raise ModelFileError(f"{path}: not an lstmidi model file (not a zip archive, or truncated)") from None
    except (zlib.error, EOFError, NotImplementedError, RuntimeError) as err:  # damaged, encrypted or exotic members
        raise ModelFileError(f"{path}: damaged model file ({err})") from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the model file ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: damaged model file (config.json is not valid JSON)") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: damaged model file (config.json holds a {type(config).__name__}, not an object)")
    if config.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an lstmidi model file (format {config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model file format version {config.get('format_version')!r} is not supported "
                             f"by this lstmidi (reads version {FORMAT_VERSION}); upgrade lstmidi")
    missing = [k for k in ("encoding", "model", "preset") if not isinstance(config.get(k), dict)]
    if missing:
        raise ModelFileError(f"{path}: damaged model file (config.json lacks {', '.join(missing)})")
    try:
        preset = Preset.model_validate(config["preset"])
        encoding = build_encoding(config["encoding"])
        model = build_model(config["model"], encoding.sizes)
    except Exception as err:
        raise ModelFileError(f"{path}: invalid configuration in model file ({err})") from None
    try:
        weights = st_load(weights_bytes)
    except Exception as err:
        raise ModelFileError(f"{path}: damaged model file (weights.safetensors: {err})") from None
    problem = _weights_problem(model.state_dict(), weights)
    if problem:
        raise ModelFileError(f"{path}: weights do not match the model in the file ({problem})")
    model.load_state_dict(weights)
    try:
        primers = st_load(primer_bytes)["primers"].numpy() if primer_bytes else None
    except Exception as err:
        raise ModelFileError(f"{path}: damaged model file (primers.safetensors: {err!r})") from None
    model.eval()
    return LoadedModel(model, encoding, preset, config, card, primers, path)


def _weights_problem(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the stored tensors for this model (missing, unknown, wrong shape), or None."""
    problems = [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    problems += [f"{k} has shape {tuple(got[k].shape)}, the model needs {tuple(v.shape)}"
                 for k, v in expected.items() if k in got and got[k].shape != v.shape]
    problems += [f"{k} is {got[k].dtype}, not a floating-point tensor" for k, v in expected.items()
                 if k in got and v.is_floating_point() and not got[k].is_floating_point()]
    if not problems:
        return None
    return "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
