"""Typed configuration: presets (YAML in `configs/`) + `--set a.b=c` overrides, validated by pydantic.

A preset has five sections. `data`, `train` and `sample` are fixed models below; `encoding` and
`model` are `{"name": ..., **params}` dicts whose params are validated by the registered class's own
`Params` model (see `encodings/` and `models/`), so adding an encoding or model needs no change here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import LstmidiError, format_validation_error

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Old preset names that still work, with a note: scripts written for 0.1 say `--preset default`.
RENAMED = {"default": "flagship"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """How MIDI files become scores and how the corpus is split."""

    tracks: Literal["merge", "all", "melody"] | int = Field(
        "merge",
        description="'merge' all pitched tracks into one, keep 'all' tracks apart, 'melody' = the pitched track "
        "with the most notes, or the index of one track",
    )
    drums: bool = Field(False, description="keep drum tracks (channel 10)")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="share of files in the validation split")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="share of files in the test split")
    workers: int = Field(0, ge=0, description="processes that parse files; 0 = one per CPU core")


class LossConfig(Strict):
    """How note-level models are scored (multihot and token models use BCE / CE and ignore this)."""

    pitch: Literal["ce", "music", "ce+music"] = Field(
        "ce", description="pitch loss: cross-entropy, DeepLearning4Music's music-aware interval cost, or both"
    )
    positive_pressure: float = Field(10.0, ge=0, description="penalty on negative step/duration predictions (tutorial)")
    pitch_mse: float = Field(
        0.0,
        ge=0,
        description="regressed pitch: add this weight x squared error in octaves to the music-aware cost (a "
        "convex pull towards the true pitch)",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="per-field loss weights, default 1 (e.g. pitch: 0.05)"
    )


class AugmentConfig(Strict):
    """Data augmentation of the training split (never validation or test), drawn afresh each epoch."""

    transpose: int = Field(
        0, ge=0, le=12, description="transpose each window by a random k in [-k, k] semitones (kept in range)"
    )
    stretch: float = Field(0.0, ge=0, lt=0.5, description="stretch the tempo by a random factor in [1-x, 1+x]")


class TrainConfig(Strict):
    """Training loop settings. Lengths are in encoding steps (frames or tokens)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decoupled weight decay (AdamW): each step shrinks the weights by lr x this; 0 = plain Adam",
    )
    window: int = Field(64, ge=2, description="steps per training window (input); the target is shifted by one step")
    hop: int = Field(16, ge=1, description="steps between the starts of overlapping windows")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip; 0 = off")
    lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="multiply the learning rate by this factor when the validation loss has not reached a new "
        "best for lr_patience + 1 epochs in a row (1 = constant rate)",
    )
    lr_patience: int = Field(
        0, ge=0, description="epochs without a new best validation loss that lr_decay tolerates before it acts"
    )
    early_stop: int = Field(
        0,
        ge=0,
        description="stop when the validation loss has not reached a new best for this many epochs (the best "
        "weights are kept); 0 = off",
    )
    average: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="keep an exponential moving average of the weights, with this decay per optimizer step (e.g. "
        "0.998); validation, the learning-rate schedule, early stopping, the best checkpoint and the model file "
        "then use the averaged weights; 0 = off",
    )
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        description="arithmetic of the training steps' forward and backward passes: float32, bfloat16 (mixed "
        "precision: the weights, the optimizer and the loss stay float32) or auto (bfloat16 where the processor "
        "multiplies it natively, else float32); validation and every scored figure stay float32",
    )
    progressive_ramp: int = Field(
        0, ge=0, description="loss weight grows linearly from 0 to 1 over this many steps of each window; 0 = off"
    )
    max_minutes: float | None = Field(
        None, gt=0, description="stop cleanly after this many minutes and still write the model file"
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="stop cleanly after this many optimizer steps (e.g. to compare settings at equal compute) "
        "and still write the model file",
    )
    seed: int = 0
    primers: int = Field(16, ge=0, description="validation excerpts stored in the model file as default primers")
    primer_steps: int = Field(32, ge=1, description="length of each stored primer, in steps")
    quality_pieces: int = Field(
        8,
        ge=0,
        description="after training, generate this many pieces and rate them with the quality gate against the "
        "validation pieces (lstmidi.quality); 0 = off",
    )
    sample_every: int = Field(
        0, ge=0, description="write a generated sample (MIDI + PNG) to RUN/samples every N epochs; 0 = off"
    )
    checkpoint_every_steps: int = Field(
        200,
        ge=0,
        description="also write RUN/checkpoints/last.ckpt every N training steps, so a run killed mid-epoch "
        "resumes losing at most N steps; 0 = only at the end of each epoch",
    )
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()


PARALLELS_PENALTY = 4.0  # nats per parallel fifth or octave (lstmidi.samplers.parallel_counts)


class SampleConfig(Strict):
    """Generation defaults stored with the model; the generate command can override each."""

    mode: Literal["bernoulli", "threshold"] = "bernoulli"
    temperature: float = Field(1.0, gt=0)
    threshold: float = Field(0.5, gt=0, lt=1, description="probability above which a key is on (mode=threshold)")
    max_notes: int | None = Field(
        None,
        ge=1,
        description="piano-roll models: at most this many keys held in a generated frame (a frame with more is "
        "drawn again); `lstmidi train` sets it to the most the training frames hold",
    )
    fill: float = Field(
        0.0,
        ge=0,
        le=10,
        description="piano-roll models: favour full frames: a frame of n held keys, fewer than `usual_notes`, "
        "weighs exp(-fill x (usual_notes - n)) times its probability (it is kept with that probability, else "
        "drawn again); 0 = the model's own frames",
    )
    usual_notes: int | None = Field(
        None,
        ge=1,
        description="piano-roll models: the number of keys the training frames that hold any most often hold "
        "(`lstmidi train` sets it; 4 for four-part chorales): the full frame `fill` weighs others against "
        "(max_notes when not set)",
    )
    seconds: float = Field(20.0, gt=0, description="length of the generated part in seconds")
    top_k: int | None = Field(None, ge=1, description="tokens/notes: sample among the k most likely (1 = greedy)")
    top_p: float | None = Field(None, gt=0, le=1, description="tokens/notes: nucleus sampling mass")
    nucleus: Literal["all", "pitch"] = Field(
        "all",
        description="event tokens: the tokens top_p may cut: all, or pitch tokens only (timing, durations "
        "and the rest are drawn from the model's whole distribution)",
    )
    greedy: bool = Field(False, description="tokens/notes: always take the most likely choice")
    temperatures: dict[str, float] = Field(
        default_factory=dict, description="per-head temperature for note models, e.g. {pitch: 0.8}"
    )
    iterations: int = Field(20, ge=1, le=1000, description="four-voice models: Gibbs sweeps over every free cell")
    parallels: float = Field(
        PARALLELS_PENALTY,
        ge=0,
        description="four-voice models: nats taken off a choice for each parallel fifth or octave it makes "
        "(0 = the model alone decides)",
    )


class Preset(Strict):
    name: str = ""
    description: str = ""
    data: DataConfig = DataConfig()
    encoding: dict[str, Any]
    model: dict[str, Any]
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=0.01' -> (['train', 'lr'], 0.01); the value is read as YAML (numbers, bools, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise LstmidiError(f"--set {text!r}: expected key=value, e.g. train.lr=0.001")
    try:
        return key.strip().split("."), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise LstmidiError(f"--set {text!r}: the value is not valid YAML ({_yaml_problem(err)})") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: 'expected ',' or ']', but got '<stream end>' at line 3, column 1'."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            if part not in node:  # a section the YAML leaves at its defaults (e.g. train.augment)
                node[part] = {}
            elif not isinstance(node[part], dict):
                raise LstmidiError(f"--set {text!r}: {part!r} is a value, not a section")
            node = node[part]
        node[path[-1]] = value
    return raw


def _settle_drums(preset: Preset, where: str) -> None:
    """data.drums (read drum tracks) and an encoding's own `drums` (keep them in the encoding) agree: the
    encoding's follows data.drums unless given; a contradiction, or drums the encoding cannot hold, is an error."""
    from .encodings import ENCODINGS

    encoding = ENCODINGS.get(preset.encoding.get("name"))
    if encoding is None:
        return  # an unknown encoding: build_encoding names it
    params = encoding.Params
    if "drums" not in params.model_fields:
        if preset.data.drums:
            raise LstmidiError(
                f"{where}: data.drums=true, but the {preset.encoding['name']!r} encoding has no drums (it "
                "leaves drum tracks out); drums need the events encoding with programs (preset flagship)"
            )
        return
    given = preset.encoding.get("drums")
    if preset.data.drums and given is None:
        if not preset.encoding.get(
            "programs", params.model_fields["programs"].default if "programs" in params.model_fields else True
        ):
            raise LstmidiError(
                f"{where}: data.drums=true, but encoding {preset.encoding['name']!r} keeps drum tracks only "
                "with encoding.programs=true (else they are dropped): set encoding.programs=true"
            )
        preset.encoding = {**preset.encoding, "drums": True}
    elif given and not preset.data.drums:
        raise LstmidiError(
            f"{where}: encoding.drums=true, but data.drums=false drops drum tracks when the files are "
            "read: set data.drums=true"
        )


def validate_preset(raw: dict, where: str = "preset", *, check_model: bool = True) -> Preset:
    """Check every section, including the encoding's and (unless `check_model` is False: for commands that
    build no model, which then never import torch) the model's own parameters."""
    from .encodings import build_encoding

    try:
        preset = Preset.model_validate(raw)
    except ValidationError as err:
        raise LstmidiError(format_validation_error(err, where, Preset)) from None
    _settle_drums(preset, where)
    build_encoding(preset.encoding, where=f"{where}: encoding")
    if preset.encoding.get("programs") and preset.data.tracks == "merge":
        raise LstmidiError(
            f"{where}: encoding.programs=true keeps instruments apart, but data.tracks=merge "
            "merges them into one before encoding: set data.tracks=all"
        )
    if check_model:
        from .models import model_params

        model_params(preset.model, where=f"{where}: model")
    return preset


def read_preset_file(path: Path) -> dict:
    """The mapping in a preset YAML file; LstmidiError naming the file when it cannot be read, is not
    UTF-8, is not valid YAML or holds something other than a mapping of sections."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise LstmidiError(f"{path}: cannot read the preset ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise LstmidiError(
            f"{path}: not a UTF-8 text file (byte {err.start}: {err.object[err.start]:#04x}); save the preset as UTF-8"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LstmidiError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LstmidiError(
            f"{path}: a preset is a mapping of sections (data, encoding, model, train, sample), "
            f"not a {type(raw).__name__}"
        )
    return raw


def load_preset(name_or_path: str, overrides: list[str] = (), *, check_model: bool = True) -> Preset:
    """Read a preset by name (`configs/NAME.yaml`) or path and apply `key=value` overrides (see
    `validate_preset` for `check_model`)."""
    if name_or_path in RENAMED:
        print(
            f"note: preset {name_or_path!r} is now named {RENAMED[name_or_path]!r}; the old name still works for now",
            file=sys.stderr,
        )
        name_or_path = RENAMED[name_or_path]
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise LstmidiError(f"unknown preset {name_or_path!r} (presets: {', '.join(preset_names())})")
    raw = read_preset_file(path)
    raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, list(overrides))
    return validate_preset(raw, where=str(path.name), check_model=check_model)
