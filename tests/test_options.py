"""lstmidi.options: the one place where generation options are checked (CLI, API and studio)."""

import math

import pytest

from lstmidi.errors import LstmidiError
from lstmidi.options import GenerationLimits, _program_list, check_options, model_programs, resolve_options


def test_good_options_pass_and_none_means_not_given():
    check_options(
        {
            "seconds": 30,
            "steps": None,
            "num": 4,
            "temperature": 0.8,
            "top_k": 5,
            "top_p": 1.0,
            "threshold": 0.5,
            "beam": 4,
            "repetition_penalty": 1.2,
            "max_repeat": 3,
            "mode": "threshold",
            "primer_seconds": 0,
            "pitch_range": (48, 84),
            "programs": [-1, 0, 127],
            "seed": 2**63,
        }
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": math.inf}, r"^--temperature inf: a finite number above 0"),
        ({"temperature": True}, r"^--temperature True"),
        ({"top_k": 2.5}, r"^--top-k 2.5: a whole number"),
        ({"steps": 250_001}, r"^--steps 250001: 1 to 250,000 steps \(set LSTMIDI_MAX_STEPS for more\)"),
        ({"num": 257}, r"^--num 257: pieces: 1 to 256"),
        ({"seed": 2**64}, r"^--seed 18446744073709551616: a whole number \(64 bits\)"),
        ({"pitch_range": (90, 80)}, r"^--pitch-range \(90, 80\): LOW-HIGH MIDI pitches"),
        ({"programs": []}, r"^--programs '': no programs given"),
        ({"programs": [0, 128, -2]}, r"^--programs 0,128,-2: 128, -2 are not General MIDI programs"),
        ({"tempo": 1}, r"^unknown generation option tempo"),
        ({"nucleus": "durations"}, r"^--nucleus 'durations': choose all or pitch"),
        ({"max_notes": 0}, r"^--max-notes 0: a whole number of keys, at least 1"),
        ({"fill": -0.5}, r"^--fill -0.5: nats per key, from 0 \(off\) to 10"),
    ],
)
def test_bad_options_name_the_option_and_the_rule(options, message):
    with pytest.raises(LstmidiError, match=message):
        check_options(options)


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LSTMIDI_MAX_SECONDS", "7200")
    monkeypatch.setenv("LSTMIDI_MAX_STEPS", "10")
    limits = GenerationLimits.from_env()
    assert (limits.max_seconds, limits.max_steps, limits.max_pieces) == (7200.0, 10, 256)
    check_options({"seconds": 7000})
    with pytest.raises(LstmidiError, match=r"--steps 11: 1 to 10 steps"):
        check_options({"steps": 11})
    monkeypatch.setenv("LSTMIDI_MAX_SECONDS", "inf")
    with pytest.raises(LstmidiError, match=r"LSTMIDI_MAX_SECONDS='inf': expected a positive number"):
        check_options({})


def test_resolve_fills_the_model_defaults_and_checks_them_against_the_model(tmp_path, monkeypatch):
    from lstmidi.api import bundled_model
    from lstmidi.modelfile import load_model

    loaded = load_model(bundled_model("quartets"))
    o = resolve_options(loaded, {"seconds": 10, "programs": [40, 41]})
    assert (o["temperature"], o["top_p"], o["greedy"]) == (1.0, 0.8, False)  # the model's sample section
    assert o["target"] == loaded.encoding.steps_for_seconds(10) and o["steps"] > o["target"]  # room to end with EOS
    assert model_programs(loaded) == [0, 6, 40, 41, 42, 52, 54, 68]  # recorded from its training split
    monkeypatch.setenv("LSTMIDI_MAX_STEPS", "1000")
    with pytest.raises(LstmidiError, match=r"--seconds 60: 1,332 steps of this model; the limit is 1,000"):
        resolve_options(loaded, {"seconds": 60})
    monkeypatch.delenv("LSTMIDI_MAX_STEPS")
    loaded.preset.sample.temperature = (
        math.inf
    )  # pydantic's gt=0 lets inf through: the model's defaults are checked too
    with pytest.raises(LstmidiError, match=r"quartets.lstmidi: the model's sample defaults: --temperature inf"):
        resolve_options(loaded, {})
    assert resolve_options(loaded, {"temperature": 0.5})["temperature"] == 0.5


def test_program_lists_are_short():
    assert _program_list([-1, 0, 6, 40, 41, 42, 52, 53]) == "-1 (drums), 0, 6, 40-42, 52, 53"
    assert _program_list(list(range(128))) == "0-127"
