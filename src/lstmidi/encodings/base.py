"""The Encoding contract: the only place that turns a `symusic.Score` into arrays and back.

Property every encoding keeps: `decode(encode(s)) == quantize(s)` (same notes), where `quantize`
is computed note by note, independently of the array path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from symusic import Score


class EncodingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Encoding(ABC):
    """Base class. Subclasses set `name`, `kind` and a `Params` model, and implement the three methods."""

    name: ClassVar[str]
    kind: ClassVar[Literal["multihot", "tokens", "notes"]]
    Params: ClassVar[type[EncodingParams]]
    needs_fit: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    @property
    def is_fitted(self) -> bool:
        """False while an encoding that learns from data (`needs_fit`) has not been fitted."""
        return True

    def fit(self, scores: list[Score]) -> "Encoding":
        """Learn vocabularies or bins from training scores; a no-op for encodings with nothing to learn."""
        return self

    @abstractmethod
    def encode(self, score: Score) -> np.ndarray:
        """Score -> array (frames x features for multihot)."""

    @abstractmethod
    def decode(self, array: np.ndarray) -> Score:
        """Array -> Score (ticks)."""

    @abstractmethod
    def quantize(self, score: Score) -> Score:
        """The Score as this encoding can represent it, computed on notes, not arrays."""

    @property
    @abstractmethod
    def sizes(self) -> dict[str, Any]:
        """Sizes a model needs, e.g. {'input_size': 88, 'output_size': 88}; note encodings add 'fields'."""

    @abstractmethod
    def steps_for_seconds(self, seconds: float) -> int:
        """How many encoding steps cover `seconds` of music."""

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this encoding (name, parameters, fitted state); JSON-safe."""
        return {"name": self.name, **self.params.model_dump()}

    def cache_key(self) -> dict[str, Any]:
        """What determines the arrays this encoding makes (the corpus cache is keyed on it); JSON-safe.
        Cheap to compute: a cached corpus is found without building anything heavy."""
        return self.to_dict()
