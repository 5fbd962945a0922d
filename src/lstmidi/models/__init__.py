"""Registry of models: MODELS = {name: `Model` class with a `Spec` pydantic model}. Adding one is one file
plus one line here.

Models are plain `nn.Module`s (`base.Model`: the contract and its optional capabilities) built from
`(spec, sizes)`; they never import encodings or Lightning.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import LstmidiError, format_validation_error
from .base import Model
from .endecell import EnDeCell
from .ensemble import Ensemble
from .notenet import NoteNet
from .rollnet import RollNet
from .seq2seq import Seq2Seq
from .tokennet import TokenNet
from .voicenet import VoiceNet

MODELS: dict[str, type[Model]] = {
    "rollnet": RollNet,
    "endecell": EnDeCell,
    "notenet": NoteNet,
    "seq2seq": Seq2Seq,
    "tokennet": TokenNet,
    "voicenet": VoiceNet,
}


def model_params(spec: dict[str, Any], where: str = "model") -> tuple[str, BaseModel]:
    """`{"name": "rollnet", **params}` -> (name, validated Spec); errors name the field."""
    params = dict(spec)
    name = params.pop("name", None)
    if name not in MODELS:
        raise LstmidiError(f"{where}: unknown model {name!r} (choose from: {', '.join(MODELS)})")
    try:
        params = MODELS[name].Spec(**params)
    except ValidationError as err:
        raise LstmidiError(format_validation_error(err, f"{where} {name!r}", MODELS[name].Spec)) from None
    if params.members > 1 and not MODELS[name].mixes:
        mixing = ", ".join(n for n, cls in MODELS.items() if cls.mixes)
        raise LstmidiError(f"{where} {name!r}: members must be 1; only the piano-roll models ({mixing}) can be mixed")
    return name, params


def build_model(spec: dict[str, Any], sizes: dict[str, int]) -> Model:
    """The model of `spec`; with `members` > 1 the mixture of that many (`Ensemble`)."""
    name, params = model_params(spec)
    if params.members > 1:
        return Ensemble(params, sizes, MODELS[name])
    return MODELS[name](params, sizes)


__all__ = ["MODELS", "Model", "build_model", "model_params"]
