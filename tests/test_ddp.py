"""Multi-process training (Lightning DDP, gloo on CPU): sharded epochs, rank-safe run folder, one model file."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CLI
from lstmidi.batches import EpochSampler, WindowDataset, make_loader
from lstmidi.modelfile import load_model
from lstmidi.training import process_rank


def shards(n: int, world: int, epoch: int = 0, seed: int = 5) -> list[list[int]]:
    ds = WindowDataset([np.zeros((n + 8, 1), np.uint8)], window=8, hop=1)
    assert len(ds) == n
    out = []
    for rank in range(world):
        sampler = EpochSampler(ds, shuffle=True, seed=seed, rank=rank, world=world)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [12, 13, 14, 2])
def test_sampler_shards_are_disjoint_equal_and_cover_the_epoch(n, world):
    parts = shards(n, world)
    size = -(-n // world)
    assert all(len(p) == size for p in parts)
    assert set().union(*parts) == set(range(n))
    pad = size * world - n  # the padded windows are trained on twice; all others exactly once
    counts = np.bincount(np.concatenate(parts), minlength=n)
    assert sorted(counts.tolist()) == [1] * (n - pad) + [2] * pad
    if pad == 0:
        assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    # the epoch's order is dealt out: interleaving the shards gives the single-process order (padded)
    alone = shards(n, 1)[0]
    assert [p[i] for i in range(size) for p in parts][:n] == alone
    assert shards(n, world, epoch=1) != parts or n <= 2  # a new shuffle each epoch


def test_sharded_loader_resumes_mid_epoch_on_its_own_shard():
    pieces = [np.arange(200)[:, None].astype(np.uint8)]

    def starts(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return [int(v) for x, _, _ in loader for v in x[:, 0, 0]]

    full = []
    for rank in range(2):
        loader = make_loader(pieces, 8, 4, 5, True, seed=3)
        loader.sampler.shard(rank, 2)
        e1 = starts(loader, 1)
        fresh = make_loader(pieces, 8, 4, 5, True, seed=3)
        fresh.sampler.shard(rank, 2)
        fresh.load_state_dict({"epoch": 1, "batches_done": 2})
        assert starts(fresh, 1) == e1[10:]
        full.append(e1)
    alone = starts(make_loader(pieces, 8, 4, 5, True, seed=3), 1)  # 49 windows: one is dealt twice
    assert len(full[0]) == len(full[1]) == 25
    assert set(full[0]) | set(full[1]) == set(alone) and len(set(full[0]) & set(full[1])) == 1


@pytest.mark.parametrize(
    "env, devices, rank",
    [
        ({}, 2, 0),
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, 2, 1),  # Lightning's own launcher, second process
        ({"LOCAL_RANK": "1", "NODE_RANK": "1"}, 4, 5),
        (
            {"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"},
            2,
            3,
        ),  # torchrun
        (
            {
                "SLURM_NTASKS": "4",
                "SLURM_NTASKS_PER_NODE": "2",
                "SLURM_PROCID": "2",
                "SLURM_LOCALID": "0",
                "SLURM_NODEID": "1",
                "SLURM_JOB_NAME": "train",
            },
            2,
            2,
        ),
    ],
)
def test_process_rank_reads_the_launchers_environment(monkeypatch, env, devices, rank):
    for name in [*os.environ]:
        if name.startswith("SLURM_") or name in (
            "RANK",
            "LOCAL_RANK",
            "NODE_RANK",
            "GROUP_RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
        ):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert process_rank(devices) == rank


def test_two_cpu_processes_train_disjoint_shards_and_write_one_model(tmp_path, corpus_dir):
    run_dir, shard_log = tmp_path / "run", tmp_path / "shards"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "PMI_", "OMPI_"))
        and k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        LSTMIDI_SHARD_LOG=str(shard_log),
        PYTHONPATH=str(Path(__file__).parent.parent / "src"),
    )
    script = Path(sys.executable).parent / "lstmidi"  # the console script: Lightning re-runs it for rank 1
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "lstmidi.cli"]
    result = subprocess.run(
        [
            *command,
            "train",
            str(corpus_dir),
            "--preset",
            "musicgenerator",
            "--out",
            str(run_dir),
            "--epochs",
            "3",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            *TINY_CLI,
            "--set",
            "train.batch_size=8",
            "--set",
            "train.lr=0.01",
            "--set",
            "train.primers=2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("validation loss") == 1 and result.stderr.count("corpus:") == 1  # rank 0 reports

    assert [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.lstmidi")] == ["model.lstmidi"]
    model = load_model(run_dir / "model.lstmidi")
    history = model.config["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    with open(run_dir / "logs" / "metrics.csv") as f:
        logged = [float(r["train_loss"]) for r in csv.DictReader(f) if r["train_loss"]]
    assert logged == pytest.approx([h["train_loss"] for h in history])
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 2
    )  # 0-based

    logs = [json.loads(Path(f"{shard_log}.rank{r}.json").read_text()) for r in range(2)]
    assert [(log["rank"], log["world"]) for log in logs] == [(0, 2), (1, 2)]
    n = logs[0]["windows"]
    assert sorted(logs[0]["epochs"]) == sorted(logs[1]["epochs"]) == ["0", "1", "2"]
    for epoch in ("0", "1", "2"):
        a, b = logs[0]["epochs"][epoch], logs[1]["epochs"][epoch]
        assert len(a) == len(b) == -(-n // 2)
        assert set(a) | set(b) == set(range(n))
        assert len(set(a) & set(b)) == len(a) + len(b) - n  # only the padding window (odd n) is shared
    assert logs[0]["epochs"]["0"] != logs[0]["epochs"]["1"]
