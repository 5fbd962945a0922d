"""Generation options, checked in one place for the CLI, the API and the studio.

`check_options(options)` checks the values a user gave, before any model is loaded (nothing here imports
torch); `resolve_options(loaded, options)` then fills in the model's defaults (its preset's `sample`
section), checks them against the model (what its encoding can use, the instruments it knows, the length
in its own steps) and returns the values generation uses. Every problem is one LstmidiError naming the
option (as the CLI spells it), the value and what is allowed.

Length and batch are bounded (`GenerationLimits`: 1 hour of music, 250,000 steps, 256 pieces per call,
beams of at most 64); the environment variables LSTMIDI_MAX_SECONDS, LSTMIDI_MAX_STEPS and
LSTMIDI_MAX_PIECES raise or lower the first three.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .errors import LstmidiError

GM_PROGRAMS = range(-1, 128)  # -1 = drums, as in miditok
OPTIONS = (
    "seconds",
    "steps",
    "num",
    "seed",
    "primer",
    "primer_seconds",
    "temperature",
    "mode",
    "threshold",
    "max_notes",
    "fill",
    "top_k",
    "top_p",
    "nucleus",
    "greedy",
    "beam",
    "repetition_penalty",
    "max_repeat",
    "key",
    "pitch_range",
    "programs",
    "iterations",
    "parallels",
    "include_primer",
)
EVENT_ONLY = ("nucleus", "beam", "repetition_penalty", "max_repeat", "key", "pitch_range", "programs")
GIBBS_ONLY = ("iterations", "parallels")


@dataclass(frozen=True)
class GenerationLimits:
    """Bounds on one generation call, so that no option can make it run (and grow) without end."""

    max_seconds: float = 3600.0  # length of the new music (and of the primer excerpt)
    max_steps: int = 250_000  # encoding steps (about 1 h 40 min of the flagship's tokens)
    max_pieces: int = 256  # pieces generated together
    max_beam: int = 64  # beams of a beam search

    @classmethod
    def from_env(cls) -> GenerationLimits:
        """The defaults, with LSTMIDI_MAX_SECONDS, LSTMIDI_MAX_STEPS and LSTMIDI_MAX_PIECES applied."""
        values = {}
        for field, kind in (("max_seconds", float), ("max_steps", int), ("max_pieces", int)):
            name = f"LSTMIDI_{field.upper()}"
            text = os.environ.get(name)
            if text is None:
                continue
            try:
                value = kind(text)
            except ValueError:
                value = -1
            if not (math.isfinite(value) and value > 0):
                raise LstmidiError(
                    f"{name}={text!r}: expected a positive {'number' if kind is float else 'whole number'}"
                )
            values[field] = value
        return cls(**values)


def flag(name: str) -> str:
    """The CLI's spelling of an option: top_k -> --top-k."""
    return "--" + name.replace("_", "-")


def _fail(name: str, value: Any, rule: str) -> LstmidiError:
    shown = f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
    return LstmidiError(f"{flag(name)} {shown}: {rule}")


def _real(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = True,
    high_open: bool = False,
    rule: str,
) -> float:
    """A finite real number in the interval; else LstmidiError with `rule`."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise _fail(name, value, rule)
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        raise _fail(name, value, rule)
    return float(value)


def _int(name: str, value: Any, *, low: int, high: int | None = None, rule: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        raise _fail(name, value, rule)
    return int(value)


def check_options(options: dict[str, Any], limits: GenerationLimits | None = None) -> None:
    """Check the generation options a user gave (None = not given); raises LstmidiError for the first
    bad one. Needs no model: called before one is loaded."""
    limits = limits or GenerationLimits.from_env()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise LstmidiError(
            f"unknown generation option{'s' * (len(unknown) > 1)} {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
        )
    given = {k: v for k, v in options.items() if v is not None}
    hour = f"at most {limits.max_seconds:g} seconds (set LSTMIDI_MAX_SECONDS for more)"
    checks = {
        "num": lambda v: _int(
            "num",
            v,
            low=1,
            high=limits.max_pieces,
            rule=f"pieces: 1 to {limits.max_pieces} (set LSTMIDI_MAX_PIECES for more)",
        ),
        "seconds": lambda v: _real("seconds", v, low=0, high=limits.max_seconds, rule=f"a length above 0 and {hour}"),
        "steps": lambda v: _int(
            "steps",
            v,
            low=1,
            high=limits.max_steps,
            rule=f"1 to {limits.max_steps:,} steps (set LSTMIDI_MAX_STEPS for more)",
        ),
        "primer_seconds": lambda v: _real(
            "primer_seconds", v, low=0, low_open=False, high=limits.max_seconds, rule=f"0 (no primer) or more, {hour}"
        ),
        "seed": lambda v: _int("seed", v, low=-(2**63), high=2**64 - 1, rule="a whole number (64 bits)"),
        "temperature": lambda v: _real(
            "temperature",
            v,
            low=0,
            rule="a finite number above 0 (below 1 safer, above 1 bolder; --greedy for the most likely choice)",
        ),
        "threshold": lambda v: _real(
            "threshold", v, low=0, high=1, high_open=True, rule="a probability between 0 and 1 (both excluded)"
        ),
        "max_notes": lambda v: _int("max_notes", v, low=1, rule="a whole number of keys, at least 1"),
        "fill": lambda v: _real("fill", v, low=0, low_open=False, high=10, rule="nats per key, from 0 (off) to 10"),
        "top_k": lambda v: _int("top_k", v, low=1, rule="a whole number of at least 1 (1 = greedy)"),
        "top_p": lambda v: _real("top_p", v, low=0, high=1, rule="a probability mass above 0 and at most 1"),
        "beam": lambda v: _int("beam", v, low=1, high=limits.max_beam, rule=f"1 to {limits.max_beam} beams"),
        "repetition_penalty": lambda v: _real(
            "repetition_penalty",
            v,
            low=1,
            low_open=False,
            rule="a finite number of at least 1 (1 = off, above 1 discourages repeats)",
        ),
        "max_repeat": lambda v: _int("max_repeat", v, low=1, rule="a whole number of at least 1"),
        "iterations": lambda v: _int("iterations", v, low=1, high=1000, rule="1 to 1000 sweeps"),
        "parallels": lambda v: _real(
            "parallels", v, low=0, low_open=False, rule="a finite number of nats, 0 or more (0 = off)"
        ),
    }
    for name, check in checks.items():
        if name in given:
            check(given[name])
    if "mode" in given and given["mode"] not in ("bernoulli", "threshold"):
        raise _fail("mode", given["mode"], "choose bernoulli or threshold")
    if "nucleus" in given and given["nucleus"] not in ("all", "pitch"):
        raise _fail("nucleus", given["nucleus"], "choose all or pitch")
    if "key" in given:
        from .processors import scale_mask  # imports torch; only when a key is given

        try:
            scale_mask(given["key"])
        except ValueError as err:
            raise LstmidiError(f"--key: {err}") from None
    if "pitch_range" in given:
        pr = given["pitch_range"]
        if (
            not isinstance(pr, (tuple, list))
            or len(pr) != 2
            or not all(isinstance(p, Integral) for p in pr)
            or not 0 <= pr[0] <= pr[1] <= 127
        ):
            raise _fail("pitch_range", pr, "LOW-HIGH MIDI pitches with 0 <= LOW <= HIGH <= 127, e.g. 48-84")
    if "programs" in given:
        programs = given["programs"]
        if isinstance(programs, (str, bytes)) or not isinstance(programs, Iterable):
            raise _fail("programs", programs, "a list of GM programs, e.g. 0,40,42")
        programs = list(programs)
        bad = [p for p in programs if isinstance(p, bool) or not isinstance(p, Integral) or p not in GM_PROGRAMS]
        if bad or not programs:
            raise LstmidiError(
                f"--programs {','.join(map(str, programs)) or repr('')}: "
                + (
                    f"{', '.join(map(str, bad))} "
                    f"{'is not a General MIDI program' if len(bad) == 1 else 'are not General MIDI programs'}; "
                    if bad
                    else "no programs given; "
                )
                + "use 0..127 (e.g. 0 piano, 40 violin) and -1 for drums"
            )


def model_programs(loaded) -> list[int] | None:
    """The instruments a multi-instrument event model knows (-1 = drums): those of its training data when the
    model file records them (lstmidi >= 0.1 writes corpus.programs), else every program of its vocabulary.
    None when the model has no Program tokens."""
    from .encodings.base import TokenStream

    enc = loaded.encoding
    if not (isinstance(enc, TokenStream) and enc.programs):
        return None
    recorded = loaded.config.get("corpus", {}).get("programs")
    if isinstance(recorded, list) and recorded and all(isinstance(p, int) for p in recorded):
        return sorted(recorded)
    return ([-1] if enc.drums else []) + list(range(128))


def _program_list(programs: list[int]) -> str:
    """[-1, 0, 40, 41, 42] -> '-1 (drums), 0, 40-42'"""
    out, run = [], []
    for p in sorted(p for p in programs if p >= 0) + [None]:
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(
                str(run[0]) if len(run) == 1 else f"{run[0]}, {run[1]}" if len(run) == 2 else f"{run[0]}-{run[-1]}"
            )
        run = [p]
    return ", ".join((["-1 (drums)"] if -1 in programs else []) + out)


def resolve_options(loaded, options: dict[str, Any], limits: GenerationLimits | None = None) -> dict[str, Any]:
    """The options `generate` uses with the model `loaded`: the given ones (checked with `check_options`)
    and the model's defaults for the rest, checked against the model. Adds `steps` (the length in the
    model's steps) and `target` (event models: the length in tokens to steer towards EOS, or None)."""
    limits = limits or GenerationLimits.from_env()
    check_options(options, limits)
    from .encodings.base import TokenStream
    from .kinds import kind_of

    enc, d = loaded.encoding, loaded.preset.sample
    given = {k for k, v in options.items() if v is not None}
    event = isinstance(enc, TokenStream)
    if not event and given & set(EVENT_ONLY):
        raise LstmidiError(
            ", ".join(flag(n) for n in EVENT_ONLY if n in given)
            + f" need{'s' * (len(given & set(EVENT_ONLY)) == 1)} an event-token model (preset flagship); "
            f"this model uses {enc.name!r}"
        )
    kind = kind_of(enc)
    if not kind.gibbs and given & set(GIBBS_ONLY):
        raise LstmidiError(
            ", ".join(flag(n) for n in GIBBS_ONLY if n in given)
            + f": for four-voice models (preset chorale); this model uses {enc.name!r}"
        )
    refused = [n for n in kind.refused_options if n in given]
    if refused:
        raise LstmidiError(", ".join(flag(n) for n in refused) + kind.refusal.format(name=enc.name))
    out = dict(options)
    for name in OPTIONS:  # an option not given takes the model's default, where its `sample` section has one
        if out.get(name) is None and name in type(d).model_fields:
            out[name] = getattr(d, name)
    out["num"] = 1 if out.get("num") is None else out["num"]
    out["seed"] = 0 if out.get("seed") is None else out["seed"]
    try:  # the model's own defaults (pydantic allows inf) must pass the same checks
        check_options({k: out[k] for k in ("temperature", "threshold", "top_k", "top_p", "seconds")}, limits)
    except LstmidiError as err:
        raise LstmidiError(
            f"{loaded.path}: the model's sample defaults: {err} (give the option to override it)"
        ) from None
    if out.get("fill") and d.usual_notes is None and out.get("max_notes") is None:
        raise LstmidiError(
            f"--fill {out['fill']:g}: this model does not know how many keys its frames usually hold: "
            "give --max-notes (fill weighs frames against that many keys)"
        )
    target = None
    if out.get("steps") is None:
        steps = enc.steps_for_seconds(out["seconds"])
        if steps > limits.max_steps:
            raise LstmidiError(
                f"--seconds {out['seconds']:g}: {steps:,} steps of this model; the limit is "
                f"{limits.max_steps:,} (set LSTMIDI_MAX_STEPS for more)"
            )
        if event:  # end with EOS near the target instead of being cut off
            target, steps = steps, steps + max(4, steps // 10)
        elif kind.ends_home:  # end on the home chord near the target
            target, steps = steps, steps + max(1, steps // 10)
        out["steps"] = steps
    out["target"] = target
    out["steps_given"] = options.get("steps") is not None
    if (out.get("key") or out.get("pitch_range")) and event:
        import numpy as np

        from .processors import scale_mask

        pitches = np.unique(enc.pitch_of_token())
        pitches = pitches[pitches >= 0]  # the pitches this model's vocabulary can write
        kept = pitches
        if out.get("pitch_range"):
            kept = kept[(kept >= out["pitch_range"][0]) & (kept <= out["pitch_range"][1])]
        if out.get("key"):
            kept = kept[scale_mask(out["key"]).numpy()[kept]]
        if not len(kept):
            given = " and ".join(
                f"{flag(n)} {out[n] if n == 'key' else '-'.join(map(str, out[n]))}"
                for n in ("pitch_range", "key")
                if out.get(n)
            )
            raise LstmidiError(
                f"{given}: no pitch left that this model can write (its pitches: {pitches.min()}-{pitches.max()})"
            )
    if out.get("programs") is not None:
        known = model_programs(loaded)
        if known is None:
            raise LstmidiError("--programs needs a model trained with programs (multi-instrument tokens)")
        unknown = [p for p in out["programs"] if p not in known]
        if unknown:
            drums = " (drums: the model was trained without data.drums=true)" if -1 in unknown else ""
            raise LstmidiError(
                f"--programs {','.join(map(str, out['programs']))}: {loaded.path.name} does not know "
                f"{', '.join(map(str, unknown))}{drums}; it knows {_program_list(known)}"
            )
    return out
