"""Score -> REMI / TSD token ids by miditok's rules, without its per-token Python objects (FastEncoder).

miditok's `encode` spends nearly all of its time building an Event object for every token, then a string,
then an id (5 ms for a chorale). FastEncoder takes the score that miditok's own `preprocess_score` returns
(the grid, velocity, duration and tempo bins, time signatures: that step stays miditok's) and builds the
same ids the way `_score_to_tokens` orders them:

- the events: time signatures, then tempos, then each track's notes in the score's order, each note as
  [Program] Pitch [Velocity] Duration, all from lookup tables; a stable sort by tick (miditok's);
- the time tokens between the segments of equal tick (a time signature is a segment of its own, as
  miditok re-enters its time logic after one): REMI adds Rest, Bar, TimeSig after a Bar and Position, a
  whole time-signature section at once; TSD adds Rest and TimeShift (`_add_time_events` of each).

MIDI-Like and other options (chords, pedals, pitch intervals, program changes) are not handled: `supports`
says which tokenizers this covers. `tests/test_events.py` checks the ids against miditok's, id for id.
"""

from __future__ import annotations

import numpy as np
from symusic.core import ScoreTick


class FastEncoder:
    def __init__(self, tokenizer) -> None:
        from miditok.utils import compute_ticks_per_beat, get_score_ticks_per_beat

        cfg, vocab = tokenizer.config, tokenizer.vocab
        self.time_division = tokenizer.time_division
        self._sections, self._beat = get_score_ticks_per_beat, compute_ticks_per_beat  # miditok's own rules
        self.remi = type(tokenizer).__name__ == "REMI"
        self.programs = cfg.use_programs
        self.velocities = cfg.use_velocities
        self.time_signatures = cfg.use_time_signatures
        self.tempos = cfg.use_tempos
        self.rests = cfg.use_rests
        self.drum_tokens = cfg.use_pitchdrum_tokens
        self.duration_programs = set(cfg.use_note_duration_programs)
        self.positions_per_beat = cfg.max_num_pos_per_beat
        self.vocab = vocab

        def table(kind: str, values) -> np.ndarray:
            ids = np.full(len(values), -1, np.int64)
            for i, v in enumerate(values):
                ids[i] = vocab.get(f"{kind}_{v}", -1)
            return ids

        self.pitch = table("Pitch", range(128))
        self.drum_pitch = table("PitchDrum", range(128))
        self.velocity = table("Velocity", range(128))
        self.program = table("Program", range(-1, 128))  # index program + 1
        self.duration = {}  # ticks per beat -> (ticks,) ids of Duration tokens (-1: not a duration bin)
        for tpb, ticks_to_value in tokenizer._tpb_ticks_to_tokens.items():
            ids = np.full(max(ticks_to_value) + 1, -1, np.int64)
            for ticks, value in ticks_to_value.items():
                ids[ticks] = vocab[f"Duration_{value}"]
            self.duration[tpb] = ids
        # ticks per beat -> (ticks of each Rest / TimeShift value, its id): the values are the same at every
        # ticks per beat, their lengths in ticks are not
        rest_ids = table("Rest", [".".join(map(str, v)) for v in tokenizer.rests]).tolist() if self.rests else []
        self.rest = {tpb: (bins.tolist(), rest_ids) for tpb, bins in tokenizer._tpb_to_rest_array.items()}
        shift_ids = table("TimeShift", [".".join(map(str, v)) for v in tokenizer.durations]).tolist()
        self.shift = {tpb: (bins.tolist(), shift_ids) for tpb, bins in tokenizer._tpb_to_time_array.items()}
        self.bar = vocab.get("Bar_None", -1)
        values = [int(token[9:]) for token in vocab if token.startswith("Position_")]
        self.positions = np.array([vocab.get(f"Position_{k}", -1) for k in range(max(values, default=0) + 1)])
        self._memo: dict[tuple[int, int], tuple[list[int], int]] = {}  # (table, ticks) -> _greedy's answer

    @staticmethod
    def supports(tokenizer) -> bool:
        cfg = tokenizer.config
        return (
            type(tokenizer).__name__ in ("REMI", "TSD")
            and not (cfg.use_chords or cfg.use_sustain_pedals or cfg.use_pitch_bends or cfg.use_control_changes)
            and not (cfg.use_pitch_intervals or cfg.program_changes or cfg.use_key_signatures)
            and not tokenizer.attribute_controls
            and not tokenizer.is_trained
            and cfg.additional_params.get("max_bar_embedding") is None
            and not cfg.additional_params.get("use_bar_end_tokens")
            and not cfg.additional_params.get("add_trailing_bars")
        )

    # ---- the events ---------------------------------------------------------------------------------
    def _events(self, score: ScoreTick) -> tuple[list[np.ndarray], ...]:
        """Arrays per group of events (each time signature, each tempo, each track's notes), in miditok's
        order before its sort: (ticks, note ends (a global event: its tick), token ids (a note: one row of
        its tokens), time-signature index or -1)."""
        times, rows, sigs = [], [], []
        if self.time_signatures:
            for i, ts in enumerate(score.time_signatures):
                times.append(np.array([ts.time]))
                rows.append(np.array([self.vocab[f"TimeSig_{ts.numerator}/{ts.denominator}"]]))
                sigs.append(np.array([i]))
        if self.tempos:
            for tempo in score.tempos:
                times.append(np.array([tempo.time]))
                rows.append(np.array([self.vocab[f"Tempo_{round(tempo.tempo, 2)}"]]))
                sigs.append(np.array([-1]))
        ends = list(times)  # a global event counts with its own tick
        if self.time_signatures and len(score.time_signatures):
            sections = self._sections(score)
        else:
            sections = np.array([[score.end(), self.time_division]])
        for track in score.tracks:
            notes = track.notes.numpy()
            if not len(notes["time"]):
                continue
            start, pitch = notes["time"].astype(np.int64), notes["pitch"].astype(np.int64)
            program = -1 if track.is_drum else int(track.program)
            columns = []
            if self.programs:
                columns.append(np.full(len(start), self.program[program + 1]))
            columns.append((self.drum_pitch if track.is_drum and self.drum_tokens else self.pitch)[pitch])
            if self.velocities:
                columns.append(self.velocity[notes["velocity"].astype(np.int64)])
            if program in self.duration_programs:
                section = np.searchsorted(sections[:, 0], start, side="right")
                duration = notes["duration"].astype(np.int64)
                ids = np.empty(len(start), np.int64)
                for s in np.unique(section):
                    here, table = section == s, self.duration[int(sections[s, 1])]
                    if duration[here].max() >= len(table):
                        raise KeyError(f"a duration of {int(duration[here].max())} ticks is not a Duration bin")
                    ids[here] = table[duration[here]]
                columns.append(ids)
            block = np.stack(columns, 1)
            if (block < 0).any():
                raise KeyError("a note value outside the tokenizer's vocabulary")
            times.append(start)
            ends.append(start + notes["duration"].astype(np.int64))
            rows.append(block)
            sigs.append(np.full(len(start), -1))
        return times, ends, rows, sigs

    def encode(self, score: ScoreTick) -> np.ndarray:
        """The ids miditok's `encode(score, no_preprocess_score=True)` gives for a score `preprocess_score`
        returned (one stream: every track's tokens in one sequence), int64 (tokens,)."""
        times, ends, rows, sigs = self._events(score)
        if not times:
            return np.zeros(0, np.int64)
        time = np.concatenate(times)
        end = np.concatenate(ends)
        sig = np.concatenate(sigs)
        # tokens of every event, flat, and where each event's tokens start
        flat = np.concatenate([r.reshape(-1) for r in rows])
        width = np.concatenate([np.full(len(r), r.shape[1] if r.ndim == 2 else 1) for r in rows])
        first = np.concatenate([[0], np.cumsum(width)[:-1]])
        order = np.argsort(time, kind="stable")
        time, end, sig, width, first = time[order], end[order], sig[order], width[order], first[order]
        # segments: runs of one tick; a time signature is a segment of its own
        cut = np.flatnonzero((np.diff(time) != 0) | (sig[1:] >= 0) | (sig[:-1] >= 0)) + 1
        starts = np.concatenate([[0], cut])
        seg_end = np.maximum.reduceat(end, starts)
        before = np.maximum.accumulate(np.concatenate([[0], seg_end[:-1]]))  # previous note end at each segment
        seg_time, seg_sig = time[starts], sig[starts]
        signatures = [(ts.numerator, ts.denominator) for ts in score.time_signatures]
        step = self._remi if self.remi else self._tsd
        time_ids, time_segs = step(seg_time, seg_sig, before, signatures, score.ticks_per_quarter)
        # each segment's time tokens, then its events' tokens
        seg_width = np.add.reduceat(width, starts)
        token_index = np.repeat(first - np.cumsum(np.concatenate([[0], width[:-1]])), width) + np.arange(width.sum())
        keys = np.concatenate([2 * time_segs, np.repeat(2 * np.arange(len(starts)) + 1, seg_width)])
        ids = np.concatenate([time_ids, flat[token_index]])[np.argsort(keys, kind="stable")]
        if (ids < 0).any():
            raise KeyError("a time token outside the tokenizer's vocabulary")
        return ids.astype(np.int64, copy=False)

    # ---- the time tokens ------------------------------------------------------------------------------
    def _greedy(self, ticks: int, table: tuple[list[int], list[int]]) -> tuple[list[int], int]:
        """The tokens of `ticks` (largest bin first, as miditok) and the ticks they cover."""
        key = (id(table), ticks)
        if key not in self._memo:
            if len(self._memo) > 1 << 16:
                self._memo.clear()  # a few distinct lengths are usual; a hostile file must not grow this forever
            bins, ids = table
            out, covered = [], 0
            while ticks >= bins[0]:
                i = next(k for k in range(len(bins) - 1, -1, -1) if bins[k] <= ticks)
                out.append(ids[i])
                ticks -= bins[i]
                covered += bins[i]
            self._memo[key] = (out, covered)
        return self._memo[key]

    def _remi(self, seg_time, seg_sig, before, signatures, tpq) -> tuple[np.ndarray, np.ndarray]:
        """(ids, segment of each) of REMI's time tokens: Rest, Bar (then TimeSig), Position.

        miditok walks the events one by one; here each stretch between time signatures (a section, ending
        with the time signature's own segment, which still counts in the old units) is done at once. In a
        section, after any segment the current bar is the bar of its tick, so a segment's new bars are its
        bar index less the previous segment's (or less the bar a rest before it reached: the bars a rest
        crosses get no Bar token); only segments with a rest go through Python.
        """
        rest_ids, rest_segs = [], []
        ids, segs = [], []  # per section: its Bar (and TimeSig) tokens, then its Position tokens
        ends = np.flatnonzero(seg_sig >= 0).tolist()
        if not ends or ends[-1] != len(seg_time) - 1:
            ends.append(len(seg_time) - 1)
        first_sig = ends[0] if seg_sig[ends[0]] >= 0 else -1
        num, den = signatures[seg_sig[first_sig]] if first_sig >= 0 else (4, 4)
        current_bar, bar_at_ts, tick_at_ts, a = -1, 0, 0, 0
        for e in ends:
            beat = self._beat(den, tpq)
            bar, pos = beat * num, beat // self.positions_per_beat
            t, idx = seg_time[a : e + 1], np.arange(a, e + 1)
            bar_of = bar_at_ts + (t - tick_at_ts) // bar  # the bar of each segment's tick
            cb = np.concatenate([[current_bar], bar_of[:-1]])  # the current bar before each segment
            if self.rests:
                rest = self.rest[beat]
                for s in np.flatnonzero(t - before[a : e + 1] >= rest[0][0]).tolist():
                    start = int(before[a + s])  # miditok's max(note end, previous tick): every event counts its tick
                    tokens, covered = self._greedy(int(t[s]) - start, rest)
                    rest_ids += tokens
                    rest_segs += [a + s] * len(tokens)
                    cb[s] = max(cb[s], bar_at_ts + (start + covered - tick_at_ts) // bar)
            new = bar_of - cb
            is_sig = seg_sig[a : e + 1] >= 0
            count = new * (2 if self.time_signatures else 1) - (self.time_signatures & is_sig & (new > 0))
            seg = np.repeat(idx, count)
            within = np.arange(len(seg)) - np.repeat(np.cumsum(count) - count, count)
            sig_id = self.vocab[f"TimeSig_{num}/{den}"] if self.time_signatures else -1
            ids.append(
                np.where(within % 2 == 1, sig_id, self.bar) if self.time_signatures else np.full(len(seg), self.bar)
            )
            segs.append(seg)
            tick_at_bar = tick_at_ts + (bar_of - bar_at_ts) * bar  # where each segment's bar starts
            k = (t - tick_at_bar) // pos
            plain = ~is_sig
            known = (k >= 0) & (k < len(self.positions))
            ids.append(np.where(known, self.positions[np.clip(k, 0, len(self.positions) - 1)], -1)[plain])
            segs.append(idx[plain])
            current_bar = int(bar_of[-1])
            if is_sig[-1]:
                if tick_at_bar[-1] != t[-1]:
                    raise ValueError("a time signature off the bar line: not a score from miditok's preprocess_score")
                bar_at_ts, tick_at_ts = int(bar_of[-1]), int(t[-1])
                num, den = signatures[seg_sig[e]]
            a = e + 1
        rests = (np.array(rest_ids, np.int64), np.array(rest_segs, np.int64))
        ids, segs = np.concatenate([rests[0], *ids]), np.concatenate([rests[1], *segs])
        order = np.argsort(segs, kind="stable")  # a segment's rest, then its bars, then its position
        return ids[order], segs[order]

    def _tsd(self, seg_time, seg_sig, before, signatures, tpq) -> tuple[np.ndarray, np.ndarray]:
        """(ids, segment of each) of TSD's time tokens: Rest, then TimeShift."""
        ids, segs = [], []
        previous, beat = 0, self._beat(4, tpq)
        for s, (t, sig, end) in enumerate(zip(seg_time.tolist(), seg_sig.tolist(), before.tolist())):
            if t != previous:
                if self.rests and t - end >= self.rest[beat][0][0]:
                    previous = end  # miditok's max(note end, previous tick): every event counts its tick
                    tokens, covered = self._greedy(t - previous, self.rest[beat])
                    ids += tokens
                    previous += covered
                if t != previous:
                    tokens, _ = self._greedy(t - previous, self.shift[beat])
                    ids += tokens
                segs += [s] * (len(ids) - len(segs))
                previous = t
            if sig >= 0:
                beat = self._beat(signatures[sig][1], tpq)
        return np.array(ids, np.int64), np.array(segs, np.int64)
