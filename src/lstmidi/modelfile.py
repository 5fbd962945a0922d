"""The `.lstmidi` model file: one zip holding everything needed to generate, and nothing executable.

    config.json          format version, encoding (name + all parameters), model (name + spec),
                         the full preset (data, train, sample), metrics, corpus summary, library versions
    weights.safetensors  the model's tensors (safetensors: loading never unpickles)
    primers.safetensors  optional: short excerpts of held-out music used as default primers
    card.md              human-readable card: the exact training command and its metrics

`load_model(path)` needs nothing else: no data folder, no config file. Nothing else loads weights.
Reading is bounded (`ModelFileLimits`), because model files come from others (the studio takes uploads):
the zip's directory, every member's size and compression ratio are checked before anything is
decompressed, config.json's size and nesting before it is parsed, and every tensor must be finite.
"""

from __future__ import annotations

import json
import platform
import re
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

from .config import Preset
from .encodings import Encoding, build_encoding
from .errors import ModelFileError, OutputExistsError
from .files import atomic_path
from .models import build_model

FORMAT = "lstmidi-model"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, PRIMERS, CARD = "config.json", "weights.safetensors", "primers.safetensors", "card.md"


@dataclass(frozen=True)
class ModelFileLimits:
    """Bounds on what loading a model file may read; a file past one is refused with that reason.

    Memory: the tensors are held twice at most while loading (their bytes, then the tensors), so with the
    ratio limit a file of S MB costs at most ~2 x 4 x S MB on top of torch itself (~300 MB): a 64 MB file
    (the studio's upload limit) stays below 1 GB. Real weights hardly compress (float32: ~1.1:1)."""

    max_members: int = 16  # entries in the zip (a model file has 4)
    max_directory_bytes: int = 64 * 2**10  # the zip's central directory, read before the zip is opened
    max_config_bytes: int = 4 * 2**20  # config.json, uncompressed
    max_card_bytes: int = 2**20  # card.md, uncompressed
    max_tensor_bytes: int = 2**30  # weights + primers, uncompressed
    max_ratio: float = 4.0  # uncompressed / compressed size of any member over `ratio_from` bytes
    ratio_from: int = 2**20
    max_json_depth: int = 32  # nesting of config.json (a real one has 6 levels)


LIMITS = ModelFileLimits()


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
        *(
            f"\nFine-tuned from a model trained with ({run.get('epochs')} epochs, {run.get('train_seconds')} s):"
            f"\n\n```\n{run.get('command')}\n```"
            for run in config.get("fine_tuned_from", [])
        ),
        "",
        f"- encoding: `{config['encoding']['name']}` "
        f"{json.dumps({k: v for k, v in config['encoding'].items() if k != 'name'})}",
        f"- model: `{config['model']['name']}` {json.dumps({k: v for k, v in config['model'].items() if k != 'name'})}"
        f" ({config['parameters']:,} parameters)",
        f"- data: {json.dumps(config.get('corpus', {}))}",
        f"- epochs: {m.get('epochs')}, training time: {m.get('train_seconds')} s",
        f"- validation loss: {_fmt(m.get('valid_loss'))} {m.get('unit', '')}"
        + "".join(
            f", {k.removeprefix('valid_').replace('_', ' ')} {_fmt(v)}"
            for k, v in m.items()
            if k.startswith("valid_") and k != "valid_loss"
        ),
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

    return [
        "",
        f"Quality gate after training ({q['pieces']} pieces of {q['seconds']:g} s against the validation "
        f"pieces and a random-pitch control; see `lstmidi evaluate`): **{'passed' if q['passed'] else 'not passed'}**",
        "",
        *gate_table(q),
        "",
    ]


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def save_model(
    path: str | Path,
    *,
    encoding: Encoding,
    model: torch.nn.Module,
    preset: Preset,
    metrics: dict[str, Any],
    command: str,
    primers: np.ndarray | None = None,
    corpus_summary: dict | None = None,
    history: list | None = None,
    fine_tuned_from: list[dict] | None = None,
    force: bool = False,
) -> Path:
    """Write a `.lstmidi` file atomically (temp file + rename); refuses to overwrite unless `force`.
    `fine_tuned_from`: the runs whose weights this one started from (`--init`), nearest first, each
    {command, epochs, train_seconds}: the card shows how to make the model from nothing."""
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
        "fine_tuned_from": fine_tuned_from or [],
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # tensors stored as they are: float weights shrink by under 10% deflated, and inflating them cost
    # `lstmidi generate` 0.04-0.1 s at every start
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config, indent=1))
        z.writestr("weights.safetensors", st_save(weights), compress_type=zipfile.ZIP_STORED)
        if primers is not None:
            primer_bytes = st_save({"primers": torch.from_numpy(np.ascontiguousarray(primers))})
            z.writestr("primers.safetensors", primer_bytes, compress_type=zipfile.ZIP_STORED)
        z.writestr("card.md", render_card(config))
    return path


def load_model(path: str | Path, limits: ModelFileLimits = LIMITS) -> LoadedModel:
    """Read a `.lstmidi` file within `limits`; raises ModelFileError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        members = _read_members(path, limits)
    except zipfile.BadZipFile as err:
        if "CRC" in str(err):  # a member's bytes were changed after it was written
            raise ModelFileError(f"{path}: damaged model file ({err})") from None
        raise ModelFileError(f"{path}: not an lstmidi model file (not a zip archive, or truncated)") from None
    except (
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        UnicodeDecodeError,
    ) as err:  # damaged, encrypted or exotic members, or a member name that is not UTF-8
        raise ModelFileError(f"{path}: damaged model file ({err})") from None
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read the model file ({err.strerror or err})") from None
    config = _parse_config(path, members.pop(CONFIG), limits)
    card = members.pop(CARD, b"").decode("utf-8", "replace")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: damaged model file (config.json holds a {type(config).__name__}, not an object)")
    if config.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an lstmidi model file (format {config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {config.get('format_version')!r} is not supported "
            f"by this lstmidi (reads version {FORMAT_VERSION}); upgrade lstmidi"
        )
    missing = [k for k in ("encoding", "model", "preset") if not isinstance(config.get(k), dict)]
    if missing:
        raise ModelFileError(f"{path}: damaged model file (config.json lacks {', '.join(missing)})")
    try:
        preset = Preset.model_validate(config["preset"])
        encoding = build_encoding(config["encoding"])
    except Exception as err:
        raise ModelFileError(f"{path}: invalid configuration in model file ({err})") from None
    weights = _tensors(path, members, WEIGHTS)  # the member's bytes are freed: the tensors are the one copy
    primers = _tensors(path, members, PRIMERS) if PRIMERS in members else None
    try:
        model = build_model(config["model"], encoding.sizes)
    except Exception as err:
        raise ModelFileError(f"{path}: invalid configuration in model file ({err})") from None
    problem = _weights_problem(model.state_dict(), weights)
    if problem:
        raise ModelFileError(f"{path}: weights do not match the model in the file ({problem})")
    model.load_state_dict(weights)
    del weights
    if primers is not None and "primers" not in primers:
        raise ModelFileError(f"{path}: damaged model file (primers.safetensors: KeyError('primers'))")
    model.eval()
    return LoadedModel(model, encoding, preset, config, card, primers["primers"].numpy() if primers else None, path)


def _read_members(path: Path, limits: ModelFileLimits) -> dict[str, bytes]:
    """The members lstmidi reads (config.json, weights, primers, card), each within `limits`: sizes and
    ratios come from the zip's directory and are checked before anything is decompressed; reading
    never goes past a member's announced size (zipfile stops there and checks the CRC)."""
    end_record = getattr(zipfile, "_EndRecData", None)  # private, but in every Python 3: ZipFile reads it first
    if end_record is not None:  # the directory's size, before ZipFile turns every entry into an object
        with path.open("rb") as f:
            end = end_record(f)
        if end is None:
            raise zipfile.BadZipFile("no end of central directory")
        entries, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if entries > limits.max_members or directory > limits.max_directory_bytes:
            raise ModelFileError(
                f"{path}: refused: not an lstmidi model file ({entries:,} zip entries, "
                f"{directory:,}-byte directory; a model file has 4)"
            )
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}  # a repeated name: the last one, as z.read would
        missing = {CONFIG, WEIGHTS} - set(infos)
        if missing:
            raise ModelFileError(f"{path}: not a complete lstmidi model file (missing {', '.join(sorted(missing))})")
        caps = {CONFIG: limits.max_config_bytes, CARD: limits.max_card_bytes}
        wanted = [infos[n] for n in (CONFIG, WEIGHTS, PRIMERS, CARD) if n in infos]
        for info in wanted:
            size, packed = info.file_size, max(info.compress_size, 1)
            cap = caps.get(info.filename)
            if cap is not None and size > cap:
                raise ModelFileError(
                    f"{path}: refused: {info.filename} would unpack to {_mb(size)} (the limit is {_mb(cap)})"
                )
            if size > limits.ratio_from and size > limits.max_ratio * packed and info.filename not in caps:
                raise ModelFileError(
                    f"{path}: refused: {info.filename} is compressed {size / packed:,.0f}:1 "
                    f"(the limit is {limits.max_ratio:g}:1 for members over {_mb(limits.ratio_from)}; a zip bomb?)"
                )
        tensors = sum(i.file_size for i in wanted if i.filename not in caps)
        if tensors > limits.max_tensor_bytes:
            raise ModelFileError(
                f"{path}: refused: its tensors would unpack to {_mb(tensors)} "
                f"(the limit is {_mb(limits.max_tensor_bytes)})"
            )
        members = {}
        for info in wanted:
            with z.open(info) as member:
                members[info.filename] = member.read(info.file_size)
        return members


def _mb(size: int) -> str:
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{size / 2**10:,.0f} KB"


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string (its brackets do not nest anything)


def _parse_config(path: Path, data: bytes, limits: ModelFileLimits):
    """config.json parsed, its nesting checked first (without recursion: Python's parser would recurse)."""
    depth = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    depth = np.cumsum(np.isin(depth, (0x5B, 0x7B)).astype(np.int32) - np.isin(depth, (0x5D, 0x7D)))
    if depth.size and depth.max() > limits.max_json_depth:
        raise ModelFileError(
            f"{path}: refused: config.json is nested {depth.max():,} levels deep (the limit is {limits.max_json_depth})"
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, ints over Python's digit limit
        raise ModelFileError(f"{path}: damaged model file (config.json is not valid JSON)") from None


def _tensors(path: Path, members: dict[str, bytes], name: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors member `name` (popped from `members`), all finite."""
    try:
        tensors = st_load(members.pop(name))
    except Exception as err:
        raise ModelFileError(f"{path}: damaged model file ({name}: {err})") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: damaged model file ({name}: {key} holds NaN or infinite values)")
    return tensors


def _weights_problem(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the stored tensors for this model (missing, unknown, wrong shape), or None."""
    problems = [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    problems += [
        f"{k} has shape {tuple(got[k].shape)}, the model needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in got and got[k].shape != v.shape
    ]
    problems += [
        f"{k} is {got[k].dtype}, not a floating-point tensor"
        for k, v in expected.items()
        if k in got and v.is_floating_point() and not got[k].is_floating_point()
    ]
    if not problems:
        return None
    return "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
