"""`events`: the flagship's encoding — MidiTok event tokens (REMI, TSD or MIDI-Like) in one stream.

A thin wrapper around a miditok tokenizer built from this encoding's parameters alone (so `to_dict()`
rebuilds the same vocabulary; `vocab_sha1` records a fingerprint of it and a rebuild that gives a
different vocabulary, e.g. under another miditok version, is refused instead of decoding wrongly).

What a token stream holds (every piece is `[BOS, ..., EOS]`; PAD, BOS, EOS are ids 0, 1, 2):
- `programs=False`: the notes of all non-drum tracks merged into one instrument (decoded as piano);
  drum tracks are dropped.
- `programs=True`: every instrument in one stream with `Program` tokens (miditok's `use_programs` with
  `one_token_stream_for_programs`); tracks of the same program are merged (as miditok does); drum tracks
  are kept only with `drums=True`, as `PitchDrum` / `DrumOn` / `DrumOff` tokens after `Program_-1`.
- time on a grid of `steps_per_quarter` steps per beat, velocities in `num_velocities` bins, pitches in
  [pitch_low, pitch_high] (notes outside are dropped), plus Rest / Tempo / TimeSig tokens when enabled.

`steps_per_quarter` (s) stands for miditok's `beat_res = {(0, 4): s, (4, 12): s/2}` (durations and
time shifts up to 12 beats: steps of 1/s beat for the first 4 beats, then 2/s) and
`beat_res_rest = {(0, 1): s, (1, 2): s/2, (2, 12): s/4}`; s/2 and s/4 become the largest divisor of s
not above them (for s = 8 these are miditok's defaults). REMI/TSD cut notes longer than 12 beats to 12
(their Duration tokens stop there); MIDI-Like keeps them (NoteOff after a chain of TimeShifts).
Fixed settings (changing them changes every vocabulary): 32 tempo bins linear in 40..250 qpm, the
time signatures miditok supports by default (3/8, 6/8, 12/8 and 1/4..6/4), drum pitches 27..88
(clipped to the pitch range), equal successive tempo changes removed, duplicate notes kept.

Times: `decode` and `quantize` return scores in ticks at the tokenizer's time division
(`time_division`: 2 x steps_per_quarter ticks per quarter with time signatures on, since x/8 bars need
twice the grid; steps_per_quarter with them off).
`quantize(s)` is miditok's own preprocessing of `s` (after the track merge / drum filter above),
resampled to that time division (velocities set to 100 without Velocity tokens), so
`decode(encode(s)) == quantize(s)` note for note. For MIDI-Like,
`quantize` also re-pairs the note-offs of overlapping notes of one pitch first-in-first-out, which is
what the NoteOn/NoteOff tokens can say: the k-th onset of a pitch ends at the k-th offset of that pitch.
One exception is miditok's and left as is: TSD with rests counts a Rest from the previous note's end;
where the time signature changes from x/8 to x/4 (whose grid is twice as coarse) that end can fall
between two x/4 steps, the odd tick is lost, and the following notes decode one tick early (REMI
re-anchors on its next Position; MIDI-Like puts note ends on their own grid; without x/8 <-> x/4
changes, or with rests off, TSD is exact too).

The grammar (`transitions`, `allowed_next`, `grammar`) lets a sampler emit only sequences that miditok
decodes without token errors; `augment` transposes and stretches token sequences for training.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from symusic import Note, Score, Tempo, TimeSignature, Track
from symusic.core import ScoreTick

from .base import EncodingParams, TokenStream
from .eventdecode import FastDecoder
from .eventencode import FastEncoder
from .eventtables import tables, vocab_sha1
from .grammar import SPECIAL_TOKENS, BatchGrammar, EventGrammar, batch_tables, grammar_tables, transition_matrix

NUM_TEMPOS = 32
TEMPO_RANGE = (40, 250)
TIME_SIGNATURE_RANGE = {8: [3, 12, 6], 4: [5, 6, 3, 2, 1, 4]}  # miditok's default
DRUM_PITCH_RANGE = (27, 88)  # miditok's default (GM2 drum kit)
DEFAULT_VELOCITY = 100  # miditok's velocity of decoded notes without Velocity tokens

# Tokens per second of music, measured on the 406 bundled Bach chorales (all defaults but the tokenizer
# and `programs`; see `Events.steps_for_seconds`).
TOKENS_PER_SECOND = {
    ("REMI", False): 27.9,
    ("REMI", True): 35.8,
    ("TSD", False): 26.9,
    ("TSD", True): 34.9,
    ("MIDILike", False): 26.9,
    ("MIDILike", True): 42.9,
}


def _import_miditok():
    """`import miditok` without its PyTorch data module when torch is not loaded yet. miditok's package imports
    that module whenever it can (inside try/except ImportError) and it imports torch: 1-2 s for nothing lstmidi
    uses, so that reading a corpus into event tokens (`lstmidi prepare`, the workers of `load_corpus`) runs
    without torch. A later `import miditok.pytorch_data` works as usual."""
    if "miditok" not in sys.modules and "torch" not in sys.modules:
        sys.modules["miditok.pytorch_data"] = None  # the package's `from miditok import pytorch_data` fails
        try:
            import miditok
        finally:
            del sys.modules["miditok.pytorch_data"]
    import miditok

    return miditok


class EventsParams(EncodingParams):
    tokenizer: Literal["REMI", "TSD", "MIDILike"] = Field(
        "REMI",
        description="miditok tokenizer: REMI (Bar/Position), TSD (TimeShift/Duration) or MIDILike "
        "(NoteOn/NoteOff/TimeShift)",
    )
    steps_per_quarter: int = Field(
        8, ge=1, le=64, description="time grid: positions per beat (miditok beat_res {(0,4): s, (4,12): s/2})"
    )
    num_velocities: int = Field(16, ge=1, le=127, description="velocity bins, equally spaced in 0..127")
    velocities: bool = Field(
        True,
        description="Velocity tokens; off: every note decodes at velocity 100 (for music with one dynamic, e.g. "
        "the chorales)",
    )
    rests: bool = Field(True, description="Rest tokens for silences")
    tempos: bool = Field(True, description="Tempo tokens (32 bins in 40..250 qpm)")
    time_signatures: bool = Field(True, description="TimeSig tokens")
    programs: bool = Field(
        False, description="multi-instrument: Program tokens, one stream; off = all non-drum tracks merged into one"
    )
    drums: bool = Field(False, description="keep drum tracks (needs programs=True)")
    pitch_low: int = Field(
        21, ge=0, le=127, description="lowest kept MIDI pitch (notes outside [pitch_low, pitch_high] are dropped)"
    )
    pitch_high: int = Field(108, ge=0, le=127, description="highest kept MIDI pitch")
    tokens_per_second: float | None = Field(
        None,
        gt=0,
        description="for steps_for_seconds; default: measured on the bundled chorales for this tokenizer and "
        "programs setting",
    )
    vocab_sha1: str | None = Field(
        None, description="set automatically: fingerprint of the vocabulary, checked when the tokenizer is rebuilt"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.pitch_low >= self.pitch_high:
            raise ValueError(f"pitch_low ({self.pitch_low}) must be below pitch_high ({self.pitch_high})")
        if self.drums and not self.programs:
            raise ValueError(
                "drums=True needs programs=True (without Program tokens drums would be merged into the piano)"
            )
        if self.drums and max(DRUM_PITCH_RANGE[0], self.pitch_low) >= min(DRUM_PITCH_RANGE[1], self.pitch_high):
            raise ValueError(
                "drums=True needs a pitch range overlapping the drum pitches "
                f"{DRUM_PITCH_RANGE[0]}..{DRUM_PITCH_RANGE[1]}"
            )
        return self


def _divisor_at_most(n: int, limit: float) -> int:
    """Largest divisor of n not above `limit` (at least 1): a coarser grid that stays on the fine one."""
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1.0, limit))


class Events(TokenStream):
    name = "events"
    Params = EventsParams
    augments = stretches = True  # transposes pitches, stretches Tempo tokens

    # ---- the miditok tokenizer, built once per instance ------------------------------------------
    def tokenizer_config(self) -> dict[str, Any]:
        """Every miditok `TokenizerConfig` argument this encoding sets (explicitly, so miditok's own
        defaults never matter). Keys of `beat_res` / `beat_res_rest` are (start beat, end beat) tuples."""
        p = self.params
        s = p.steps_per_quarter
        half, quarter = _divisor_at_most(s, s / 2), _divisor_at_most(s, s / 4)
        drum_range = (
            (max(DRUM_PITCH_RANGE[0], p.pitch_low), min(DRUM_PITCH_RANGE[1], p.pitch_high))
            if p.drums
            else DRUM_PITCH_RANGE
        )
        return dict(
            pitch_range=(p.pitch_low, p.pitch_high),
            beat_res={(0, 4): s, (4, 12): half},
            num_velocities=p.num_velocities,
            special_tokens=list(SPECIAL_TOKENS),
            use_velocities=p.velocities,
            use_note_duration_programs=list(range(-1, 128)),
            use_chords=False,
            use_rests=p.rests,
            use_tempos=p.tempos,
            use_time_signatures=p.time_signatures,
            use_key_signatures=False,
            use_sustain_pedals=False,
            use_pitch_bends=False,
            use_control_changes=False,
            use_programs=p.programs,
            use_pitch_intervals=False,
            use_pitchdrum_tokens=p.drums,
            beat_res_rest={(0, 1): s, (1, 2): half, (2, 12): quarter},
            num_tempos=NUM_TEMPOS,
            tempo_range=TEMPO_RANGE,
            log_tempos=False,
            remove_duplicated_notes=False,
            delete_equal_successive_tempo_changes=True,
            time_signature_range={k: list(v) for k, v in TIME_SIGNATURE_RANGE.items()},
            delete_equal_successive_time_sig_changes=False,
            programs=list(range(-1 if p.drums else 0, 128)),
            one_token_stream_for_programs=p.programs,
            program_changes=False,
            drums_pitch_range=drum_range,
            # REMI's own options (additional_params), at their defaults
            max_bar_embedding=None,
            use_bar_end_tokens=False,
            add_trailing_bars=False,
        )

    @cached_property
    def tokenizer(self):
        """The miditok tokenizer (built on first use, then cached on this instance)."""
        miditok = _import_miditok()
        cls = {"REMI": miditok.REMI, "TSD": miditok.TSD, "MIDILike": miditok.MIDILike}[self.params.tokenizer]
        tok = cls(miditok.TokenizerConfig(**self.tokenizer_config()))
        sha = vocab_sha1(sorted(tok.vocab, key=tok.vocab.get))
        if self.params.vocab_sha1 is None:
            self.params = self.Params(**{**self.params.model_dump(), "vocab_sha1": sha})
        elif self.params.vocab_sha1 != sha:
            from importlib.metadata import version

            raise ValueError(
                f"events: miditok {version('miditok')} builds a different vocabulary from these parameters "
                f"than the one this encoding was saved with (sha1 {sha[:10]} != {self.params.vocab_sha1[:10]}); "
                "use the miditok version recorded in the model file"
            )
        return tok

    def to_dict(self) -> dict[str, Any]:
        _ = self.tokenizer  # building the tokenizer fills vocab_sha1
        return super().to_dict()

    def cache_key(self) -> dict[str, Any]:
        """The parameters and the miditok version, which together fix the vocabulary: building the
        tokenizer (and importing miditok, which imports torch) to read `vocab_sha1` is not needed."""
        from importlib.metadata import version

        return {"name": self.name, **self.params.model_dump(exclude={"vocab_sha1"}), "miditok": version("miditok")}

    @property
    def time_division(self) -> int:
        """Ticks per quarter of decoded and quantized scores."""
        return int(self._tables["time_division"])

    # ---- vocabulary tables -------------------------------------------------------------------------
    @cached_property
    def _tables(self) -> dict[str, Any]:
        """The vocabulary, token-type graph and tick tables of the tokenizer, without importing miditok when
        an earlier process has kept them (eventtables)."""
        return tables(self)

    @property
    def vocab(self) -> list[str]:
        """Token string of each id, e.g. 'Pitch_60', 'Bar_None', 'BOS_None'."""
        return self._tables["vocab"]

    @cached_property
    def ids(self) -> dict[str, int]:
        """Id of each token string."""
        return {t: i for i, t in enumerate(self.vocab)}

    @cached_property
    def _types(self) -> np.ndarray:
        return np.array([t.split("_", 1)[0] for t in self.vocab])  # (vocab,) str

    def _values(self, *types: str) -> np.ndarray:
        """(vocab,) int: the integer value of tokens of the given types, -1 elsewhere."""
        out = np.full(len(self.vocab), -1, np.int64)
        for i, t in enumerate(self.vocab):
            kind, value = t.split("_", 1)
            if kind in types:
                out[i] = int(value)
        return out

    @property
    def sizes(self) -> dict[str, int]:
        return {"vocab_size": len(self.vocab)}

    @property
    def pad(self) -> int:
        return self.ids["PAD_None"]

    @property
    def bos(self) -> int:
        return self.ids["BOS_None"]

    @property
    def eos(self) -> int:
        return self.ids["EOS_None"]

    @property
    def programs(self) -> bool:
        return self.params.programs

    @property
    def drums(self) -> bool:
        return self.params.drums

    def token_types(self) -> list[str]:
        """Type of each id: 'PAD', 'BOS', 'EOS', 'Bar', 'Position', 'Pitch', 'Velocity', 'Duration',
        'TimeShift', 'Rest', 'Tempo', 'TimeSig', 'Program', 'NoteOn', 'NoteOff', 'PitchDrum', ..."""
        return self._types.tolist()

    @cached_property
    def _pitch_of_token(self) -> np.ndarray:
        return self._values("Pitch", "NoteOn")

    def pitch_of_token(self) -> np.ndarray:
        """(vocab,) int64: MIDI pitch of note-onset tokens (Pitch; NoteOn for MIDILike), -1 for every other
        token — drum tokens (PitchDrum/DrumOn) and NoteOff included, so 'played pitches' are onsets only."""
        return self._pitch_of_token.copy()

    @cached_property
    def _program_of_token(self) -> np.ndarray:
        prog = self._values("Program")
        prog[(self._types == "Program") & (prog == -1)] = self.DRUM_PROGRAM
        return prog

    def program_of_token(self) -> np.ndarray:
        """(vocab,) int64: MIDI program (0..127) of Program tokens, `DRUM_PROGRAM` (128) for the drums'
        Program_-1, -1 for every other token."""
        return self._program_of_token.copy()

    def programs_in(self, pieces) -> list[int]:
        """The GM programs whose Program tokens occur in `pieces` (token arrays), sorted; -1 = drums."""
        seen = np.zeros(len(self.vocab), bool)
        for piece in pieces:
            seen[np.asarray(piece, np.int64)] = True
        programs = self._program_of_token[seen]
        return sorted(-1 if p == self.DRUM_PROGRAM else int(p) for p in set(programs[programs >= 0].tolist()))

    # ---- the contract -------------------------------------------------------------------------------
    def _prepare(self, score: Score) -> Score:
        """The score miditok is given: ticks, notes sorted; programs off -> non-drum tracks merged."""
        if not isinstance(score, ScoreTick):
            score = score.to("tick")
        out = score.copy()
        out.tempos.sort()  # MIDI files come sorted; hand-built scores may not
        out.time_signatures.sort()
        if self.params.time_signatures:
            # Settle the time signatures first, as miditok will (unsupported ones dropped, 4/4 at tick 0 if
            # none, changes moved to the next bar line, repeats dropped): miditok picks its resampling grid
            # from the denominators *before* settling them, so a 6/8 that settling removes would otherwise
            # leave notes between grid steps, which REMI/TSD then round differently from `quantize`.
            tok, ts = self.tokenizer, out.time_signatures
            tok._filter_unsupported_time_signatures(ts)
            if len(ts) == 0 or ts[0].time != 0:
                ts.insert(0, TimeSignature(0, 4, 4))
            tok._preprocess_time_signatures(ts, out.ticks_per_quarter)
        if self.params.programs:  # tracks of one program merged here (as miditok would), drums kept apart
            groups: dict[tuple[int, bool], list] = {}
            for t in out.tracks:
                if len(t.notes):  # miditok itself drops drum tracks when Program_-1 is not in the vocabulary
                    groups.setdefault((int(t.program), bool(t.is_drum)), []).append(t)
            tracks = [_merged(group, program, is_drum) for (program, is_drum), group in groups.items()]
        else:
            tracks = [_merged([t for t in out.tracks if not t.is_drum and len(t.notes)], 0, False)]
        out.tracks = tracks
        return out

    def encode(self, score: Score) -> np.ndarray:
        """Score -> int64 token ids (tokens,): [BOS, miditok tokens ..., EOS]."""
        prepared = self._prepare(score)
        if self._fast_encoder is not None:
            ids = self._fast_encoder.encode(self.tokenizer.preprocess_score(prepared))
        else:
            seq = self.tokenizer.encode(prepared)
            ids = np.array((seq if self.params.programs else seq[0]).ids, np.int64)
        return np.concatenate([[self.bos], ids, [self.eos]])  # int64, as the ids are

    def _decodable(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int64 ids, which of them `decode` reads: those before the first EOS but BOS and PAD). Raises
        ValueError for ids that are not integers of the vocabulary."""
        ids = np.asarray(array).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
                raise ValueError("events.decode: token ids must be integers")
        ids = ids.astype(np.int64)
        bad = ids[(ids < 0) | (ids >= len(self.vocab))]
        if len(bad):
            raise ValueError(f"events.decode: token {int(bad[0])} outside the vocabulary 0..{len(self.vocab) - 1}")
        kept = (ids != self.bos) & (ids != self.pad)
        ends = np.flatnonzero(ids == self.eos)
        if len(ends):
            kept[ends[0] :] = False
        return ids, kept

    def decode(self, array: np.ndarray) -> Score:
        """Token ids -> Score (ticks, `time_division` per quarter). Stops at the first EOS; BOS and PAD are
        skipped; any other in-vocabulary sequence decodes (tokens out of grammar are ignored by miditok).
        Raises ValueError for ids outside the vocabulary."""
        ids, kept = self._decodable(array)
        ids = ids[kept]
        if not len(ids):
            score = Score(self.time_division)
            score.tempos.append(Tempo(0, qpm=self._tables["default_tempo"]))
            score.time_signatures.append(TimeSignature(0, 4, 4))
            return score
        if self._fast_decoder is not None:
            return self._fast_decoder.decode(ids.tolist())
        from miditok import TokSequence

        seq = TokSequence(ids=ids.tolist())
        self.tokenizer.complete_sequence(seq)
        return self.tokenizer.decode(seq if self.params.programs else [seq])

    def prefix_decoder(self, ids: np.ndarray) -> Callable[[int], Score]:
        """`lambda k: self.decode(ids[:k])` from one decoding of `ids` (REMI and TSD; see FastDecoder.prefixes)."""
        if self._fast_decoder is None:
            return super().prefix_decoder(ids)
        try:
            ids, kept = self._decodable(ids)
        except ValueError:
            return super().prefix_decoder(ids)  # decode says what is wrong, for the prefixes that hold it
        clean = np.concatenate([[0], np.cumsum(kept)])  # k -> how many decoded ids the first k ids hold
        decode = self._fast_decoder.prefixes(ids[kept].tolist())

        def prefix(k: int) -> Score:
            n = int(clean[min(k, len(ids))])
            return decode(n) if n else self.decode(ids[:k])  # no id to decode: decode's empty Score

        return prefix

    @cached_property
    def _fast_encoder(self) -> FastEncoder | None:
        """miditok's REMI / TSD tokenization without its per-token objects (eventencode)."""
        return FastEncoder(self.tokenizer) if FastEncoder.supports(self.tokenizer) else None

    @cached_property
    def _fast_decoder(self) -> FastDecoder | None:
        """miditok's decoding rules without its string work, for REMI and TSD (eventdecode)."""
        if self.params.tokenizer not in ("REMI", "TSD"):
            return None
        p = self.params
        return FastDecoder(self._tables, remi=p.tokenizer == "REMI", velocities=p.velocities)

    def quantize(self, score: Score) -> Score:
        """The score as the tokens keep it: miditok's preprocessing (grid, velocity bins, pitch range,
        duration bins, tempo bins, supported time signatures; tracks merged or filtered as above), at
        `time_division` ticks per quarter; MIDI-Like: note-offs of one pitch re-paired first-in-first-out."""
        out = self.tokenizer.preprocess_score(self._prepare(score))
        if out.ticks_per_quarter != self.time_division:  # an integer factor: exact
            out = out.resample(self.time_division, min_dur=1)
        if self.params.tokenizer == "MIDILike":
            for t in out.tracks:
                t.notes = _fifo_pairs(t.notes)
        if not self.params.velocities:  # what decoding gives every note without Velocity tokens
            for t in out.tracks:
                n = t.notes.numpy()
                n["velocity"][:] = DEFAULT_VELOCITY
                t.notes = Note.from_numpy(**n)
        return out

    def steps_for_seconds(self, seconds: float) -> int:
        """Tokens for `seconds` of music: seconds x tokens_per_second (at least 1). Default rates, measured
        on the 406 bundled Bach chorales (3.8 h; tokens per second of music): REMI 27.9 (35.8 with programs),
        TSD 26.9 (34.9), MIDILike 26.9 (42.9); denser music needs more."""
        return max(1, round(seconds * self.rate))

    @property
    def rate(self) -> float:
        """Tokens per second used by steps_for_seconds."""
        p = self.params
        return p.tokens_per_second or TOKENS_PER_SECOND[(p.tokenizer, p.programs)]

    def describe(self) -> str:
        """One line for the CLI, e.g.
        'REMI event tokens: 341 in vocabulary (one merged instrument, 8 steps per beat)'."""
        p = self.params
        what = ("programs" + (" + drums" if p.drums else "")) if p.programs else "one merged instrument"
        steps = f"{p.steps_per_quarter} steps per beat"
        return f"{p.tokenizer} event tokens: {len(self.vocab)} in vocabulary ({what}, {steps})"

    def token_errors(self, ids: np.ndarray) -> float:
        """miditok's own grammar check (`tokens_errors`): the fraction of tokens (BOS/EOS included) that break
        the token-type order or timing (REMI: Position going back; MIDI-Like: NoteOff without NoteOn and
        notes never ended). PAD is dropped and the sequence cut after the first EOS."""
        from miditok import TokSequence

        ids = np.asarray(ids, np.int64).reshape(-1)
        ends = np.flatnonzero(ids == self.eos)
        if len(ends):
            ids = ids[: ends[0] + 1]
        ids = ids[ids != self.pad]
        if not len(ids):
            return 0.0
        seq = TokSequence(ids=ids.tolist())
        err = self.tokenizer.tokens_errors(seq if self.params.programs else [seq])
        return float(err if self.params.programs else err[0])

    # ---- grammar ------------------------------------------------------------------------------------
    @cached_property
    def transitions(self) -> np.ndarray:
        """(vocab, vocab) bool, read-only: transitions[a, b] = id b may follow id a.

        Built once from miditok's token-type graph for this tokenizer, restricted to what real encodings
        do: BOS is followed by the type a piece starts with; EOS only follows END_TYPES (a complete note,
        REMI's Bar, or a trailing Tempo/TimeSig); PAD and BOS never follow anything; after EOS only EOS
        (so no row is empty; PAD's row is BOS's);
        Program_-1 (drums) is followed by drum note tokens only, other programs by melodic ones.
        Value rules that one previous token cannot carry (REMI: Position must move forward in its bar;
        MIDI-Like: a NoteOff needs a sounding note) are in `grammar()`; for TSD this matrix is exact."""
        return transition_matrix(self)

    @cached_property
    def _grammar_tables(self) -> dict[str, np.ndarray]:
        return grammar_tables(self)

    @cached_property
    def _batch_grammar_tables(self) -> dict:
        return batch_tables(self)

    def allowed_next(self, prev_id: int) -> np.ndarray:
        """(vocab,) bool: ids that may follow `prev_id` (a read-only row of `transitions`). Exact for TSD;
        for REMI and MIDI-Like use `grammar()` to also enforce Position order and NoteOff pairing."""
        return self.transitions[int(prev_id)]

    def grammar(self, ids=()) -> EventGrammar:
        """A per-sequence grammar state after `ids` (e.g. BOS + primer; with no ids only BOS is allowed):
        `.allowed()` gives the mask of the next id, `.push(id)` advances; see also `finish`."""
        g = EventGrammar(self)
        for i in np.asarray(ids, np.int64).reshape(-1).tolist():
            g.push(i)
        return g

    def grammars(self, ids) -> BatchGrammar:
        """The grammar states after each row of `ids` (rows, t) at once: `.allowed()` -> (rows, vocab) masks,
        the same as `grammar(row).allowed()` for every row; `.push(tokens)` advances every row by one id;
        `.take(rows)` selects (reorders, repeats) rows. With t = 0 only BOS is allowed."""
        ids = np.asarray(ids, np.int64)
        g = BatchGrammar(self, len(ids))
        for column in ids.reshape(len(ids), -1).T:
            g.push(column)
        return g

    def finish(self, ids: np.ndarray) -> np.ndarray:
        """A sequence cut short (e.g. at the generation length) made into a complete piece ending with EOS.

        Cuts back to the last point where the piece may end (after the last complete note, REMI's Bar or
        a Tempo/TimeSig; BOS alone if none) and appends EOS. MIDI-Like with notes still sounding instead
        drops an unfinished NoteOn and ends every sounding note (after one shortest TimeShift when needed). A
        sequence that followed `grammar()` then decodes with 0 miditok token errors. Ids after a first EOS are
        dropped."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        ends = np.flatnonzero(ids == self.eos)
        if len(ends):
            return ids[: ends[0] + 1].copy()
        g, last_end = EventGrammar(self), 0
        for k, i in enumerate(ids.tolist()):
            g.push(i)
            if g.can_end:
                last_end = k + 1
        if last_end == len(ids) or not g.sounding:
            head = ids[:last_end] if last_end else np.array([self.bos], np.int64)
            return np.append(head, self.eos)
        cut = len(ids)  # MIDI-Like with sounding notes: drop a trailing unfinished note, then end the others
        while cut and self._types[ids[cut - 1]] in {"NoteOn", "DrumOn", "Program"}:
            cut -= 1
        return np.array([*ids[:cut], *self.grammar(ids[:cut]).closing()], np.int64)

    # ---- augmentation -------------------------------------------------------------------------------
    @cached_property
    def _transpose_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pitch of transposable tokens (vocab,) or -1, type code (vocab,), id of (type code, pitch))."""
        pitch = self._values("Pitch", "NoteOn", "NoteOff")  # melodic only: drum tokens are never transposed
        kinds = ["Pitch", "NoteOn", "NoteOff"]
        code = np.full(len(self.vocab), -1, np.int64)
        table = np.full((len(kinds), 128), -1, np.int64)
        for c, k in enumerate(kinds):
            sel = np.flatnonzero(self._types == k)
            code[sel] = c
            table[c, pitch[sel]] = sel
        return pitch, code, table

    @cached_property
    def _tempo_values(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.flatnonzero(self._types == "Tempo")
        return ids, np.array([float(self.vocab[i].split("_", 1)[1]) for i in ids])

    def augment(
        self, ids: np.ndarray, rng: np.random.Generator, semitones: int = 0, stretch: float = 1.0
    ) -> np.ndarray:
        """Token-level training augmentation (pure; returns a new int64 array, same length).

        Transposes melodic pitch tokens (Pitch; NoteOn and NoteOff) by `semitones`, or, when some pitch would
        leave [pitch_low, pitch_high], by the largest shift of the same sign that keeps all inside (maybe 0).
        Drum tokens, and Pitch tokens after a Program_-1, are never transposed. With tempos on, every Tempo
        token becomes the tempo bin nearest to its tempo x `stretch` (a window without Tempo tokens keeps
        the tempo set before it). `rng` is unused: the caller draws `semitones` and `stretch`."""
        out = np.array(ids, np.int64).reshape(-1)  # copy
        if semitones:
            pitch, code, table = self._transpose_tables
            p = pitch[out]  # (tokens,)
            movable = p >= 0
            programs = self._program_of_token[out]
            if (programs == self.DRUM_PROGRAM).any():  # current program = the last Program token before each token
                last = np.maximum.accumulate(np.where(programs >= 0, np.arange(len(out)), -1))
                current = np.where(last >= 0, programs[np.maximum(last, 0)], -1)
                movable &= current != self.DRUM_PROGRAM
            if movable.any():
                lo = self.params.pitch_low - int(p[movable].min())
                hi = self.params.pitch_high - int(p[movable].max())
                shift = int(np.clip(semitones, min(lo, 0), max(hi, 0)))
                if shift:
                    out[movable] = table[code[out[movable]], p[movable] + shift]
        if stretch != 1.0 and self.params.tempos:
            tempo_ids, tempo_values = self._tempo_values
            nearest = np.abs(tempo_values[None, :] - tempo_values[:, None] * stretch).argmin(axis=1)  # (tempos,)
            lookup = np.arange(len(self.vocab))
            lookup[tempo_ids] = tempo_ids[nearest]
            out = lookup[out]
        return out


def _merged(tracks: list, program: int, is_drum: bool) -> Track:
    """One track with the notes of `tracks`, ordered by (time, pitch, duration, velocity): the notes of a
    chord go from low to high. (miditok's own merge orders them by duration first, which scatters a
    chord's voices; from low to high, each pitch is predicted knowing the ones below it.)"""
    merged = Track(name="events", program=program, is_drum=is_drum)
    arrays = [t.notes.numpy() for t in tracks]
    if arrays:
        n = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
        order = np.lexsort((n["velocity"], n["duration"], n["pitch"], n["time"]))
        merged.notes = Note.from_numpy(**{k: v[order] for k, v in n.items()})
    return merged


def _fifo_pairs(notes):
    """Notes of one track as NoteOn/NoteOff tokens decode them: per pitch, the k-th onset (in token order:
    time, then note order) ends at the k-th offset. Non-overlapping notes are unchanged."""
    n = notes.numpy()
    if not len(n["time"]):
        return notes
    idx = np.arange(len(n["time"]))
    ends = n["time"] + n["duration"]
    onsets = np.lexsort((idx, n["time"], n["pitch"]))  # grouped by pitch, in token order
    offsets = np.lexsort((ends, n["pitch"]))  # grouped by pitch, by offset
    time = n["time"][onsets]
    out = {
        "time": time,
        "duration": ends[offsets] - time,
        "pitch": n["pitch"][onsets],
        "velocity": n["velocity"][onsets],
    }
    order = np.lexsort((out["pitch"], out["time"]))
    return Note.from_numpy(**{k: v[order] for k, v in out.items()})
