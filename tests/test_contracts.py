"""Optional capabilities are declared on the contracts (`encodings/base.py`, `models/base.py`) and what differs by
encoding kind is in one table (`kinds.py`): no module outside the registries probes for a capability with
hasattr/getattr or branches on an encoding's kind (docs/DESIGN.md, "The three contracts")."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lstmidi"
REGISTRIES = ("encodings/", "models/", "kinds.py")  # where kinds and capabilities are declared
KIND_NAMES = {"multihot", "tokens", "notes"}
# attributes that other libraries' objects may or may not have (not lstmidi's capabilities): PyYAML's error
# marks, and zipfile's private end-of-directory reader
THIRD_PARTY = {"problem_mark", "problem", "_EndRecData"}


def problems(source: str) -> list[str]:
    """Capability probing and kind branching in one module's source, as 'line: what' strings."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "hasattr":
                found.append(f"{node.lineno}: hasattr")
            elif (
                node.func.id == "getattr"
                and len(node.args) == 3
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value not in THIRD_PARTY
            ):
                found.append(f"{node.lineno}: getattr(..., {node.args[1].value!r}, default)")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Constant) and s.value in KIND_NAMES for s in sides) or any(
                isinstance(s, ast.Attribute) and s.attr == "kind" for s in sides
            ):
                found.append(f"{node.lineno}: compares a kind")
        elif isinstance(node, ast.Attribute) and node.attr == "kind" and isinstance(node.ctx, ast.Load):
            parent = parents.get(node)
            looked_up = (
                isinstance(parent, ast.Subscript) and isinstance(parent.value, ast.Name) and parent.value.id == "KINDS"
            )
            passed_on = (
                isinstance(parent, ast.Call)
                and node in parent.args  # a lookup table's .get(kind) is a branch
                and not (isinstance(parent.func, ast.Attribute) and parent.func.attr == "get")
            )
            if not (looked_up or passed_on):
                found.append(f"{node.lineno}: uses .kind other than KINDS[...] or as an argument")
    return found


def test_the_checker_finds_probing():
    assert problems("if hasattr(enc, 'eos'):\n    pass") == ["1: hasattr"]
    assert problems("x = getattr(model, 'context', 0)") == ["1: getattr(..., 'context', default)"]
    assert problems("if enc.kind == 'tokens':\n    pass") == [
        "1: compares a kind",
        "1: uses .kind other than KINDS[...] or as an argument",
    ]
    assert problems("u = {'multihot': 'frames'}.get(enc.kind)") == [
        "1: uses .kind other than KINDS[...] or as an argument"
    ]
    assert problems("k = KINDS[enc.kind]\nf(model, batch, enc.kind)\nv = getattr(module, name)") == []


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(SRC.rglob("*.py")) if not str(p.relative_to(SRC)).startswith(REGISTRIES)],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_no_capability_probing_outside_the_registries(path):
    assert problems(path.read_text()) == []
