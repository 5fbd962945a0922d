"""Does the music sound like its corpus? The quality gate (lstmidi.quality) for every bundled model, in
each mode it was trained for: chorales (--programs 0, against the held-out Bach chorales) and string
quartets (--programs 40,41,42, against the held-out quartets), beside real music and a random-pitch
control, with the held-out NLL per note, originality and decoding errors. Prints a table and writes
JSON (default benchmarks/results-quality.json).

    python benchmarks/quality.py [--model M.lstmidi ...] [--num 20] [--seconds 30] [--json out.json]

Targets of the bundled model in chorale mode (issue 13): in-scale >= 0.90, consonance >= 0.80, key fit
>= 0.80, >= 60% of pieces ending on the tonic triad, >= 98% of the time with at most 4 notes sounding,
tell-apart <= 0.75, held-out NLL <= 2.0 nats per note, copying no higher than real held-out music's,
0 decoding errors.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from lstmidi.api import evaluate
from lstmidi.corpora import __file__ as corpora_init
from lstmidi.modelfile import load_model

CORPORA = Path(corpora_init).parent
# mode -> (programs, bundled corpus, held-out split: the quartets' test split has a single movement)
MODES = {"chorales": ([0], "bach", "test"), "quartets": ([40, 41, 42], "quartets", "held-out")}
TARGETS = {
    "in_scale": (">=", 0.90),
    "consonance": (">=", 0.80),
    "key_fit": (">=", 0.80),
    "tonic_ending": (">=", 0.60),
    "time_within_voices": (">=", 0.98),
    "tell_apart": ("<=", 0.75),
}


def modes_of(path: Path) -> dict[str, list[int] | None]:
    """{mode: the --programs to ask for}: each mode whose instruments a multi-instrument event-token model
    knows; for any other model, chorales without --programs."""
    enc = load_model(path).encoding
    if not getattr(enc.params, "programs", False):
        return {"chorales": None}
    known = set(enc.program_of_token().tolist())
    return {mode: programs for mode, (programs, _, _) in MODES.items() if set(programs) <= known}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="model files (default: every bundled model)")
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results-quality.json")
    args = ap.parse_args()
    models = [Path(m) for m in args.model] if args.model else sorted((CORPORA.parent / "pretrained").glob("*.lstmidi"))
    results = []
    for model in models:
        for mode, programs in modes_of(model).items():
            _, corpus, split = MODES[mode]
            started = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                r = evaluate(
                    model,
                    [CORPORA / corpus],
                    num=args.num,
                    seconds=args.seconds,
                    seed=args.seed,
                    out=Path(tmp) / "eval",
                    progress=False,
                    split=split,
                    programs=programs,
                )
            orig = r["originality"]
            results.append(
                {
                    "model": model.name,
                    "mode": mode,
                    "pieces": args.num,
                    "seconds": args.seconds,
                    "held_out": {"split": r["held_out"]["split"], "pieces": r["held_out"]["pieces"]},
                    "nll_per_note": r["nll"]["per_note"],
                    "nll_by_type": r["nll"].get("by_type"),
                    "gate": {
                        k: {s: v[s] for s in ("generated", "real", "random", "target", "passed")}
                        for k, v in r["quality"]["rows"].items()
                    },
                    "gate_passed": r["quality"]["passed"],
                    "voices": r["quality"]["voices"],
                    "longest_copy": {s: orig[s]["longest_copy"] for s in ("generated", "real")},
                    "ngram8_share": {s: orig[s]["ngram8_share"]["mean"] for s in ("generated", "real")},
                    "token_errors": r["generated"]["token_errors"],
                    "music_seconds": r["generated"]["music_seconds"],
                    "time": round(time.time() - started, 1),
                }
            )
    for res in results:
        print(
            f"\n{res['model']}, {res['mode']}: {res['pieces']} pieces x {res['seconds']:g} s against "
            f"{res['held_out']['pieces']} {res['held_out']['split']} pieces; "
            f"held-out NLL {res['nll_per_note']:.3f} nats per note; {res['time']:.0f} s"
        )
        print(f"{'measure':22s} {'generated':>9s} {'real':>7s} {'random':>7s} {'gate':>12s} {'issue target':>13s}")
        for name, row in res["gate"].items():
            op, target = TARGETS.get(name, ("", None))
            gate = "—" if row["target"] is None else f"{'ok' if row['passed'] else 'NO'} {row['target']:.3f}"
            issue = (
                "—"
                if target is None
                else f"{op} {target:.2f} "
                f"{'ok' if (row['generated'] >= target if op == '>=' else row['generated'] <= target) else 'NO'}"
            )
            print(
                f"{name:22s} {row['generated']:9.3f} {row['real']:7.3f} {row['random']:7.3f} {gate:>12s} {issue:>13s}"
            )
        lc = res["longest_copy"]
        print(
            f"longest copied run: generated {lc['generated']['mean']:.1f} (max {lc['generated']['max']:.0f}), "
            f"real {lc['real']['mean']:.1f} (max {lc['real']['max']:.0f}); 8-note n-grams in training: generated "
            f"{res['ngram8_share']['generated']:.3f}, real {res['ngram8_share']['real']:.3f}; decoding errors "
            f"{res['token_errors']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
