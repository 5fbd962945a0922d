"""Registry of models: MODELS = {name: nn.Module class with a `Spec` pydantic model}.

Models are plain `nn.Module`s built from `(spec, sizes)`; they never import encodings or Lightning.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from ..errors import LstmidiError, format_validation_error
from .endecell import EnDeCell
from .notenet import NoteNet
from .rollnet import RollNet
from .seq2seq import Seq2Seq
from .tokennet import TokenNet

MODELS: dict[str, type[nn.Module]] = {"rollnet": RollNet, "endecell": EnDeCell, "notenet": NoteNet, "seq2seq": Seq2Seq,
                                      "tokennet": TokenNet}


def model_params(spec: dict[str, Any], where: str = "model") -> tuple[str, BaseModel]:
    """`{"name": "rollnet", **params}` -> (name, validated Spec); errors name the field."""
    params = dict(spec)
    name = params.pop("name", None)
    if name not in MODELS:
        raise LstmidiError(f"{where}: unknown model {name!r} (choose from: {', '.join(MODELS)})")
    try:
        return name, MODELS[name].Spec(**params)
    except ValidationError as err:
        raise LstmidiError(format_validation_error(err, f"{where} {name!r}", MODELS[name].Spec)) from None


def build_model(spec: dict[str, Any], sizes: dict[str, int]) -> nn.Module:
    name, params = model_params(spec)
    return MODELS[name](params, sizes)


__all__ = ["MODELS", "build_model", "model_params"]
