"""Batches for training and scoring, with no Lightning: windows over encoded pieces, the loss of a batch for
any encoding kind, the resumable epoch order, loaders, scoring a loader, augmentation and primer banks.
`training` (the Lightning loop) and `evaluation` (held-out scores) both build on this module."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from .corpus import concatenate
from .encodings.base import Encoding
from .errors import LstmidiError
from .kinds import KINDS
from .models.base import Model


class WindowDataset(Dataset):
    """Overlapping windows over pieces: x = piece[s:s+W], y = piece[s+1:s+W+1], mask of real steps.

    Pieces are arrays whose first axis is time (frames x keys, tokens, or notes x fields), given as a list
    or as (data, offsets) with the pieces end to end (`corpus.concatenate`). Starts are
    every `hop` steps plus one aligned to the piece's end; with `hop=None` the windows tile each piece
    exactly once (every predicted step counted once, for validation).
    """

    def __init__(
        self,
        pieces: list[np.ndarray] | tuple[np.ndarray, np.ndarray],
        window: int,
        hop: int | None,
        augment=None,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.augment, self.seed, self.epoch = augment, seed, 0  # augment(steps, rng) -> steps; epoch set each epoch
        # a tuple is (data, offsets) as `Corpus.concatenated` gives it: the cache's memory map, read without a copy
        self.data, offsets = pieces if isinstance(pieces, tuple) else concatenate(pieces)
        lengths = np.diff(offsets).tolist()
        self.index: list[tuple[int, int]] = []  # (absolute start, steps in the piece from there on)
        offset = 0
        for n in lengths:
            if hop is None:
                starts = list(range(0, n - 1, window))
            else:
                starts = list(range(0, max(n - 1 - window, 0) + 1, hop))
                if n - 1 - window > starts[-1]:
                    starts.append(n - 1 - window)
            self.index.extend((offset + s, n - s) for s in starts)
            offset += n
        index = np.asarray(self.index, np.int64).reshape(-1, 2)
        self.starts, self.remaining = index[:, 0], index[:, 1]  # (windows,) each: for the batched gather
        # every run of window + 1 steps of the data, as a read-only view (no copy): a full window's steps
        # are windows[start], so a batch of full windows is one gather
        runs = max(len(self.data) - window, 0)
        self.runs = np.lib.stride_tricks.as_strided(
            self.data,
            (runs, window + 1, *self.data.shape[1:]),
            (self.data.strides[0], *self.data.strides),
            writeable=False,
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        start, remaining = self.index[i]
        w = self.window
        real = min(w, remaining - 1)  # predicted steps in this window
        x = np.zeros((w, *self.data.shape[1:]), self.data.dtype)
        y = np.zeros_like(x)
        steps = self.data[start : start + real + 1]
        if self.augment is not None:  # fresh each epoch, reproducible from (seed, epoch, window)
            steps = self.augment(steps, np.random.default_rng([self.seed, self.epoch, i]))
        x[:real] = steps[:-1]
        y[:real] = steps[1:]
        mask = np.zeros(w, np.uint8)
        mask[:real] = 1
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The windows `indices` as one batch (x, y, mask), each (batch, window, ...): the same values as
        stacking `self[i]` for each, from one gather instead of a Python loop per window (the DataLoader
        calls this with the indices of a batch; its `collate_fn` is then `collated`)."""
        i = np.asarray(indices, np.int64)
        w = self.window
        if self.augment is None and len(i) and self.remaining[i].min() > w:  # all windows full: the usual batch
            steps = self.runs[self.starts[i]]  # (batch, w + 1, ...)
            x, y = np.ascontiguousarray(steps[:, :-1]), np.ascontiguousarray(steps[:, 1:])
            return torch.from_numpy(x), torch.from_numpy(y), torch.ones(len(i), w, dtype=torch.uint8)
        real = np.minimum(w, self.remaining[i] - 1)  # (batch,) predicted steps in each window
        t = np.arange(w + 1)
        # (batch, w + 1, ...): each window's steps; past its `real` ones the last is repeated (then zeroed)
        steps = self.data[self.starts[i, None] + np.minimum(t, real[:, None])]
        if self.augment is not None:  # per window, from the same (seed, epoch, window) as __getitem__
            for row, (k, n) in enumerate(zip(i.tolist(), real.tolist())):
                steps[row, : n + 1] = self.augment(
                    steps[row, : n + 1], np.random.default_rng([self.seed, self.epoch, k])
                )
        x, y = np.ascontiguousarray(steps[:, :-1]), np.ascontiguousarray(steps[:, 1:])  # (batch, w, ...)
        real_steps = t[None, :w] < real[:, None]  # (batch, w)
        x[~real_steps] = 0
        y[~real_steps] = 0
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(real_steps.astype(np.uint8))


def collated(batch):
    """A DataLoader's collate_fn for WindowDataset: a batch from `__getitems__` is ready as it is; a list of
    windows (another fetcher) is stacked."""
    return batch if isinstance(batch, tuple) else default_collate(batch)


def batch_objective(
    model: Model, batch, kind: str, loss_cfg, step_weights=None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The training loss of one batch for any encoding kind -> (loss, weight, extra metrics): the kind's
    `objective` (lstmidi.kinds: BCE or the model's joint frame NLL in nats per frame, CE in nats per token,
    per-field note losses combined with `loss_cfg.weights`). A model with a `context` (seq2seq) reads the
    first `context` steps with its encoder and is scored on the rest.
    """
    x, y, mask = batch
    mask = mask.float()
    entry = KINDS[kind]
    if entry.predicts_input:  # scored on the window's own steps (x[t] is real where y[t] is)
        y = x
    if model.context:
        state = model.encode(x[:, : model.context])
        x, y, mask = x[:, model.context :], y[:, model.context :], mask[:, model.context :]
        out, _ = model(x, state)
    else:
        out, _ = model(entry.inputs(x))
    if step_weights is not None:
        step_weights = step_weights[: mask.shape[1]]
    if not torch.is_autocast_enabled(mask.device.type):  # (entering the context below costs 1% of a small step)
        return entry.objective(model, float32(out), y, mask, step_weights, loss_cfg)
    with torch.autocast(mask.device.type, enabled=False):  # the loss in float32 whatever the model's precision
        return entry.objective(model, float32(out), y, mask, step_weights, loss_cfg)


def float32(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
    """A model's output (a tensor or a dict of them) with its reduced-precision tensors in float32."""
    if isinstance(out, dict):
        return {k: float32(v) for k, v in out.items()}
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


class EpochSampler(Sampler):
    """Indices 0..n-1, shuffled by a permutation derived from (seed, epoch) alone, so a resumed run sees
    the same order as an uninterrupted one; `resume_at=(epoch, k)` skips the first k indices of that
    epoch once (the windows a killed run had already trained on). Lightning calls `set_epoch`.

    In a distributed run (`shard(rank, world)`, set by ResumeState from the Trainer) process `rank` of
    `world` takes `order[rank::world]` of the epoch's order, padded first with its own first indices
    to a multiple of `world`: disjoint shares of equal length (ceil(n / world)) that together cover
    every window (the < world padded ones twice). With world = 1 the order is exactly as before."""

    def __init__(self, dataset: WindowDataset, shuffle: bool, seed: int, rank: int = 0, world: int = 1) -> None:
        self.dataset, self.shuffle, self.seed = dataset, shuffle, seed
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None
        self.served: list[int] = []  # the indices of the last epoch iterated (for LSTMIDI_SHARD_LOG)
        self.shard(rank, world)

    def shard(self, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.epoch = epoch  # augmentation is drawn from (seed, epoch, window)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.world)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            ).tolist()
        else:
            order = list(range(n))
        if self.world > 1 and order:
            total = len(self) * self.world
            order = (order * -(-total // n))[:total][self.rank :: self.world]  # pad by wrapping around, then deal
        if self.resume_at is not None:
            epoch, skip = self.resume_at
            self.resume_at = None
            if epoch == self.epoch:
                order = order[skip:]
        self.served = order
        return iter(order)


class ResumableLoader(DataLoader):
    """A DataLoader over an EpochSampler that Lightning saves in checkpoints and restores (its
    `state_dict` interface): after a mid-epoch --resume the epoch continues at the next unseen batch.
    `batches_done` is kept by ResumeState (the loader runs ahead of training by a prefetched batch).

    In this process (no worker processes), the batches are gathered `CHUNK` at a time from the dataset and
    handed out as slices: the same batches, with the loader's work per batch (0.1-0.2 ms inside a training
    run, where the step has left the caches cold) done once per chunk."""

    CHUNK = 16  # batches gathered at once
    batches_done = 0

    def __iter__(self):
        simple = self.batch_size and not (self.num_workers or self.pin_memory or self.drop_last)
        if not (simple and isinstance(self.dataset, WindowDataset)):
            return super().__iter__()
        return self._chunked()

    def _chunked(self):
        order = list(self.sampler)
        size = self.batch_size
        for first in range(0, len(order), self.CHUNK * size):
            x, y, mask = self.dataset.__getitems__(order[first : first + self.CHUNK * size])
            for k in range(0, len(x), size):
                yield x[k : k + size], y[k : k + size], mask[k : k + size]

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.batches_done = state["batches_done"]
        self.sampler.resume_at = (state["epoch"], state["batches_done"] * self.batch_size)


def make_augmenter(encoding: Encoding, cfg):
    """augment(steps, rng) for the training windows, or None when augmentation is off."""
    if not (cfg.transpose or cfg.stretch):
        return None
    if not encoding.augments:
        raise LstmidiError(
            f"train.augment: encoding {encoding.name!r} does not support augmentation (events and pianoroll do)"
        )
    if cfg.stretch and not encoding.stretches:
        raise LstmidiError(f"train.augment.stretch: encoding {encoding.name!r} has no tempo to stretch; set it to 0")

    def augment(steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return encoding.augment(
            steps,
            rng,
            int(rng.integers(-cfg.transpose, cfg.transpose + 1)),
            float(rng.uniform(1 - cfg.stretch, 1 + cfg.stretch)),
        )

    return augment


def make_loader(pieces, window, hop, batch_size, shuffle, seed, augment=None) -> ResumableLoader:
    """Windows of `pieces` (as WindowDataset takes them) in batches; the order of each epoch depends on
    (seed, epoch) only (see EpochSampler). The generator keeps DataLoader from drawing its worker seed
    from the global RNG."""
    ds = WindowDataset(pieces, window, hop, augment, seed)
    return ResumableLoader(
        ds,
        batch_size=batch_size,
        sampler=EpochSampler(ds, shuffle, seed),
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
        collate_fn=collated,
    )


@torch.no_grad()
def evaluate_loader(model: torch.nn.Module, loader, kind: str, loss_cfg) -> tuple[dict[str, float], float]:
    """Unweighted objective (and extra metrics) averaged over every predicted step of `loader`, and the
    number of steps scored."""
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {}
    for batch in loader:
        loss, weight, extras = batch_objective(model, batch, kind, loss_cfg)
        for name, value in {"loss": loss, **extras}.items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(value) * float(weight)
            acc[1] += float(weight)
    model.train(was_training)
    steps = sums["loss"][1] if sums else 0.0
    return {name: total / max(weight, 1e-8) for name, (total, weight) in sums.items()}, steps


def primer_bank(pieces: list[np.ndarray], n: int, steps: int, seed: int) -> np.ndarray:
    """`n` random excerpts of `steps` steps from `pieces` (shorter pieces are padded with zeros)."""
    rng = np.random.default_rng(seed)
    bank = np.zeros((n, steps, *pieces[0].shape[1:]), pieces[0].dtype)
    lengths = np.zeros(n, np.int64)
    for i in range(n):
        piece = pieces[rng.integers(len(pieces))]
        start = rng.integers(max(len(piece) - steps, 0) + 1)
        chunk = piece[start : start + steps]
        bank[i, : len(chunk)] = chunk
        lengths[i] = len(chunk)
    return bank[:, : max(1, int(lengths.min()))] if lengths.min() < steps else bank
