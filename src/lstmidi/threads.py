"""How many threads PyTorch may use: one per core that no other process keeps busy.

PyTorch's OpenMP threads spin while they wait for each other, so a thread whose core another process
holds makes every step wait for it. Measured with benchmarks/contention.py on a 2-core machine (flagship 2 x 384, batch
16 x 256, ms per training batch): idle machine 394 with 2 threads, 688 with 1; beside one busy process
1,227 with 2 threads (1.7x) and 710 with 1. So lstmidi counts the busy cores when it starts and uses
the others; `--threads N` or LSTMIDI_THREADS=N choose instead, and so does OMP_NUM_THREADS when set.
"""

from __future__ import annotations

import os
import time


def busy_cores(seconds: float = 0.1) -> float:
    """Cores kept busy by other processes over at least `seconds`, from two readings of /proc/stat (Linux),
    less this process's own CPU time; from the 1-minute load average elsewhere; 0 when neither is
    available. The first call of a command takes its first reading from when this module was imported
    (the command's start, within the last second), so it only sleeps what the start-up has not covered."""
    global _start
    start, _start = _start, None
    try:
        if start is None or time.monotonic() - start[0] > 1.0:
            start = _reading()
        time.sleep(max(0.0, seconds - (time.monotonic() - start[0])))
        end = _reading()
    except OSError:
        try:
            return float(os.getloadavg()[0])
        except (OSError, AttributeError):
            return 0.0
    total = end[2] - start[2]
    own = (end[3] - start[3]) * os.sysconf("SC_CLK_TCK")  # this process's CPU seconds, in jiffies
    busy = end[1] - start[1] - own
    return max(0.0, (os.cpu_count() or 1) * busy / total) if total > 0 else 0.0


def _reading() -> tuple[float, int, int, float]:
    """(monotonic time, busy jiffies, total jiffies of all cores from /proc/stat, this process's CPU time)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return time.monotonic(), sum(fields) - idle, sum(fields), time.process_time()


try:
    _start: tuple[float, int, int, float] | None = _reading()  # the command's start (lstmidi.cli imports us first)
except OSError:
    _start = None


def choose(threads: int | None = None) -> tuple[int, str]:
    """(threads, why): `threads` if given (from --threads), else LSTMIDI_THREADS, else OMP_NUM_THREADS,
    else one per core that is not busy (at least 1)."""
    cores = os.cpu_count() or 1
    for value, source in (
        (threads, "--threads"),
        (os.environ.get("LSTMIDI_THREADS"), "LSTMIDI_THREADS"),
        (os.environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS"),
    ):
        if value is not None and str(value).strip():
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n < 1:
                from .errors import LstmidiError

                raise LstmidiError(f"{source}={value!r}: a whole number of threads, at least 1")
            return n, f"{n} (set by {source}; {cores} cores)"
    busy = busy_cores()
    n = max(1, min(cores, cores - round(busy)))
    return n, f"{n} of {cores} cores ({busy:.1f} busy with other work; --threads N or LSTMIDI_THREADS=N to choose)"


def configure(threads: int | None = None) -> str:
    """Set the thread count of this process and return the line to log: through OMP_NUM_THREADS before
    torch is imported (it also sizes torch's OpenMP runtime; a command-line run is in this case), else
    with torch.set_num_threads."""
    import sys

    global _chosen
    n, why = choose(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)
    _chosen = f"threads: {why}"
    return _chosen


_chosen: str | None = None  # the line of the last `configure` in this process


def describe() -> str:
    """The thread line for a run's log: the last `configure` choice, else PyTorch's own count."""
    if _chosen is not None:
        return _chosen
    import torch

    return f"threads: {torch.get_num_threads()} (PyTorch's default; {os.cpu_count()} cores)"
