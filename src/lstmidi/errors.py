"""Exceptions that lstmidi raises for bad input; each message names the file or field and the reason, and
the one-line-per-problem form of pydantic's validation errors that configs, encodings and models share."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError


class LstmidiError(Exception):
    """Base class: an error the user can fix (bad file, bad option); the CLI prints it without a traceback."""


class MidiError(LstmidiError):
    """A file could not be read as MIDI music (not MIDI, truncated, no notes, ...)."""


class OutputExistsError(LstmidiError):
    """An output file exists and `force` was not given."""


class ModelFileError(LstmidiError):
    """A `.lstmidi` model file is missing, damaged or not a model file."""


def _section_model(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc` (e.g. TrainConfig for ('train', 'lr'))."""
    for part in loc:
        field = model.model_fields.get(part) if model is not None else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def format_validation_error(err: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem naming the field: an unknown key lists the valid keys of its section (when
    `model`, the validated class, is given); a bad value shows the constraint and the value given."""
    lines = [f"{where}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            *section, key = e["loc"]
            owner = _section_model(model, tuple(section))
            place = f" in section {'.'.join(map(str, section))!r}" if section else ""
            valid = f" (valid keys: {', '.join(owner.model_fields)})" if owner is not None else ""
            lines.append(f"  {loc}: unknown key {str(key)!r}{place}{valid}")
        elif e["type"] == "missing":
            lines.append(f"  {loc}: required but missing")
        else:
            lines.append(f"  {loc}: {e['msg']} (got {e['input']!r})" if "input" in e else f"  {loc}: {e['msg']}")
    return "\n".join(lines)
