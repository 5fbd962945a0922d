"""The bundled corpora (`bach/`, `quartets/`: MIDI files with their provenance) and what the two
`regenerate.py` scripts that export them from music21 share."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path


def output_folder(doc: str, script: str) -> Path:
    """The --out folder of a regenerate.py script (default: the script's own folder), created."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(script).resolve().parent, help="output folder (default: next to this script)"
    )
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out


def report_export(
    out: Path,
    outcome: dict,
    started: float,
    details: str = "",
    after: str = "",
    name: Callable[[Path], str] = lambda p: p.name,
) -> int:
    """Print what an export wrote, skipped (and why), left stale in `out` and failed; 1 if anything failed.
    `outcome`: {"written": [Path], "skipped": [(Path, reason)], "failed": [(Path, reason)]}; `started`: its
    time.monotonic(); `details` go in the headline's parentheses, `after` after it; `name` shows a skipped path."""
    written, skipped, failed = outcome["written"], outcome["skipped"], outcome["failed"]
    size = sum(d.stat().st_size for d in written)
    print(
        f"\nexported {len(written)} files ({size / 1e6:.2f} MB{details}) to {out} in "
        f"{time.monotonic() - started:.0f}s{after}"
    )
    print(f"skipped {len(skipped)}:")
    for path, reason in sorted(skipped):
        print(f"  {name(path)}: {reason}")
    for path in sorted(set(out.glob("*.mid")) - set(written)):
        print(f"warning: {path.name} in {out} was not written by this run (stale?)")
    for path, reason in failed:
        print(f"FAILED {path.name}: {reason}", file=sys.stderr)
    return 1 if failed else 0
