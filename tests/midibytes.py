"""Standard MIDI File bytes built by hand, so tests can damage them exactly where they mean to."""

from __future__ import annotations

EOT = b"\x00\xff\x2f\x00"  # end-of-track meta event, delta 0


def vlq(value: int) -> bytes:
    """A variable-length quantity (delta times, meta lengths)."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def meta(kind: int, body: bytes, delta: int = 0) -> bytes:
    return vlq(delta) + bytes([0xFF, kind]) + vlq(len(body)) + body


def tempo(qpm: float, delta: int = 0) -> bytes:
    return meta(0x51, round(60_000_000 / qpm).to_bytes(3, "big"), delta)


def time_signature(numerator: int, denominator: int) -> bytes:
    return meta(0x58, bytes([numerator, denominator.bit_length() - 1, 24, 8]))


def program(number: int, channel: int = 0) -> bytes:
    return b"\x00" + bytes([0xC0 | channel, number])


def notes(pitches: list[int], step: int = 240, channel: int = 0, velocity: int = 80) -> bytes:
    """One note after another, each `step` ticks long (note on, then note off `step` later)."""
    return b"".join(
        b"\x00" + bytes([0x90 | channel, p, velocity]) + vlq(step) + bytes([0x80 | channel, p, 0]) for p in pitches
    )


def chunk(events: bytes, eot: bool = True) -> bytes:
    """An MTrk chunk with the right length (and an end-of-track event unless eot=False)."""
    body = events + (EOT if eot else b"")
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def smf(chunks: list[bytes], fmt: int = 1, tpq: int = 480) -> bytes:
    header = (
        b"MThd" + (6).to_bytes(4, "big") + bytes([0, fmt]) + len(chunks).to_bytes(2, "big") + tpq.to_bytes(2, "big")
    )
    return header + b"".join(chunks)


MELODY = [60, 62, 64, 65, 67, 69, 71, 72] * 2  # 16 eighth notes at 480 ticks per quarter
BASS = [48, 43] * 4  # 8 quarter notes


def piece(fmt: int = 1) -> bytes:
    """A small format-1 piece: conductor track (120 qpm, 4/4), a melody (program 0) and a bass line (program 32)."""
    return smf(
        [
            chunk(tempo(120) + time_signature(4, 4)),
            chunk(program(0) + notes(MELODY)),
            chunk(program(32, 1) + notes(BASS, step=480, channel=1)),
        ],
        fmt,
    )
