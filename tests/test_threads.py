"""Thread choice: one PyTorch thread per core that other processes leave free, unless told."""

import subprocess
import sys

import pytest
import torch

from conftest import run_main
from lstmidi import threads
from lstmidi.errors import LstmidiError


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in ("LSTMIDI_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_told_counts_win_in_order(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("measured although told"))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose()[0] == 3
    monkeypatch.setenv("LSTMIDI_THREADS", "2")
    assert threads.choose() == (2, f"2 (set by LSTMIDI_THREADS; {threads.os.cpu_count()} cores)")
    assert threads.choose(5)[0] == 5
    for bad in ("0", "x", "-1"):
        monkeypatch.setenv("LSTMIDI_THREADS", bad)
        with pytest.raises(LstmidiError, match=f"LSTMIDI_THREADS='{bad}': a whole number of threads, at least 1"):
            threads.choose()


@pytest.mark.parametrize("busy, cores, expected", [(0.0, 2, 2), (0.9, 2, 1), (1.0, 2, 1), (5.0, 2, 1), (1.4, 8, 7)])
def test_free_cores_are_used(monkeypatch, busy, cores, expected):
    monkeypatch.setattr(threads, "busy_cores", lambda: busy)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    n, why = threads.choose()
    assert n == expected and why.startswith(f"{expected} of {cores} cores ({busy:.1f} busy")


def test_configure_sets_torch_threads_once_torch_is_imported(monkeypatch):
    assert threads.configure(1) == f"threads: 1 (set by --threads; {threads.os.cpu_count()} cores)"
    assert torch.get_num_threads() == 1 and "OMP_NUM_THREADS" not in threads.os.environ
    assert threads.describe() == f"threads: 1 (set by --threads; {threads.os.cpu_count()} cores)"  # for train's log


def test_a_busy_process_is_seen():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert threads.busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()


def test_cli_refuses_a_bad_thread_count(monkeypatch, capsys):
    code, err = run_main(["--threads", "0", "generate", "-o", "never.mid"], monkeypatch, capsys)
    assert code == 1 and "error: --threads=0: a whole number of threads, at least 1" in err


def test_the_first_reading_is_the_commands_start_and_our_own_cpu_time_is_not_counted(monkeypatch):
    # two hand-made /proc/stat readings 0.3 s apart: 60 jiffies of which 60 busy, 30 of them this process's
    readings = iter([(10.3, 160, 1060, 1.3)])
    slept = []
    monkeypatch.setattr(threads, "_reading", lambda: next(readings))
    monkeypatch.setattr(threads.time, "monotonic", lambda: 10.3)
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(threads, "_start", (10.0, 100, 1000, 1.0))  # taken when lstmidi.cli imported threads
    assert threads.busy_cores(0.1) == pytest.approx(1.0)  # 2 cores x (60 - 30) / 60
    assert slept == [0.0] and threads._start is None  # the start-up covered the 0.1 s; the reading is used once
