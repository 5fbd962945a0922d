"""How well does the chorale model harmonise? Each held-out test chorale's soprano goes to `harmonize`, and
the result is compared with Bach's own lower voices. Prints a table and writes JSON (default
benchmarks/results-harmonize.json).

    python benchmarks/harmonize.py [--model M.lstmidi] [--seed 0] [--split test|valid] [--temperature T]
                                   [--iterations N] [--parallels NATS] [--json out.json]

Sampling settings are tuned with --split valid; the test split is scored once with the model's defaults.

Targets (issue 16): soprano kept exactly 100%; in-scale share >= 0.90 and consonance >= 0.80 (the quality
gate's definitions); >= 98% of notes inside the usual voice ranges; parallel fifths/octaves and voice
crossings per 100 beats no more than 2x Bach's own in the same pieces; tell-apart against Bach's
harmonisations <= 0.75; a 16-bar melody harmonised from the CLI in < 10 s. Also reported: how often the chord
of a beat matches Bach's (root and quality), and the pseudo-NLL of Bach's alto, tenor and bass under the
model (each cell given every other cell, as the model is trained).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from symusic import Score

from lstmidi.api import bundled_model, model_corpus
from lstmidi.corpus import bundled_corpus
from lstmidi.harmonize import harmonize
from lstmidi.midi import load_score
from lstmidi.modelfile import load_model
from lstmidi.quality import features, harmony, tell_apart
from lstmidi.voiceleading import beat_grid, chord_match, crossings, in_ranges, parallels

TARGETS = {
    "soprano_kept": (">=", 1.0),
    "in_scale": (">=", 0.90),
    "consonance": (">=", 0.80),
    "in_ranges": (">=", 0.98),
    "tell_apart": ("<=", 0.75),
    "cli_seconds_16_bars": ("<", 10.0),
}


def soprano(score: Score) -> list[tuple[float, float, int]]:
    track = score.to("quarter").tracks[0]
    return [(round(n.time, 4), round(n.duration, 4), n.pitch) for n in track.notes]


def lower_voices_nll(loaded, score: Score) -> tuple[float, int, int]:
    """(total nats, cells, notes) of Bach's alto, tenor and bass under the model, each cell given all others."""
    enc = loaded.encoding
    x = torch.from_numpy(enc.encode(score).astype(np.int64))[None]
    with torch.no_grad():
        logits, _ = loaded.model(x)
    logp = torch.log_softmax(logits[0, :, 1:4].float(), -1)  # (frames, 3, vocab)
    nll = -logp.gather(-1, x[0, :, 1:4, None]).squeeze(-1)
    notes = int((x[0, :, 1:4] >= 2).sum())
    return float(nll.sum()), int(nll.numel()), notes


def cli_seconds(model: Path, melody: Score, out: Path) -> float:
    """Wall time of `lstmidi harmonize` (MIDI + WAV + PNG) from process start, for the first 16 bars."""
    path = out / "melody16.mid"
    sixteen = melody.to("quarter").clip(0, 64).to("tick")
    sixteen.dump_midi(path)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmidi",
            "harmonize",
            str(path),
            "-m",
            str(model),
            "-o",
            str(out / "h16.mid"),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a four-voice model (default: the bundled chorale model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=("test", "valid"), default="test")
    ap.add_argument("--temperature", type=float, default=None, help="default: the model's")
    ap.add_argument("--iterations", type=int, default=None, help="Gibbs sweeps (default: the model's)")
    ap.add_argument(
        "--parallels", type=float, default=None, help="nats per parallel fifth/octave (default: the model's)"
    )
    ap.add_argument("--json", default="benchmarks/results-harmonize.json")
    args = ap.parse_args()
    model = Path(args.model) if args.model else bundled_model("chorale")
    loaded = load_model(model)
    _, paths = model_corpus(loaded, [bundled_corpus("bach")], progress=False)
    bach = [load_score(p, "all", False) for p in paths[args.split]]
    sampling = {"temperature": args.temperature, "iterations": args.iterations, "parallels": args.parallels}
    started = time.time()
    made = []
    for i, piece in enumerate(bach):
        made.append(harmonize(loaded, piece, seed=args.seed + i, **sampling)[0])
        print(f"\r{i + 1}/{len(bach)} harmonised", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.time() - started
    enc = loaded.encoding
    quantized = [enc.quantize(p) for p in bach]
    rows = {"generated": {}, "bach": {}}
    for name, pieces in (("generated", made), ("bach", quantized)):
        measures = [harmony(p) for p in pieces]
        grids = [beat_grid(p) for p in pieces]
        rows[name] = {
            "in_scale": float(np.mean([m["in_scale"] for m in measures])),
            "consonance": float(np.mean([m["consonance"] for m in measures])),
            "in_ranges": float(np.mean([in_ranges(p) for p in pieces])),
            "parallels_per_100_beats": float(np.mean([parallels(g) for g in grids])),
            "crossings_per_100_beats": float(np.mean([crossings(g) for g in grids])),
            "features": [features(p, m) for p, m in zip(pieces, measures, strict=True)],
            "grids": grids,
        }
    kept = float(np.mean([soprano(m) == soprano(q) for m, q in zip(made, quantized, strict=True)]))
    nll = [lower_voices_nll(loaded, b) for b in bach]
    with tempfile.TemporaryDirectory() as tmp:
        cli = cli_seconds(model, bach[0], Path(tmp))
    result = {
        "model": str(model),
        "pieces": len(bach),
        "split": args.split,
        "seed": args.seed,
        "temperature": args.temperature or loaded.preset.sample.temperature,
        "iterations": args.iterations or loaded.preset.sample.iterations,
        "parallels_penalty": loaded.preset.sample.parallels if args.parallels is None else args.parallels,
        "harmonise_seconds": seconds,
        "soprano_kept": kept,
        "in_scale": rows["generated"]["in_scale"],
        "consonance": rows["generated"]["consonance"],
        "in_ranges": rows["generated"]["in_ranges"],
        "parallels_per_100_beats": rows["generated"]["parallels_per_100_beats"],
        "bach_parallels_per_100_beats": rows["bach"]["parallels_per_100_beats"],
        "crossings_per_100_beats": rows["generated"]["crossings_per_100_beats"],
        "bach_crossings_per_100_beats": rows["bach"]["crossings_per_100_beats"],
        "bach": {k: rows["bach"][k] for k in ("in_scale", "consonance", "in_ranges")},
        "tell_apart": tell_apart(rows["generated"]["features"], rows["bach"]["features"], args.seed),
        "chord_match": float(
            np.nanmean(
                [chord_match(g, b) for g, b in zip(rows["generated"]["grids"], rows["bach"]["grids"], strict=True)]
            )
        ),
        "bach_lower_voices_pseudo_nll_per_cell": sum(n for n, _, _ in nll) / sum(c for _, c, _ in nll),
        "bach_lower_voices_pseudo_nll_per_note": sum(n for n, _, _ in nll) / sum(k for _, _, k in nll),
        "cli_seconds_16_bars": cli,
    }
    print(
        f"{model.name}: {len(bach)} {args.split} chorales, soprano given, temperature {result['temperature']:g}, "
        f"{result['iterations']} sweeps, parallels penalty {result['parallels_penalty']:g} nats; {seconds:.0f} s"
    )
    print(f"{'measure':34s} {'harmonize':>10s} {'Bach':>8s}  target")
    for key in ("soprano_kept", "in_scale", "consonance", "in_ranges"):
        op, target = TARGETS[key]
        ok = result[key] >= target
        print(
            f"{key:34s} {result[key]:10.3f} {rows['bach'].get(key, 1.0):8.3f}  {op} {target:g} {'ok' if ok else 'NO'}"
        )
    for key in ("parallels_per_100_beats", "crossings_per_100_beats"):
        mine, theirs = result[key], result[f"bach_{key}"]
        print(f"{key:34s} {mine:10.2f} {theirs:8.2f}  <= 2x Bach {'ok' if mine <= 2 * theirs else 'NO'}")
    apart = result["tell_apart"]
    print(f"{'tell_apart':34s} {apart:10.3f} {0.5:8.3f}  <= 0.75 {'ok' if apart <= 0.75 else 'NO'}")
    print(f"{'chord_match (root and quality)':34s} {result['chord_match']:10.3f}")
    print(f"{'Bach A,T,B pseudo-NLL, nats/cell':34s} {result['bach_lower_voices_pseudo_nll_per_cell']:10.3f}")
    print(f"{'Bach A,T,B pseudo-NLL, nats/note':34s} {result['bach_lower_voices_pseudo_nll_per_note']:10.3f}")
    print(f"{'CLI, 16 bars, seconds':34s} {cli:10.2f}           < 10 {'ok' if cli < 10 else 'NO'}")
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
