"""The grammar state of one event-token sequence (`Events.grammar`): which token may come next, so that
constrained generation writes sequences that miditok decodes without token errors."""

from __future__ import annotations

import numpy as np

from .base import TokenStream

SPECIAL_TOKENS = ("PAD", "BOS", "EOS")  # ids 0, 1, 2 (miditok adds special tokens first, in this order)
# Note tokens of pitched instruments and of drums (Program_-1 is followed by drum ones only).
MELODIC_TYPES = {"Pitch", "NoteOn", "NoteOff"}
DRUM_TYPES = {"PitchDrum", "DrumOn", "DrumOff"}
# Types after which a piece may end (EOS): a complete note, a Bar (REMI), or a tempo or time signature
# change (miditok writes those after the last note when the file has them there).
END_TYPES = {
    "REMI": {"Duration", "Bar", "Tempo", "TimeSig"},
    "TSD": {"Duration", "Tempo", "TimeSig"},
    "MIDILike": {"NoteOff", "DrumOff", "Tempo", "TimeSig"},
}


def transition_matrix(enc: TokenStream) -> np.ndarray:
    """`Events.transitions` of an `Events` encoding (see there)."""
    types, p = enc._types, enc.params
    graph = {kind: set(after) for kind, after in enc._tables["graph"].items()}
    specials = set(SPECIAL_TOKENS)
    present = set(types.tolist()) - specials
    n = len(types)
    m = np.zeros((n, n), bool)
    by_type = {t: types == t for t in set(types.tolist())}
    for a in present:
        for b in graph.get(a, set()) & present:
            m[np.ix_(by_type[a], by_type[b])] = True
    # where a piece starts
    if p.tokenizer == "REMI":
        start = {"Bar"} if (p.time_signatures or p.tempos) else {"Bar", "Rest"}
    elif p.time_signatures:
        start = {"TimeSig"}
    elif p.tempos:
        start = {"Tempo"}
    else:
        start = {"Pitch", "NoteOn", "PitchDrum", "DrumOn", "Program", "TimeShift", "Rest"}
    start_row = np.isin(types, list(start & present))
    m[by_type["BOS"]] = start_row
    m[by_type["PAD"]] = start_row
    m[:, by_type["EOS"]] = np.isin(types, list(END_TYPES[p.tokenizer]))[:, None]
    m[by_type["EOS"]] = False
    m[enc.eos, enc.eos] = True
    # Program_-1 -> drum notes; Program_k -> melodic notes
    programs = enc._program_of_token
    drum_cols, melodic_cols = np.isin(types, list(DRUM_TYPES)), np.isin(types, list(MELODIC_TYPES))
    m[np.ix_(programs == enc.DRUM_PROGRAM, melodic_cols)] = False
    m[np.ix_((programs >= 0) & (programs < enc.DRUM_PROGRAM), drum_cols)] = False
    assert m.any(axis=1).all(), "every token must have a successor"
    m.flags.writeable = False
    return m


def grammar_tables(enc: TokenStream) -> dict[str, np.ndarray]:
    """Lookup tables of `EventGrammar`: Position values and ids, NoteOff/DrumOff ids by pitch."""
    off = {}
    for kind in ("NoteOff", "DrumOff"):  # id of the NoteOff / DrumOff of each pitch, -1 if none
        off[kind] = np.full(128, -1, np.int64)
        sel = np.flatnonzero(enc._types == kind)
        off[kind][enc._values(kind)[sel]] = sel
    return {
        "position": enc._values("Position"),
        "position_ids": np.flatnonzero(enc._types == "Position"),
        "off_ids": np.flatnonzero(np.isin(enc._types, ["NoteOff", "DrumOff"])),
        **off,
    }


class EventGrammar:
    """Grammar state of one token sequence: the first-order `transitions` plus the value rules miditok's
    token-error check applies and one previous token cannot carry.

    REMI: a Position must be after the bar's last Position (unless right after a Rest, as miditok allows)
    and inside the bar of the current time signature (numerator x steps_per_quarter positions).
    MIDI-Like: NoteOff/DrumOff only for a pitch sounding in the current program and started before the
    current time (no zero-length notes); EOS only when no note is sounding.
    """

    def __init__(self, enc: TokenStream) -> None:  # an `Events` encoding (its vocab, types and params)
        self.enc = enc
        self.tokenizer = enc.params.tokenizer
        self.prev = -1  # nothing yet: only BOS may come
        self.types = enc._types
        self.prev_types: list[str] = ["BOS", "BOS"]
        # REMI
        self.pos = -1
        self.bar_positions = 4 * enc.params.steps_per_quarter
        # MIDI-Like: sounding notes (program, pitch) -> onset "time stamps" (count of time tokens so far)
        self.program = 0
        self.stamp = 0
        self.sounding: dict[tuple[int, int], list[int]] = {}

    def copy(self) -> EventGrammar:
        g = EventGrammar.__new__(EventGrammar)
        g.__dict__.update({k: (v.copy() if isinstance(v, list) else v) for k, v in self.__dict__.items()})
        g.sounding = {k: list(v) for k, v in self.sounding.items()}
        return g

    def push(self, token: int) -> None:
        """Advance by one id (any id; out-of-grammar ids are recorded as they come)."""
        token = int(token)
        kind, value = self.enc.vocab[token].split("_", 1)
        if self.tokenizer == "REMI":
            if kind == "Bar":
                self.pos = -1
            elif kind == "Position":
                self.pos = int(value)
            elif kind == "TimeSig":
                self.bar_positions = int(value.split("/")[0]) * self.enc.params.steps_per_quarter
        elif self.tokenizer == "MIDILike":
            if kind == "Program":
                self.program = int(value)
            elif kind in ("TimeShift", "Rest"):
                self.stamp += 1
            elif kind in ("NoteOn", "DrumOn"):
                self.sounding.setdefault((self.program, int(value)), []).append(self.stamp)
            elif kind in ("NoteOff", "DrumOff"):
                started = self.sounding.get((self.program, int(value)))
                if started:
                    started.pop(0)
                    if not started:
                        del self.sounding[(self.program, int(value))]
        self.prev_types = [self.prev_types[1], kind]
        self.prev = token

    def allowed(self) -> np.ndarray:
        """(vocab,) bool mask of the ids that may come next."""
        if self.prev < 0:
            row = np.zeros(len(self.enc.vocab), bool)
            row[self.enc.bos] = True
            return row
        row = self.enc.transitions[self.prev].copy()
        t = self.enc._grammar_tables
        if self.tokenizer == "REMI":
            ids = t["position_ids"]
            if row[ids].any():
                values = t["position"][ids]
                free = self.prev_types[1] == "Rest" or self.prev_types == ["Rest", "TimeSig"]
                bad = values >= self.bar_positions
                if not free:
                    bad |= values <= self.pos
                row[ids[bad]] = False
        elif self.tokenizer == "MIDILike":
            ids = t["off_ids"]
            if row[ids].any():
                table = t["DrumOff" if self.program == -1 else "NoteOff"]
                closable = table[
                    [
                        p
                        for (prog, p), started in self.sounding.items()
                        if prog == self.program and started[0] < self.stamp
                    ]
                ]
                keep = row[closable]
                row[ids] = False
                row[closable] = keep
            if self.sounding:
                row[self.enc.eos] = False
        return row

    @property
    def can_end(self) -> bool:
        """Whether EOS may come next."""
        return bool(self.allowed()[self.enc.eos])

    def closing(self) -> list[int]:
        """Ids that end the piece from here: MIDI-Like ends every sounding note first (a shortest TimeShift
        when a NoteOff cannot come next, then [Program_p] NoteOff_x for each) and then EOS; REMI/TSD give
        [EOS] when the piece may end here, else [] (see `Events.finish`, which cuts back instead)."""
        enc = self.enc
        if self.tokenizer != "MIDILike" or not self.sounding:
            return [enc.eos] if self.can_end else []
        vocab = enc.ids
        g, out = self.copy(), []

        def emit(token: int) -> None:
            out.append(token)
            g.push(token)

        (prog, pitch), _ = sorted(g.sounding.items())[0]
        first = (
            vocab[f"Program_{prog}"]
            if enc.params.programs
            else vocab[f"{'DrumOff' if prog == -1 else 'NoteOff'}_{pitch}"]
        )
        if not g.allowed()[first] or any(started[-1] >= g.stamp for started in g.sounding.values()):
            emit(int(np.flatnonzero(enc._types == "TimeShift")[0]))  # the shortest time shift: no zero-length note
        for (prog, pitch), started in sorted(g.sounding.items()):
            for _ in range(len(started)):
                if enc.params.programs:
                    emit(vocab[f"Program_{prog}"])
                emit(vocab[f"{'DrumOff' if prog == -1 else 'NoteOff'}_{pitch}"])
        out.append(enc.eos)
        return out


class BatchGrammar:
    """The grammar states of many sequences at once (`Events.grammars`): `allowed()` gives, row for row, the
    mask one `EventGrammar` per sequence would give. REMI and TSD keep their state in arrays over the rows
    (previous id, the last two token types, REMI's bar position and bar length), so a step of a batch is
    a few array operations instead of one Python state per row; MIDI-Like, whose sounding notes do not fit
    in arrays, keeps an `EventGrammar` per row."""

    def __init__(self, enc: TokenStream, rows: int) -> None:
        self.enc = enc
        self.tokenizer = enc.params.tokenizer
        self.per_row = None if self.tokenizer in ("REMI", "TSD") else [EventGrammar(enc) for _ in range(rows)]
        if self.per_row is None:
            t = enc._batch_grammar_tables
            self.prev = np.full(rows, -1, np.int64)  # -1: nothing yet (the tables' last row: only BOS)
            self.last = np.full(rows, t["code"]["BOS"], np.int64)  # the type of the last id
            self.before = self.last.copy()  # the type of the id before it
            self.pos = np.full(rows, -1, np.int64)
            self.bar_positions = np.full(rows, 4 * enc.params.steps_per_quarter, np.int64)

    def __len__(self) -> int:
        return len(self.per_row) if self.per_row is not None else len(self.prev)

    def push(self, tokens) -> None:
        """Advance row i by tokens[i] (any ids, as `EventGrammar.push`)."""
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if self.per_row is not None:
            for state, token in zip(self.per_row, tokens.tolist()):
                state.push(token)
            return
        t = self.enc._batch_grammar_tables
        if self.tokenizer == "REMI":  # Bar resets the position, Position sets it, TimeSig sets the bar length
            self.pos = np.where(t["sets_position"][tokens], t["position_after"][tokens], self.pos)
            self.bar_positions = np.where(t["sets_bar"][tokens], t["bar_positions"][tokens], self.bar_positions)
        self.before, self.last = self.last, t["types"][tokens]
        self.prev = tokens

    def allowed(self) -> np.ndarray:
        """(rows, vocab) bool: the ids that may come next in each row."""
        if self.per_row is not None:
            return np.stack([state.allowed() for state in self.per_row])
        t = self.enc._batch_grammar_tables
        rows = t["transitions"][self.prev]  # (rows, vocab) a copy; prev -1 takes the start row
        if self.tokenizer == "REMI" and t["position_next"][self.prev].any():
            # a Position must be inside the bar and after the bar's last one, unless right after a Rest
            code, ids = t["code"], t["position_ids"]
            free = (self.last == code["Rest"]) | ((self.before == code["Rest"]) & (self.last == code["TimeSig"]))
            values = t["position"][ids][None, :]  # (1, positions)
            bad = (values >= self.bar_positions[:, None]) | (~free[:, None] & (values <= self.pos[:, None]))
            rows[:, ids] &= ~bad
        return rows

    def take(self, rows) -> BatchGrammar:
        """The states of `rows` (indices into this batch, in any order, repeats allowed) as a new batch."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        out = BatchGrammar.__new__(BatchGrammar)
        out.enc, out.tokenizer = self.enc, self.tokenizer
        if self.per_row is not None:
            out.per_row = [self.per_row[i].copy() for i in rows.tolist()]
        else:
            out.per_row = None
            out.prev, out.last, out.before = self.prev[rows], self.last[rows], self.before[rows]
            out.pos, out.bar_positions = self.pos[rows], self.bar_positions[rows]
        return out


def batch_tables(enc: TokenStream) -> dict:
    """`Events._batch_grammar_tables`, the lookup tables of `BatchGrammar`: the transition matrix with a start
    row (only BOS) appended, type codes of every id, Position values and ids, what each id does to REMI's
    bar position and bar length, and after which ids a Position may come."""
    names, types = np.unique(enc._types, return_inverse=True)
    code = {name: i for i, name in enumerate(names.tolist())}
    for name in ("BOS", "Bar", "Position", "TimeSig", "Rest"):
        code.setdefault(name, -2)  # a type this vocabulary lacks never matches
    start = np.zeros((1, len(enc.vocab)), bool)
    start[0, enc.bos] = True
    transitions = np.concatenate([enc.transitions, start])  # (vocab + 1, vocab): row -1 is the start
    bar_positions = np.full(len(enc.vocab), -1, np.int64)
    for i in np.flatnonzero(enc._types == "TimeSig"):
        bar_positions[i] = int(enc.vocab[i].split("_", 1)[1].split("/")[0]) * enc.params.steps_per_quarter
    position = enc._grammar_tables["position"]
    bar = enc._types == "Bar"
    return {
        "transitions": transitions,
        "types": types.astype(np.int64),
        "code": code,
        "position": position,
        "position_ids": enc._grammar_tables["position_ids"],
        "position_next": transitions[:, enc._grammar_tables["position_ids"]].any(1),  # (vocab + 1,)
        "sets_position": bar | (enc._types == "Position"),
        "position_after": np.where(bar, -1, position),  # -1 after a Bar, the value after a Position
        "sets_bar": enc._types == "TimeSig",
        "bar_positions": bar_positions,
    }
