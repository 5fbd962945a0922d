"""What generation needs from an `events` encoding's miditok tokenizer, as plain data, kept on disk.

Importing miditok costs about 0.2 s (it imports huggingface_hub), a tenth of `lstmidi generate`. Generation
needs only the vocabulary, the token-type graph of the grammar and the tick tables of the decoder
(eventdecode), so `tables(enc)` reads them from `CACHE/tokenizers/KEY.json` (KEY: the encoding's
`cache_key`, which holds the miditok version) and builds the tokenizer only when that file is missing,
unreadable or holds another vocabulary than the one `vocab_sha1` names; then it writes the file for the
next process. Encoding MIDI files (training, primers) still builds the tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, default_cache_dir

FIELDS = (
    "vocab",
    "graph",
    "time_division",
    "default_tempo",
    "tpb_per_ts",
    "steps",
    "rests",
    "positions_per_beat",
    "instruments",
    "default_velocity",
    "default_signature",
)


def from_tokenizer(tokenizer) -> dict[str, Any]:
    """The tables of a miditok tokenizer (JSON-safe: integer keys as strings)."""
    from miditok.constants import DEFAULT_VELOCITY, MIDI_INSTRUMENTS, TIME_SIGNATURE

    inverse = {i: t for t, i in tokenizer.vocab.items()}
    return {
        "vocab": [inverse[i] for i in range(len(inverse))],
        "graph": {kind: sorted(after) for kind, after in tokenizer.tokens_types_graph.items()},
        "time_division": int(tokenizer.time_division),
        "default_tempo": float(tokenizer.default_tempo),
        "tpb_per_ts": {str(den): int(tpb) for den, tpb in tokenizer._tpb_per_ts.items()},
        "steps": {str(tpb): dict(table) for tpb, table in tokenizer._tpb_tokens_to_ticks.items()},
        "rests": {str(tpb): dict(table) for tpb, table in tokenizer._tpb_rests_to_ticks.items()},
        "positions_per_beat": int(tokenizer.config.max_num_pos_per_beat),
        "instruments": [MIDI_INSTRUMENTS[p]["name"] for p in range(128)],
        "default_velocity": int(DEFAULT_VELOCITY),
        "default_signature": list(TIME_SIGNATURE),
    }


def vocab_sha1(vocab: list[str]) -> str:
    """The fingerprint `EventsParams.vocab_sha1` holds: of the [token, id] pairs in id order, as JSON."""
    return hashlib.sha1(json.dumps([[t, i] for i, t in enumerate(vocab)]).encode()).hexdigest()


def cache_file(enc) -> Path:
    key = hashlib.sha1(json.dumps(enc.cache_key(), sort_keys=True).encode()).hexdigest()[:20]
    return default_cache_dir() / "tokenizers" / f"{key}.json"


def tables(enc) -> dict[str, Any]:
    """The tables of `enc` (an Events encoding): from the cache file when it holds this vocabulary, else from
    the tokenizer (then saved for the next process; a cache that cannot be written is only skipped)."""
    path = cache_file(enc)
    try:
        found = json.loads(path.read_text())
        want = enc.params.vocab_sha1  # None: a new encoding, whose vocabulary the cache key alone fixes
        if set(found) == set(FIELDS) and want in (None, vocab_sha1(found["vocab"])):
            return found
    except (OSError, ValueError, TypeError, KeyError):
        pass
    built = from_tokenizer(enc.tokenizer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(built))
    except OSError:
        pass
    return built
