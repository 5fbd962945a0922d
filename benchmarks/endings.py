"""Do event-token pieces end where they are asked to? 50 seeded samples from a model (default: the
bundled pretrained one): the share that end with EOS within +-10% of the requested length (in tokens,
and in seconds of music), and miditok's token-grammar errors over all of them.

    python benchmarks/endings.py [--model M.lstmidi] [--seconds 30] [--num 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lstmidi.api import bundled_model
from lstmidi.modelfile import load_model
from lstmidi.sampling import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--num", type=int, default=50)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    loaded = load_model(args.model or bundled_model())
    enc = loaded.encoding
    target = enc.steps_for_seconds(args.seconds)
    started = time.time()
    rows = []
    for first in range(0, args.num, args.batch):
        n = min(args.batch, args.num - first)
        for k, piece in enumerate(generate(loaded, seconds=args.seconds, num=n, seed=first)):
            ids = piece.frames
            rows.append(
                {
                    "seed": first,
                    "index": k,
                    "tokens": len(ids) - 2,
                    "eos": bool(ids[-1] == enc.eos),
                    "errors": enc.token_errors(ids),
                    "music_seconds": float(piece.score.to("second").end()),
                }
            )
    tokens = np.array([r["tokens"] for r in rows])
    secs = np.array([r["music_seconds"] for r in rows])
    near_tokens = float(np.mean([r["eos"] and abs(r["tokens"] - target) <= 0.1 * target for r in rows]))
    near_secs = float(
        np.mean([r["eos"] and abs(r["music_seconds"] - args.seconds) <= 0.1 * args.seconds for r in rows])
    )
    result = {
        "model": str(loaded.path),
        "requested_seconds": args.seconds,
        "target_tokens": target,
        "samples": len(rows),
        "eos_within_10pct_tokens": near_tokens,
        "eos_within_10pct_seconds": near_secs,
        "token_errors_total": float(sum(r["errors"] for r in rows)),
        "tokens_mean": float(tokens.mean()),
        "music_seconds_mean": float(secs.mean()),
        "music_seconds_p10_p90": [float(np.percentile(secs, 10)), float(np.percentile(secs, 90))],
        "seconds": round(time.time() - started, 1),
    }
    print(f"{'metric':40s} value")
    for k, v in result.items():
        print(f"{k:40s} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
