"""Hostile `.lstmidi` files built by hand: zip bombs (written without compressing gigabytes: one deflate
block of zeros repeated), huge and deeply nested config.json, non-finite weights."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

ZERO_MB = 2**20


def _zeros_deflated(megabytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of `megabytes` MB of zero bytes, and its CRC-32. One 1 MB block compressed with
    a full flush does not refer back, so the same bytes repeated are a valid stream: ~1 KB per MB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * ZERO_MB) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # a final empty block
    crc, zeros = 0, b"\0" * ZERO_MB
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    return block * megabytes + end, crc


def zip_with_bomb(path: Path, members: dict[str, bytes], bomb: str, megabytes: int) -> Path:
    """A zip holding `members` (deflated) and the member `bomb`: `megabytes` MB of zeros (< 4 GB: no zip64)."""
    data, crc = _zeros_deflated(megabytes)
    entries = [(name, zlib.compressobj(6, zlib.DEFLATED, -15), payload) for name, payload in members.items()]
    out, directory = bytearray(), bytearray()
    parts = [(name, c.compress(payload) + c.flush(), zlib.crc32(payload), len(payload)) for name, c, payload in entries]
    parts.append((bomb, data, crc, megabytes * ZERO_MB))
    for name, packed, crc32, size in parts:
        offset, raw = len(out), name.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 0x21, crc32, len(packed), size, len(raw), 0)
        out += b"PK\x03\x04" + fields + raw + packed
        directory += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, offset) + raw
    end = struct.pack("<HHHHIIH", 0, 0, len(parts), len(parts), len(directory), len(out), 0)
    path.write_bytes(bytes(out + directory + b"PK\x05\x06" + end))
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def huge_config(good: Path, out: Path, megabytes: int = 110) -> Path:
    """The good file with a valid config.json of about `megabytes` MB (a long training history)."""
    files = members(good)
    config = json.loads(files["config.json"])
    row = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.5}
    config["history"] = [row] * (megabytes * ZERO_MB // len(json.dumps(row)))
    files["config.json"] = json.dumps(config).encode()
    return write_zip(out, files)


def deep_config(good: Path, out: Path, depth: int = 200_000) -> Path:
    return write_zip(out, {**members(good), "config.json": b'{"a": ' + b"[" * depth + b"]" * depth + b"}"})


def non_finite_weights(good: Path, out: Path, value: float = float("nan"), member: str = "weights.safetensors") -> Path:
    """The good file with one value of its first float tensor in `member` set to `value` (NaN, inf)."""
    files = members(good)
    tensors = {k: v.clone() for k, v in st_load(files[member]).items()}
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key].view(-1)[0] = value
    files[member] = st_save(tensors)
    return write_zip(out, files)


def nan_model_weights(good: Path, out: Path) -> Path:
    files = members(good)
    files["weights.safetensors"] = st_save(
        {k: torch.full_like(v, float("nan")) for k, v in st_load(files["weights.safetensors"]).items()}
    )
    return write_zip(out, files)
