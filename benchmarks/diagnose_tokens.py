"""Pipeline checks of an event-token model on held-out music (default: the bundled model on the held-out
Bach chorales), the diagnosis of docs/results.md:

- held-out NLL per note, split by the type of the predicted token (lstmidi.evaluation.token_type_nll);
- the same pieces transposed by k semitones score nearly the same (augmentation and pitch tokens are
  consistent): pitch NLL for k in -5..5;
- pitch NLL by position in the piece (whole pieces, state carried): a model that uses its context
  predicts later pitches better than the first ones;
- the share of pitch probability on the pitches of the piece's key (teacher-forced), beside the share
  of real notes in that key.

    python benchmarks/diagnose_tokens.py [--model M.lstmidi] [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lstmidi.api import bundled_model, model_corpus
from lstmidi.corpora import __file__ as corpora_init
from lstmidi.evaluation import token_type_nll
from lstmidi.modelfile import load_model
from lstmidi.quality import MAJOR_SCALE, MINOR_SCALE, find_key


def whole_piece_logp(model, seq: np.ndarray) -> np.ndarray:
    """(tokens - 1, vocab) log-probabilities of each next token, the whole piece in one pass."""
    with torch.no_grad():
        out, _ = model(torch.from_numpy(seq[None, :-1].astype(np.int64)))
    return torch.log_softmax(out[0].float(), -1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(Path(corpora_init).parent / "bach"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    loaded = load_model(args.model or bundled_model())
    enc = loaded.encoding
    corpus, paths = model_corpus(loaded, [Path(args.data)], progress=False)
    split = "test" if corpus.pieces["test"] else "valid"
    pieces = corpus.pieces[split]
    pitch_of = enc.pitch_of_token()
    notes = int(sum((pitch_of[p] >= 0).sum() for p in pieces))
    result = {
        "model": str(loaded.path),
        "data": args.data,
        "split": split,
        "pieces": len(pieces),
        "notes": notes,
        "by_type": token_type_nll(loaded, pieces, notes),
    }
    result["per_note"] = sum(v["per_note"] for v in result["by_type"].values())  # token_type_nll's shares add up
    pitch_type = "NoteOn" if "NoteOn" in result["by_type"] else "Pitch"  # MIDI-Like's onsets carry the pitch
    result["pitch_type"] = pitch_type
    rng = np.random.default_rng(0)
    transposed = {}
    for k in range(-5, 6):
        moved = [enc.augment(p, rng, k) for p in pieces]
        by_type = token_type_nll(loaded, moved, notes)
        transposed[k] = by_type[pitch_type]["per_token"]
    result["pitch_nll_transposed"] = transposed
    per_position, key_mass, key_real = np.zeros(8), [], []
    counts = np.zeros(8)
    is_pitch = pitch_of >= 0
    for seq in pieces:
        logp = whole_piece_logp(loaded.model, seq)
        y = seq[1:]
        sel = np.flatnonzero(is_pitch[y])
        nll = -logp[sel, y[sel]]
        bins = np.minimum(sel // 64, 7)
        np.add.at(per_position, bins, nll)
        np.add.at(counts, bins, 1)
        p = pitch_of[y[sel]]
        tonic, mode, _ = find_key(p, np.ones(len(p)))
        scale = np.zeros(12, bool)
        scale[[(tonic + s) % 12 for s in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)]] = True
        probs = np.exp(logp[sel][:, is_pitch])  # (pitch steps, pitch tokens)
        in_key = scale[pitch_of[is_pitch] % 12]
        key_mass.append(float((probs[:, in_key].sum(1) / probs.sum(1)).mean()))
        key_real.append(float(scale[p % 12].mean()))
    result["pitch_nll_by_position"] = {
        f"{64 * i}-{64 * i + 63}" if i < 7 else f"{64 * i}+": float(v)
        for i, v in enumerate(per_position / np.maximum(counts, 1))
    }
    result["pitch_mass_in_key"] = float(np.mean(key_mass))
    result["real_notes_in_key"] = float(np.mean(key_real))
    print(f"{result['model']} on {len(pieces)} {split} pieces of {args.data}: {result['per_note']:.3f} nats per note")
    for t, v in result["by_type"].items():
        print(f"  {t:10s} {v['tokens']:7d} tokens  {v['per_token']:.3f} nats/token  {v['per_note']:.3f} nats/note")
    print("pitch NLL transposed by k: " + ", ".join(f"{k:+d}: {v:.3f}" for k, v in transposed.items()))
    print(
        "pitch NLL by token position: " + ", ".join(f"{k}: {v:.3f}" for k, v in result["pitch_nll_by_position"].items())
    )
    print(
        f"pitch probability in the key: {result['pitch_mass_in_key']:.3f} (real notes in the key: "
        f"{result['real_notes_in_key']:.3f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
