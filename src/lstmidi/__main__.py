"""`python -m lstmidi ...`: the same as the `lstmidi` command."""

from .cli import run

run()
