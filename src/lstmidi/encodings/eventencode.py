"""Score -> REMI / TSD token ids by miditok's rules, without its per-token Python objects (FastEncoder).

miditok's `encode` spends nearly all of its time building an Event object for every token, then a string,
then an id (5 ms for a chorale). FastEncoder takes the score that miditok's own `preprocess_score` returns
(the grid, velocity, duration and tempo bins, time signatures: that step stays miditok's) and builds the
same ids the way `_score_to_tokens` orders them:

- the events: time signatures, then tempos, then each track's notes in the score's order, each note as
  [Program] Pitch [Velocity] Duration, all from lookup tables; a stable sort by tick (miditok's);
- the time tokens, in one pass over the segments of equal tick (a time signature is a segment of its
  own, as miditok re-enters its time logic after one): REMI adds Rest, Bar, TimeSig after a Bar and
  Position; TSD adds Rest and TimeShift (`_add_time_events` of each).

MIDI-Like and other options (chords, pedals, pitch intervals, program changes) are not handled: `supports`
says which tokenizers this covers. `tests/test_events.py` checks the ids against miditok's, id for id.
"""

from __future__ import annotations

import numpy as np
from symusic.core import ScoreTick


class FastEncoder:
    def __init__(self, tokenizer) -> None:
        from miditok.utils import get_score_ticks_per_beat

        self.tok, cfg, vocab = tokenizer, tokenizer.config, tokenizer.vocab
        self._ticks_per_beat = get_score_ticks_per_beat
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
        joined = [".".join(map(str, v)) for v in tokenizer.rests] if self.rests else []
        self.rest = (
            {tpb: (bins.tolist(), table("Rest", joined).tolist()) for tpb, bins in tokenizer._tpb_to_rest_array.items()}
            if self.rests
            else {}
        )
        steps = [".".join(map(str, v)) for v in tokenizer.durations]
        self.shift = {
            tpb: (bins.tolist(), table("TimeShift", steps).tolist())
            for tpb, bins in tokenizer._tpb_to_time_array.items()
        }
        self.bar = vocab.get("Bar_None", -1)
        values = [int(token[9:]) for token in vocab if token.startswith("Position_")]
        self.positions = [vocab.get(f"Position_{k}", -1) for k in range(max(values, default=-1) + 1)]

    @staticmethod
    def supports(tokenizer) -> bool:
        cfg = tokenizer.config
        return (
            type(tokenizer).__name__ in ("REMI", "TSD")
            and not (cfg.use_chords or cfg.use_sustain_pedals or cfg.use_pitch_bends or cfg.use_control_changes)
            and not (cfg.use_pitch_intervals or cfg.program_changes or cfg.use_key_signatures)
            and not tokenizer.attribute_controls
            and not tokenizer.is_trained
            and tokenizer.config.additional_params.get("max_bar_embedding") is None
            and not tokenizer.config.additional_params.get("use_bar_end_tokens")
            and not tokenizer.config.additional_params.get("add_trailing_bars")
        )

    # ---- the events ---------------------------------------------------------------------------------
    def _events(self, score: ScoreTick) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """(ticks, note-end contribution, token rows, time-signature index or -1) of every event, in
        miditok's order before its sort."""
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
        ends = [t.copy() for t in times]  # a global event counts with its own tick
        if self.time_signatures and len(score.time_signatures):
            sections = self._ticks_per_beat(score)
        else:
            sections = np.array([[score.end(), self.tok.time_division]])
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

    def encode(self, score: ScoreTick) -> list[int]:
        """The ids miditok's `encode(score, no_preprocess_score=True)` gives for a score `preprocess_score`
        returned (one stream: every track's tokens in one sequence)."""
        times, ends, rows, sigs = self._events(score)
        if not times:
            return []
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
        token_index = np.repeat(first - np.cumsum(np.concatenate([[0], width[:-1]])), width) + np.arange(width.sum())
        tokens = flat[token_index].tolist()
        bounds = np.concatenate([[0], np.cumsum(width)])[np.concatenate([starts, [len(time)]])].tolist()
        seg_time, seg_sig, before = time[starts].tolist(), sig[starts].tolist(), before.tolist()
        signatures = [(ts.numerator, ts.denominator) for ts in score.time_signatures]
        step = self._remi if self.remi else self._tsd
        out: list[int] = []
        step(out, tokens, bounds, seg_time, seg_sig, before, signatures, score.ticks_per_quarter)
        if -1 in out:
            raise KeyError("a time token outside the tokenizer's vocabulary")
        return out

    # ---- the time tokens ------------------------------------------------------------------------------
    def _beat(self, denominator: int, tpq: int) -> int:
        return tpq if denominator == 4 else int(tpq * (4 / denominator))

    def _greedy(self, out: list[int], ticks: int, table: tuple[list[int], list[int]]) -> int:
        """Append the tokens of `ticks` (largest bin first, as miditok); returns the ticks they cover."""
        bins, ids = table
        covered = 0
        while ticks >= bins[0]:
            i = next(k for k in range(len(bins) - 1, -1, -1) if bins[k] <= ticks)
            out.append(ids[i])
            ticks -= bins[i]
            covered += bins[i]
        return covered

    def _remi(self, out, tokens, bounds, seg_time, seg_sig, before, signatures, tpq) -> None:
        vocab, bar_id, rests, greedy, sigs = self.vocab, self.bar, self.rests, self._greedy, self.time_signatures
        positions = self.positions
        current_bar, bar_at_ts, previous, tick_at_ts, tick_at_bar = -1, 0, -1, 0, 0
        first_sig = next((s for s in seg_sig if s >= 0), -1)

        def units(num: int, den: int) -> tuple:
            beat = self._beat(den, tpq)
            sig_id = vocab[f"TimeSig_{num}/{den}"] if sigs else -1
            return beat * num, beat // self.positions_per_beat, self.rest.get(beat), sig_id

        bar, pos, rest, sig_id = units(*(signatures[first_sig] if first_sig >= 0 else (4, 4)))
        for s, t in enumerate(seg_time):
            is_sig = seg_sig[s] >= 0
            if t != previous:
                if rests and t - before[s] >= rest[0][0]:
                    previous = max(before[s], previous)
                    previous += greedy(out, t - previous, rest)
                    real = bar_at_ts + (previous - tick_at_ts) // bar
                    if real > current_bar:
                        if current_bar == -1:
                            current_bar = 0
                        tick_at_bar += (real - current_bar) * bar
                        current_bar = real
                new = bar_at_ts + (t - tick_at_ts) // bar - current_bar
                for i in range(new):
                    current_bar += 1
                    tick_at_bar = tick_at_ts + (current_bar - bar_at_ts) * bar
                    out.append(bar_id)
                    if sigs and not (is_sig and i + 1 == new):
                        out.append(sig_id)
                if not is_sig:
                    k = (t - tick_at_bar) // pos
                    out.append(positions[k] if 0 <= k < len(positions) else -1)
                previous = t
            if is_sig:
                bar_at_ts += (t - tick_at_ts) // bar
                tick_at_ts = t
                bar, pos, rest, sig_id = units(*signatures[seg_sig[s]])
                previous -= 1
            out.extend(tokens[bounds[s] : bounds[s + 1]])

    def _tsd(self, out, tokens, bounds, seg_time, seg_sig, before, signatures, tpq) -> None:
        previous, beat = 0, self._beat(4, tpq)
        for s, t in enumerate(seg_time):
            if t != previous:
                if self.rests and t - before[s] >= self.rest[beat][0][0]:
                    previous = max(before[s], previous)
                    previous += self._greedy(out, t - previous, self.rest[beat])
                if t != previous:
                    previous += self._greedy(out, t - previous, self.shift[beat])
                previous = t
            if seg_sig[s] >= 0:
                beat = self._beat(signatures[seg_sig[s]][1], tpq)
            out.extend(tokens[bounds[s] : bounds[s + 1]])
