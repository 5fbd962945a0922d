"""Registry of encodings: ENCODINGS = {name: class}. Adding one is one file plus one line here."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import LstmidiError, format_validation_error
from .base import Encoding
from .events import Events
from .notes import Notes
from .pianoroll import PianoRoll
from .pseudonotes import PseudoNotes
from .voices import Voices

ENCODINGS: dict[str, type[Encoding]] = {cls.name: cls for cls in (PianoRoll, Notes, PseudoNotes, Events, Voices)}


def build_encoding(spec: dict[str, Any], where: str = "encoding") -> Encoding:
    """`{"name": "pianoroll", **params}` -> Encoding; errors name the field and the allowed values."""
    params = dict(spec)
    name = params.pop("name", None)
    if name not in ENCODINGS:
        raise LstmidiError(f"{where}: unknown encoding {name!r} (choose from: {', '.join(ENCODINGS)})")
    try:
        return ENCODINGS[name](**params)
    except ValidationError as err:
        raise LstmidiError(
            format_validation_error(err, f"{where} {name!r}", getattr(ENCODINGS[name], "Params", None))
        ) from None


__all__ = ["ENCODINGS", "Encoding", "build_encoding"]
