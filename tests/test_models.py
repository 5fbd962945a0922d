import pytest
import torch

from lstmidi.errors import LstmidiError
from lstmidi.models import MODELS, build_model

SIZES = {"input_size": 12, "output_size": 12}
VARIANTS = [
    {"name": "rollnet", "hidden": 16, "layers": 1, "output": "linear"},
    {"name": "rollnet", "hidden": 16, "layers": 3, "dropout": 0.3, "output": "linear"},
    {"name": "rollnet", "hidden": 16, "layers": 2, "output": "lstm"},
]
assert {v["name"] for v in VARIANTS} == set(MODELS), "every registered model needs variants here"


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: f"{s['name']}-{s['layers']}-{s['output']}")
def test_step_by_step_equals_whole_sequence(spec):
    torch.manual_seed(0)
    model = build_model(spec, SIZES).eval()
    x = (torch.rand(3, 10, 12) > 0.7).float()  # (batch, time, keys)
    whole, _ = model(x)
    state, steps = None, []
    for t in range(10):
        out, state = model(x[:, t : t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), whole, rtol=1e-5, atol=1e-6)
    # and in two chunks
    a, state = model(x[:, :4])
    b, _ = model(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), whole, rtol=1e-5, atol=1e-6)
    assert whole.shape == (3, 10, 12)


def test_bad_spec_names_the_field():
    with pytest.raises(LstmidiError, match="hidden"):
        build_model({"name": "rollnet", "hidden": 0}, SIZES)
    with pytest.raises(LstmidiError, match="output"):
        build_model({"name": "rollnet", "output": "dense"}, SIZES)
    with pytest.raises(LstmidiError, match="unknown model 'gpt'"):
        build_model({"name": "gpt"}, SIZES)
