"""What differs by encoding kind, in one table: KINDS = {kind: Kind}. Each entry holds the kind's training
loss, its baselines, its unit, its neutral primer and its sampler; training, scoring, evaluation,
generation and the speed benchmark look the entry up instead of asking `encoding.kind` themselves.

A new kind is one class here (or in its own file) plus one line in KINDS; a new encoding of an existing
kind is one file in `encodings/` plus one line in ENCODINGS, and a new model one file in `models/` plus one
line in MODELS. Capabilities within a kind are declared on the contracts: `encodings.base` (`augments`,
`unknown_token`, `finish`, the `TokenStream` sub-interface of event tokens) and `models.base` (`context`,
`frame_nll`, `sample_frame`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from . import losses, quality, samplers
from .baselines import markov_baseline_nll, music_cost_baselines, repeat_nll, unigram_nll
from .encodings.base import Encoding, TokenStream
from .metrics import notes_end


class Kind:
    """The behaviour shared by every encoding of one kind (see the module doc)."""

    name: ClassVar[str]
    unit: ClassVar[str]  # the unit of the training loss, as the model card and the loss plot name it
    step_unit: ClassVar[str]  # what one encoding step is ("frames", "tokens", "notes")
    distributions: ClassVar[bool] = False  # train always plots pitch/step/duration histograms (the tutorial's)
    refused_options: ClassVar[tuple[str, ...]] = ()  # sampling options this kind's sampler has no use for
    refusal: ClassVar[str] = ""  # the error's end when one is given ({name}: the encoding's name)
    predicts_input: ClassVar[bool] = False  # the model predicts its input steps themselves, not the next ones
    gibbs: ClassVar[bool] = False  # sampled by resampling cells in place (--iterations, --rewrite)
    ends_home: ClassVar[bool] = False  # --seconds is a target: the sampler picks an ending on the home chord near it

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of encoded steps as the model takes them."""
        return x.float()

    def objective(
        self, model, out, y: torch.Tensor, mask: torch.Tensor, step_weights, loss_cfg
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(loss, weight, extra metrics) of the model's output `out` for targets `y`; see `batches.batch_objective`."""
        raise NotImplementedError

    def baselines(self, encoding: Encoding, train: list[np.ndarray], held_out: list[np.ndarray]) -> dict[str, float]:
        """{name: loss} of simple statistical models, in this kind's `unit`."""
        raise NotImplementedError

    def neutral_primer(self, encoding: Encoding, num: int) -> np.ndarray:
        """(num, 1, ...) one neutral step to start from when there is no primer."""
        raise NotImplementedError

    def primer_seconds(self, encoding: Encoding, primer: np.ndarray) -> float:
        """Seconds of music in one encoded primer (steps, ...)."""
        raise NotImplementedError

    def sample_defaults(self, encoding: Encoding, train: list[np.ndarray]) -> dict:
        """Sampling defaults learnt from the training pieces, for the `sample` fields a preset leaves unset."""
        return {}

    def sample(self, loaded, prime: np.ndarray, steps: int, o: dict, generator: torch.Generator):
        """New steps after each primer row: an array (num, steps, ...) or a list of rows. `o`: the resolved
        sampling options (temperature, top_k, top_p, greedy, mode, threshold, target, beam, constraints ...)."""
        raise NotImplementedError

    def random_batch(self, encoding: Encoding, batch: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, steps, ...) random steps of the right shape (the speed benchmark's data)."""
        return (torch.rand(batch, steps, encoding.sizes["input_size"], generator=generator) > 0.9).to(torch.uint8)


class Multihot(Kind):
    """Frames x keys (piano rolls): BCE summed over keys, or the model's own joint frame NLL."""

    name, unit, step_unit, ends_home = "multihot", "nats per frame", "frames", True
    refused_options = ("top_k", "top_p", "greedy")  # every key is drawn on its own
    refusal = (
        ": for note and token models; this piano-roll model ({name!r}) draws every key on its own: use "
        "--temperature, or --mode threshold --threshold P"
    )

    def objective(self, model, out, y, mask, step_weights, loss_cfg):
        loss, weight = losses.weighted_mean(model.frame_nll(out, y.float()), mask, step_weights)
        return loss, weight, {}

    def baselines(self, encoding, train, held_out):
        return {"per-key Markov": markov_baseline_nll(train, held_out)}

    def neutral_primer(self, encoding, num):
        return np.zeros((num, 1, encoding.sizes["input_size"]), np.uint8)  # a silent frame

    def primer_seconds(self, encoding, primer):
        return primer.shape[0] * encoding.seconds_per_step

    def sample_defaults(self, encoding, train):
        keys = encoding.params.keys  # the held keys (onset columns, if any, follow them)
        counts = np.bincount(np.concatenate([p[:, :keys].sum(1, dtype=np.int64) for p in train] or [np.zeros(0, int)]))
        return {
            "max_notes": len(counts) - 1 if len(counts) > 1 else None,
            "usual_notes": int(counts[1:].argmax()) + 1 if len(counts) > 1 else None,  # of the frames with a key held
        }

    def sample(self, loaded, prime, steps, o, generator):
        p = loaded.encoding.params
        onset_keys = p.keys if p.onsets else None  # features are [held keys | onsets]
        new = samplers.sample_multihot(
            loaded.model,
            torch.from_numpy(prime).float(),
            steps,
            onset_keys=onset_keys,
            mode=o["mode"],
            temperature=o["temperature"],
            threshold=o["threshold"],
            max_notes=o["max_notes"],
            fill=o["fill"],
            full=min(filter(None, (loaded.preset.sample.usual_notes, o["max_notes"])), default=None),
            generator=generator,
        )
        new = new.numpy().astype(np.uint8)
        if not o["target"]:
            return new
        held = np.concatenate([prime, new], 1)[..., : p.keys]
        ends = samplers.home_chord_ends(held, prime.shape[1], o["target"], p.low)
        return [row[:n] for row, n in zip(new, ends, strict=True)]


class Tokens(Kind):
    """Token ids: cross-entropy in nats per token; event-token streams (`TokenStream`) add constraints and
    beam search."""

    name, unit, step_unit = "tokens", "nats per token", "tokens"
    refused_options, refusal = (
        ("mode", "threshold", "max_notes", "fill"),
        (": for piano-roll models; this model uses {name!r}: use --temperature, --top-k, --top-p or --greedy"),
    )

    def inputs(self, x):
        return x

    def objective(self, model, out, y, mask, step_weights, loss_cfg):
        loss, weight = losses.token_nll(out, y.long(), mask, step_weights)
        return loss, weight, {}

    def baselines(self, encoding, train, held_out):
        v = encoding.sizes["vocab_size"]
        tr, ho = [t.astype(np.int64) for t in train], [t.astype(np.int64) for t in held_out]
        return {"unigram": unigram_nll(tr, ho, v), "repeat previous": repeat_nll(tr, ho, v)}

    def neutral_primer(self, encoding, num):
        return np.ones((num, 1), np.int64)  # the first token

    def primer_seconds(self, encoding, primer):
        return notes_end(encoding.decode(primer))

    def sample(self, loaded, prime, steps, o, generator):
        enc = loaded.encoding
        allowed = None
        if enc.unknown_token is not None:
            allowed = torch.ones(enc.sizes["vocab_size"], dtype=torch.bool)
            allowed[enc.unknown_token] = False
        options = {k: o[k] for k in ("temperature", "top_k", "top_p", "greedy")}
        if o["nucleus"] == "pitch":  # only pitches are cut; timing and durations keep their whole distribution
            options["uncut"] = torch.from_numpy(enc.pitch_of_token() < 0)
        sampling = {"window": loaded.preset.train.window, "allowed": allowed, "generator": generator, **options}
        if not isinstance(enc, TokenStream):
            return samplers.sample_tokens(loaded.model, torch.from_numpy(prime).long(), steps, **sampling).numpy()
        if o["beam"] and o["beam"] > 1:
            constrain = samplers.token_constraints(enc, prime.shape[1], o, choose_ending=False)
            return samplers.beam_tokens(
                loaded.model, torch.from_numpy(prime).long(), steps, o["beam"], enc.eos, constrain
            )
        return samplers.sample_pieces(loaded.model, enc, prime, steps, o, **sampling)

    def random_batch(self, encoding, batch, steps, generator):
        return torch.randint(encoding.sizes["vocab_size"], (batch, steps), generator=generator)


class Notes(Kind):
    """Notes x fields (pitch, step, duration, velocity): per-field losses combined with `loss.weights`."""

    name, unit, step_unit, distributions = "notes", "weighted loss per note", "notes", True
    refused_options, refusal = Tokens.refused_options, Tokens.refusal

    def objective(self, model, out, y, mask, step_weights, loss_cfg):
        """pitch: CE, the music-aware cost, or both (categorical head), or the music-aware cost plus squared
        error in octaves (regression head); step/duration: MSE with positive pressure; velocity: MSE on
        velocity/128. The per-step losses of every field (and of the extra metrics) are averaged together."""
        fields = list(model.fields)
        rows, extra_rows = [], {}  # (batch, time) losses: one per field; the extra metrics' by name
        nll_is_loss = False  # the pitch loss is its NLL: no row of its own (5% of the tutorial's loss)
        for i, field in enumerate(fields):
            target = y[..., i].float()  # (batch, time)
            if field == "pitch" and out["pitch"].dim() == 3:  # categorical head
                target_class = target.round().long().clamp(0, out["pitch"].shape[-1] - 1)
                ce = losses.token_ce(out["pitch"], target_class, mask)
                if loss_cfg.pitch == "ce":
                    rows.append(ce)
                    nll_is_loss = True
                else:
                    music = losses.expected_interval_cost(out["pitch"], target_class, mask)
                    rows.append(music if loss_cfg.pitch == "music" else ce + music)
                    extra_rows["pitch_nll"] = ce
            elif field == "pitch":  # regression head: the music-aware cost, optionally plus squared error in octaves
                mse = losses.squared_error_with_pressure(out[field] / 12, target / 12, pressure=0.0)
                if loss_cfg.pitch != "ce":
                    music = extra_rows["pitch_music_cost"] = losses.interval_cost(out[field] - target)
                    mse = music + loss_cfg.pitch_mse * mse
                rows.append(mse)
            elif field == "velocity":
                rows.append(losses.squared_error_with_pressure(out[field] / 128, target / 128, pressure=0.0))
            else:
                rows.append(losses.squared_error_with_pressure(out[field], target, loss_cfg.positive_pressure))
        means, weight = losses.weighted_mean(torch.stack([*rows, *extra_rows.values()]), mask, step_weights)
        loss = losses.combine_fields(fields, means[: len(fields)], loss_cfg.weights)
        extras = dict(zip([*(f"{f}_loss" for f in fields), *extra_rows], means.detach().unbind()))
        if nll_is_loss:
            extras["pitch_nll"] = extras["pitch_loss"]
        return loss, weight, extras

    def baselines(self, encoding, train, held_out):
        """Unigram and repeat-previous on the pitch column (nats per note, to compare with `pitch_nll`), and the
        music-aware cost of two trivial guesses (to compare with a regressed pitch's cost)."""
        col = encoding.field_index["pitch"]
        tr = [np.rint(p[:, col]).astype(np.int64).clip(0, 127) for p in train]
        ho = [np.rint(p[:, col]).astype(np.int64).clip(0, 127) for p in held_out]
        return {
            "pitch unigram": unigram_nll(tr, ho, 128),
            "pitch repeat previous": repeat_nll(tr, ho, 128),
            **music_cost_baselines(tr, ho),
        }

    def neutral_primer(self, encoding, num):
        neutral = {"pitch": 60.0, "step": 0.0, "duration": 0.5, "velocity": 80.0}  # a middle C
        return np.tile(np.array([[neutral[f] for f in encoding.fields]], np.float32), (num, 1, 1))

    def primer_seconds(self, encoding, primer):
        return notes_end(encoding.decode(primer))

    def sample(self, loaded, prime, steps, o, generator):
        enc, p = loaded.encoding, loaded.encoding.params
        timed = not o["steps_given"] and "step" in enc.fields  # --seconds: generate until that much music
        wanted = o["seconds"]
        options = {k: o[k] for k in ("temperature", "top_k", "top_p", "greedy")}
        new = samplers.sample_notes(
            loaded.model,
            torch.from_numpy(prime).float(),
            steps * 8 if timed else steps,
            low=p.low,
            high=p.high,
            max_step=p.max_step,
            max_duration=p.max_duration,
            min_duration=max(p.resolution, 0.01),
            temperatures=loaded.preset.sample.temperatures,
            generator=generator,
            seconds=wanted if timed else None,
            **options,
        ).numpy()
        if timed:  # keep each row's notes that start within the requested time
            col = enc.fields.index("step")
            new = [row[: max(1, int((np.cumsum(row[:, col]) <= wanted).sum()))] for row in new]
        return new


class Voices(Kind):
    """Four voices on a grid (`encodings.voices`) and a model that reads ahead (voicenet): every cell is
    predicted from all the others (cross-entropy in nats per voice and frame) and drawn by Gibbs sampling."""

    name, unit, step_unit = "voices", "nats per voice-frame", "frames"
    predicts_input, gibbs = True, True
    refused_options = ("mode", "threshold", "max_notes", "fill", "top_k", "top_p", "greedy")
    refusal = ": this four-voice model ({name!r}) is sampled by Gibbs sampling: use --temperature and --iterations"

    def inputs(self, x):
        return x

    def objective(self, model, out, y, mask, step_weights, loss_cfg):
        batch, steps, voices, vocab = out.shape  # y: the input frames themselves (predicts_input)
        cells = mask.repeat_interleave(voices, 1)  # (batch, steps * voices)
        weights = None if step_weights is None else step_weights.repeat_interleave(voices)
        loss, weight = losses.token_nll(
            out.reshape(batch, steps * voices, vocab), y[..., :voices].long().reshape(batch, -1), cells, weights
        )
        return loss, weight, {}

    def baselines(self, encoding, train, held_out):
        v = encoding.sizes["vocab_size"]
        columns = range(encoding.sizes["voices"])
        tr = [p[:, c].astype(np.int64) for p in train for c in columns]
        ho = [p[:, c].astype(np.int64) for p in held_out for c in columns]
        return {"unigram": unigram_nll(tr, ho, v), "repeat previous": repeat_nll(tr, ho, v)}

    def neutral_primer(self, encoding, num):
        return np.zeros((num, 0, encoding.sizes["voices"] + 1), np.int16)  # from nothing: no frame

    def primer_seconds(self, encoding, primer):
        return len(primer) * encoding.seconds_per_step

    def sample(self, loaded, prime, steps, o, generator):
        enc = loaded.encoding
        num, given = prime.shape[:2]
        frames = np.zeros((num, given + steps, enc.sizes["voices"] + 1), np.int64)
        frames[:, :given] = prime
        frames[:, :, -1] = enc.positions(given + steps)
        free = np.zeros((num, given + steps, enc.sizes["voices"]), bool)
        free[:, given:] = True  # the primer's frames stay as they are
        out = samplers.gibbs_voices(
            loaded.model,
            torch.from_numpy(frames),
            torch.from_numpy(free),
            torch.from_numpy(enc.allowed_tokens()),
            o["iterations"],
            temperature=o["temperature"],
            parallels=o["parallels"],
            generator=generator,
        )
        out = self._end_home(loaded, out, given, o, generator)
        return out[:, given:].numpy().astype(np.int16)

    def _end_home(self, loaded, out: torch.Tensor, given: int, o: dict, generator) -> torch.Tensor:
        """Composed pieces (num, frames, 5) with their last bar sampled again so that each ends on the tonic
        triad of its key (lstmidi.quality.find_key), struck by all four voices on the last beat (the bass
        the tonic) and held: Gibbs sampling alone rarely finds the cadence a chorale ends with. The
        primer is kept; a piece whose voices cannot reach that chord stays as it is."""
        enc = loaded.encoding
        beat = enc.params.steps_per_quarter
        last = (out.shape[1] - 1) // beat * beat  # the last beat's first frame
        if last - beat < given:
            return out
        seen = max(0, last - 32 * beat)  # the model reads the 8 bars before the last one, not the whole piece
        allowed = np.repeat(enc.allowed_tokens()[None, None], len(out), 0).repeat(out.shape[1] - seen, 1)
        rows = []
        for i, sound in enumerate(samplers.sounding(out[..., :-1])):
            pitches = sound[sound >= 0].numpy() + enc.params.low
            tonic, mode, _ = quality.find_key(pitches, np.ones(len(pitches)))
            if enc.end_on_chord(allowed[i], last - seen, range(4), quality.tonic_triad(tonic, mode), tonic):
                rows.append(i)
        if not rows:
            return out
        free = torch.zeros(len(rows), out.shape[1] - seen, 4, dtype=torch.bool)
        free[:, max(given, last - 4 * beat) - seen :] = True
        out = out.clone()
        out[rows, seen:] = samplers.gibbs_voices(
            loaded.model,
            out[rows, seen:],
            free,
            torch.from_numpy(allowed[rows]),
            max(1, o["iterations"] // 2),
            temperature=o["temperature"],
            parallels=o["parallels"],
            generator=generator,
        )
        return out

    def random_batch(self, encoding, batch, steps, generator):
        x = torch.randint(
            encoding.sizes["vocab_size"], (batch, steps, encoding.sizes["voices"] + 1), generator=generator
        )
        x[..., -1] = torch.from_numpy(encoding.positions(steps))
        return x


KINDS: dict[str, Kind] = {kind.name: kind for kind in (Multihot(), Tokens(), Notes(), Voices())}


def kind_of(encoding: Encoding) -> Kind:
    """The KINDS entry of an encoding."""
    return KINDS[encoding.kind]
