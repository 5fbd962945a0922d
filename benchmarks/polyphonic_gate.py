"""The quality gate of a model that `lstmidi benchmark polyphonic` trained, again, with other sampling
options: the same gate the run wrote (`training.quality_check`: 20 pieces of 20 s, no primer, the run's
seed) against the test or validation pieces of the .mat file, and for each per-piece measure the means and
ROC AUC (what tells the pieces apart). Tune sampling options on `--split valid`; score `test` once. Prints
a table and writes JSON.

    python benchmarks/polyphonic_gate.py RUN/model.lstmidi --dataset jsb --fill 0.3 [--split valid]
        [--temperature T] [--max-notes N] [--usual-notes N] [--num 20] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lstmidi.files import atomic_write_text
from lstmidi.modelfile import load_model
from lstmidi.polyphonic import QUALITY_PIECES, QUALITY_SECONDS, load_mat, mat_path
from lstmidi.quality import gate_table, last_seconds, measure_set, separation
from lstmidi.training import gate_pieces, quality_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--dataset", default="jsb", choices=("jsb", "nottingham"))
    ap.add_argument("--data", default=None, help="the .mat file or its folder (default: the benchmark's)")
    ap.add_argument("--split", default="test", choices=("test", "valid"))
    ap.add_argument("--fill", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--max-notes", type=int, default=None)
    ap.add_argument("--usual-notes", type=int, default=None, help="for models trained before lstmidi set it")
    ap.add_argument("--num", type=int, default=QUALITY_PIECES)
    ap.add_argument("--seconds", type=float, default=QUALITY_SECONDS)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    loaded = load_model(args.model)
    sample = loaded.preset.sample
    for name in ("fill", "temperature", "max_notes", "usual_notes"):
        if getattr(args, name) is not None:
            setattr(sample, name, getattr(args, name))
    splits = load_mat(mat_path(args.dataset, args.data))
    real = [loaded.encoding.decode(p.astype(np.uint8)) for p in splits[args.split]]
    seed = loaded.preset.train.seed
    pieces = gate_pieces(loaded, num=args.num, seconds=args.seconds, seed=seed)  # rated by both tables below
    gate = quality_check(loaded, real, num=args.num, seconds=args.seconds, seed=seed, generated=pieces)
    print("\n".join(gate_table(gate)))
    ends = [last_seconds(s, args.seconds) for s in real]
    seps = separation(measure_set(pieces)["features"], measure_set(ends)["features"])
    print("\n| measure | generated | real | ROC AUC |\n|---|---|---|---|")
    for name, s in seps.items():
        print(f"| {name} | {s['generated']:.3f} | {s['real']:.3f} | {s['auc']:.2f} |")
    if args.json:
        result = {
            "model": str(args.model),
            "dataset": args.dataset,
            "split": args.split,
            "sample": sample.model_dump(mode="json"),
            "gate": gate,
            "separators": seps,
        }
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
