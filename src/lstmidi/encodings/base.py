"""The Encoding contract: the only place that turns a `symusic.Score` into arrays and back.

Property every encoding keeps: `decode(encode(s)) == quantize(s)` (same notes), where `quantize`
is computed note by note, independently of the array path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from symusic import Score


class EncodingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Encoding(ABC):
    """Base class. Subclasses set `name`, `kind` and a `Params` model, and implement the abstract methods.

    `kind` picks the loss, baselines and sampler in `lstmidi.kinds` (the one table of what differs by kind).
    Optional capabilities are declared here with a default, never probed for: `augments` (and `stretches`)
    with `augment`, `unknown_token`, `from_scratch`, `describe` and `finish`. Whole-piece event tokens (BOS
    ... EOS, a token grammar, tokens mapped to pitches and programs) are the `TokenStream` sub-interface
    below.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["multihot", "tokens", "notes", "voices"]]
    Params: ClassVar[type[EncodingParams]]
    needs_fit: ClassVar[bool] = False
    augments: ClassVar[bool] = False  # `augment` transposes training windows (train.augment.transpose)
    stretches: ClassVar[bool] = False  # ... and stretches their tempo (train.augment.stretch)
    unknown_token: ClassVar[int | None] = None  # a token id that stands for "never seen in training": never generated
    from_scratch: ClassVar[bool] = False  # with no primer, generation starts from nothing, not a stored excerpt

    def __init__(self, **params: Any) -> None:
        self.params = self.Params(**params)

    @property
    def is_fitted(self) -> bool:
        """False while an encoding that learns from data (`needs_fit`) has not been fitted."""
        return True

    def fit(self, scores: list[Score]) -> Encoding:
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

    def describe(self) -> str | None:
        """One line for the CLI when training starts (vocabulary, bins), or None when there is nothing to say."""
        return None

    def augment(
        self, steps: np.ndarray, rng: np.random.Generator, semitones: int = 0, stretch: float = 1.0
    ) -> np.ndarray:
        """Training augmentation of encoded steps (pure; same length): transposed by `semitones`, tempo times
        `stretch` (when `stretches`). Only for encodings that declare `augments`."""
        raise NotImplementedError(f"encoding {self.name!r} does not augment")

    def finish(self, steps: np.ndarray) -> np.ndarray:
        """Generated steps made into a complete piece (a token stream cuts at EOS or closes what is open);
        as they are for encodings whose every array is a complete piece."""
        return steps

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this encoding (name, parameters, fitted state); JSON-safe."""
        return {"name": self.name, **self.params.model_dump()}

    def cache_key(self) -> dict[str, Any]:
        """What determines the arrays this encoding makes (the corpus cache is keyed on it); JSON-safe.
        Cheap to compute: a cached corpus is found without building anything heavy."""
        return self.to_dict()


class TokenStream(Encoding):
    """Whole pieces as one stream of event tokens (the `events` encoding): a piece is BOS ... EOS, a grammar
    says which token may come next, and tokens map to pitches and programs. Generation uses all of it: it
    starts at BOS, steers towards EOS near the asked length, masks the grammar, keys, pitch ranges and
    instruments, and `finish`es what the length limit cut."""

    kind = "tokens"
    DRUM_PROGRAM: ClassVar[int] = 128  # program_of_token() value of the drums; -1 means "not a Program token"
    programs: bool  # instruments are kept apart with Program tokens (a property of the subclass)
    drums: bool  # drum tracks are kept, as the drums' Program token and drum pitches (a property of the subclass)

    @property
    @abstractmethod
    def bos(self) -> int:
        """The id that starts every piece."""

    @property
    @abstractmethod
    def eos(self) -> int:
        """The id that ends every piece."""

    @abstractmethod
    def grammar(self, ids=()) -> Any:
        """Grammar state after `ids`: `.allowed()` -> (vocab,) bool mask of the next id, `.push(id)`, `.copy()`."""

    @abstractmethod
    def grammars(self, ids) -> Any:
        """Grammar states after each row of `ids` (rows, t) at once: `.allowed()` -> (rows, vocab) bool masks
        (row i's equals `grammar(ids[i]).allowed()`), `.push(tokens)` (one id per row), `.take(rows)`."""

    @abstractmethod
    def pitch_of_token(self) -> np.ndarray:
        """(vocab,) int64: MIDI pitch of note-onset tokens, -1 for every other token."""

    @abstractmethod
    def program_of_token(self) -> np.ndarray:
        """(vocab,) int64: MIDI program of Program tokens (`DRUM_PROGRAM` for drums), -1 for other tokens."""

    @abstractmethod
    def programs_in(self, pieces) -> list[int]:
        """The GM programs whose Program tokens occur in `pieces` (token arrays), sorted; -1 = drums."""

    @abstractmethod
    def token_types(self) -> list[str]:
        """Type of each id ('BOS', 'Bar', 'Pitch', 'Duration', ...)."""

    def prefix_decoder(self, ids: np.ndarray) -> Callable[[int], Score]:
        """`lambda k: self.decode(ids[:k])`, for many k of one sequence: an encoding may decode it once."""
        return lambda k: self.decode(ids[:k])

    @abstractmethod
    def token_errors(self, ids: np.ndarray) -> float:
        """The fraction of tokens that break the token grammar (0 for a sequence that followed `grammar`)."""
