"""Compare models with different encodings in one unit: validation NLL per note on the bundled chorales.

    python benchmarks/per_note_nll.py TOKEN_MODEL.lstmidi ROLL_MODEL.lstmidi [--json out.json]

TOKEN_MODEL is an event-token model (default: the bundled one if given as "bundled"), ROLL_MODEL a
piano-roll model, both trained on the bundled chorales with the same split. Per note = a model's
validation NLL per step x the steps it scored / the notes of the validation files
(lstmidi.evaluation.held_out_nll, which scores the validation pieces as training does).
"""

from __future__ import annotations

import argparse
import json

from lstmidi.api import bundled_model
from lstmidi.corpus import bundled_corpus, load_corpus
from lstmidi.evaluation import held_out_nll, unigram_nll
from lstmidi.midi import load_score
from lstmidi.modelfile import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("token_model")
    ap.add_argument("roll_model")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tok = load_model(bundled_model() if args.token_model == "bundled" else args.token_model)
    roll = load_model(args.roll_model)
    c = load_corpus(None, tok.encoding, tok.preset.data)
    cr = load_corpus(None, roll.encoding, roll.preset.data)
    if c.names["valid"] != cr.names["valid"]:
        raise SystemExit("the two models' validation splits differ")
    notes = sum(
        load_score(bundled_corpus() / n, tok.preset.data.tracks, tok.preset.data.drums).note_num()
        for n in c.names["valid"]
    )
    t = held_out_nll(tok, c.pieces["valid"], notes)
    r = held_out_nll(roll, cr.pieces["valid"], notes)
    uni = unigram_nll(c.pieces["train"], c.pieces["valid"], tok.encoding.sizes["vocab_size"])
    rows = {
        "validation files": len(c.names["valid"]),
        "notes": notes,
        "tokens scored": t["steps"],
        "frames scored": r["steps"],
        "token model nats/token": t["per_step"],
        "token model nats/note": t["per_note"],
        "token unigram nats/token": uni,
        "token unigram nats/note": uni * t["steps"] / notes,
        "piano roll nats/frame": r["per_step"],
        "piano roll nats/note": r["per_note"],
    }
    for k, v in rows.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
