"""What tells a flagship model's pieces from the held-out chorales: the tell-apart score per seed and, for
each per-piece measure alone, its mean in both sets and its ROC AUC (0.5 = no help; scikit-learn). Run on
the validation chorales, so that sampling settings can be chosen without looking at the test split.

    python benchmarks/separators.py [--model M.lstmidi] [--num 40] [--seeds 0 1 2] [--seconds 30]
        [--temperature T] [--top-p P] [--nucleus pitch|all] [--json out.json]

Sampling options left out take the model's defaults.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from lstmidi.api import bundled_model, model_corpus
from lstmidi.corpus import bundled_corpus
from lstmidi.midi import load_score
from lstmidi.modelfile import load_model
from lstmidi.quality import last_seconds, measure_set, separation, tell_apart
from lstmidi.sampling import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--nucleus", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    loaded = load_model(args.model or bundled_model())
    _, paths = model_corpus(loaded, [bundled_corpus("bach")], progress=False)
    d = loaded.preset.data
    real = measure_set([last_seconds(load_score(p, d.tracks, d.drums), args.seconds) for p in paths["valid"]])
    result = {"model": str(loaded.path), "valid_pieces": len(real["features"]), "seeds": {}}
    options = {"temperature": args.temperature, "top_p": args.top_p, "nucleus": args.nucleus}
    for seed in args.seeds:
        pieces = generate(loaded, num=args.num, seed=seed, seconds=args.seconds, **options)
        gen = measure_set([p.score for p in pieces])
        rows = separation(gen["features"], real["features"])
        score = tell_apart(gen["features"], real["features"])
        result["seeds"][seed] = {"tell_apart": score, "measures": rows}
        print(f"\nseed {seed}: tell-apart {score:.3f} ({args.num} pieces x {args.seconds:g} s)")
        print(f"{'measure':22s} {'generated':>9s} {'real':>8s} {'AUC':>5s}")
        for name, row in rows.items():
            print(f"{name:22s} {row['generated']:9.3f} {row['real']:8.3f} {row['auc']:5.2f}")
    scores = [s["tell_apart"] for s in result["seeds"].values()]
    result["tell_apart_mean"] = float(np.mean(scores))
    print(f"\ntell-apart: {' / '.join(f'{s:.3f}' for s in scores)} (mean {result['tell_apart_mean']:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
